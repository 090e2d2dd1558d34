"""Console pages of held payloads: the quarantine (pushed items held or rejected, with the raw item and why,
released through the push path or discarded) and the refused submissions (a second, different XML under
an instance id already stored), each inspected byte for byte.

Each action is the JSON API's (``/v1/projects/<p>/quarantine``, ``/refused-submissions``) over the same service.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, redirect, request, url_for

from server.api import downloads
from server.api import refused_submissions as refused_api
from server.auth import require
from server.console import bp
from server.console.pages import load_form, notice, render
from server.console.schemas import HeldFilter, RefusedFilter
from server.errors import ApiError
from server.services import overview, quarantine
from server.services import refused_submissions as refused_svc
from server.store import db_session

PAGE_SIZE = 100


def _filter(schema: HeldFilter | RefusedFilter) -> dict[str, object]:
    values, errors = load_form(schema, request.args)
    if errors:
        raise ApiError(400, "invalid_input", "Bad filter parameter", {"fields": errors})
    return values


@bp.get("/projects/<int:project_id>/quarantine")
def quarantine_list(project_id: int) -> tuple[str, int]:
    """Held items of the project (open ones first by default), oldest first."""
    require("quarantine.manage", project_id)
    values = _filter(HeldFilter())
    session = db_session()
    items = quarantine.list_held(
        session,
        project_id,
        status=str(values["status"]),
        outcome=None,
        limit=PAGE_SIZE + 1,
        after_id=int(str(values["after_id"])),
    )
    shown = items[:PAGE_SIZE]
    return render(
        "quarantine.html",
        project=overview.get_project(session, project_id),
        items=shown,
        status_filter=values["status"],
        next_after=shown[-1]["id"] if len(items) > PAGE_SIZE else None,
    )


def _item_page(project_id: int, item_id: int, status: int = 200, **context: object) -> tuple[str, int]:
    session = db_session()
    item = quarantine.held_item(session, project_id, item_id)
    return render(
        "held_item.html",
        status,
        project=overview.get_project(session, project_id),
        item=item,
        raw=json.dumps(item["raw"], ensure_ascii=False, indent=2, sort_keys=True),
        names=overview.names_of(session, {item["actor"], item["decided_by"] or ""}),
        **context,
    )


@bp.get("/projects/<int:project_id>/quarantine/<int:item_id>")
def held_item(project_id: int, item_id: int) -> tuple[str, int]:
    """One held item: the raw payload as it was pushed, why it was held, who decided what."""
    require("quarantine.manage", project_id)
    return _item_page(project_id, item_id)


@bp.post("/projects/<int:project_id>/quarantine/<int:item_id>/release")
def release_item(project_id: int, item_id: int) -> Response | tuple[str, int]:
    """Re-process the item through the push path (it stays held if it is held again)."""
    principal = require("quarantine.manage", project_id)
    try:
        result = quarantine.release(db_session(), project_id, item_id, principal)
    except ApiError as error:
        if error.status == 404:
            raise
        return _item_page(project_id, item_id, error.status, error=error)
    notice("held_released" if result["item"]["status"] == "released" else "held_again")
    return redirect(url_for("console.held_item", project_id=project_id, item_id=item_id))


@bp.post("/projects/<int:project_id>/quarantine/<int:item_id>/discard")
def discard_item(project_id: int, item_id: int) -> Response | tuple[str, int]:
    """Discard the item (kept and audited, never re-processed)."""
    principal = require("quarantine.manage", project_id)
    try:
        quarantine.discard(db_session(), project_id, item_id, principal)
    except ApiError as error:
        if error.status == 404:
            raise
        return _item_page(project_id, item_id, error.status, error=error)
    notice("held_discarded")
    return redirect(url_for("console.held_item", project_id=project_id, item_id=item_id))


@bp.get("/projects/<int:project_id>/refused")
def refused_list(project_id: int) -> tuple[str, int]:
    """Refused submissions: a different XML sent under an instance id already stored."""
    require(refused_api.PERMISSION, project_id)
    values = _filter(RefusedFilter())
    session = db_session()
    rows = refused_svc.list_refused(session, project_id, limit=PAGE_SIZE + 1, after_id=int(str(values["after_id"])))
    shown = rows[:PAGE_SIZE]
    return render(
        "refused.html",
        project=overview.get_project(session, project_id),
        rows=shown,
        next_after=shown[-1].id if len(rows) > PAGE_SIZE else None,
    )


def _refused_page(project_id: int, refused_id: int, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    detail = refused_svc.get_refused(session, project_id, refused_id)
    return render(
        "refused_item.html",
        status,
        project=overview.get_project(session, project_id),
        detail=detail,
        xml=detail.xml.decode("utf-8", errors="replace"),
        names=overview.names_of(session, {detail.summary.decided_by or ""}),
        **context,
    )


@bp.get("/projects/<int:project_id>/refused/<int:refused_id>")
def refused_item(project_id: int, refused_id: int) -> tuple[str, int]:
    """One refused submission: its XML as it arrived, whether it differs from what is stored, the decision."""
    require(refused_api.PERMISSION, project_id)
    return _refused_page(project_id, refused_id)


@bp.post("/projects/<int:project_id>/refused/<int:refused_id>/release")
def release_refused(project_id: int, refused_id: int) -> Response | tuple[str, int]:
    """Store the refused XML as an edit of the submission it collided with."""
    principal = require(refused_api.PERMISSION, project_id)
    try:
        refused_svc.release(db_session(), project_id, refused_id, principal)
    except ApiError as error:
        if error.status == 404:
            raise
        return _refused_page(project_id, refused_id, error.status, error=error)
    notice("refused_released")
    return redirect(url_for("console.refused_item", project_id=project_id, refused_id=refused_id))


@bp.post("/projects/<int:project_id>/refused/<int:refused_id>/discard")
def discard_refused(project_id: int, refused_id: int) -> Response | tuple[str, int]:
    """Keep the refused XML aside for good (never stored as data)."""
    principal = require(refused_api.PERMISSION, project_id)
    try:
        refused_svc.discard(db_session(), project_id, refused_id, principal)
    except ApiError as error:
        if error.status == 404:
            raise
        return _refused_page(project_id, refused_id, error.status, error=error)
    notice("refused_discarded")
    return redirect(url_for("console.refused_item", project_id=project_id, refused_id=refused_id))


@bp.get("/projects/<int:project_id>/refused/<int:refused_id>/xml")
def refused_xml(project_id: int, refused_id: int) -> Response:
    """Download the refused XML byte for byte."""
    require(refused_api.PERMISSION, project_id)
    detail = refused_svc.get_refused(db_session(), project_id, refused_id)
    return downloads.attachment(detail.xml, "application/xml", f"refused-{refused_id}.xml")
