"""Console pages of entities: a list as a table (live or deleted), an entity with its history of updates,
delete and restore, and the conflicts queue where a reviewer settles each competing field.

Each action is the JSON API's (``/v1/projects/<p>/entities/...``, ``/conflicts``) over the same service.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from server.auth import require
from server.console import bp
from server.console.pages import load_form, notice, render
from server.console.schemas import EntityBaseForm, EntityTableQuery
from server.errors import ApiError
from server.services import entities as entities_svc
from server.services import overview
from server.store import db_session
from sync.entities import LABEL_FIELD

PAGE_SIZE = 100
QUEUE_SIZE = 50
# The radio value that means "the value typed in the box next to it".
TYPED = "__typed__"


@bp.get("/projects/<int:project_id>/entities/<list_name>")
def entity_table(project_id: int, list_name: str) -> tuple[str, int]:
    """One entity list as a table: live entities (or the deleted ones), paged by id."""
    require("entity.read", project_id)
    values, errors = load_form(EntityTableQuery(), request.args)
    if errors:
        raise ApiError(400, "invalid_input", "Bad paging or filter parameter", {"fields": errors})
    session = db_session()
    rows = entities_svc.list_entities(
        session, project_id, list_name, values["conflict"], PAGE_SIZE + 1, values["after"], values["deleted"]
    )
    lists = {entity_list.name: entity_list for entity_list in overview.entity_lists(session, project_id)}
    shown = rows[:PAGE_SIZE]
    next_after = shown[-1]["id"] if len(rows) > PAGE_SIZE else None
    return render(
        "entity_table.html",
        project=overview.get_project(session, project_id),
        list_name=list_name,
        properties=lists[list_name].properties if list_name in lists else (),
        rows=shown,
        deleted=values["deleted"],
        next_after=next_after,
    )


def _entity_page(project_id: int, list_name: str, entity_id: str, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    detail = entities_svc.entity_detail(session, project_id, list_name, entity_id)
    names = overview.names_of(session, {h["actor"] for h in detail["history"] if h["actor"]})
    return render(
        "entity.html",
        status,
        project=overview.get_project(session, project_id),
        list_name=list_name,
        entity=detail,
        names=names,
        **context,
    )


@bp.get("/projects/<int:project_id>/entities/<list_name>/<entity_id>")
def entity_page(project_id: int, list_name: str, entity_id: str) -> tuple[str, int]:
    """An entity: its current values, its conflict if any, and every update (who, which phone, which base)."""
    require("entity.read", project_id)
    return _entity_page(project_id, list_name, entity_id)


def _set_deleted(project_id: int, list_name: str, entity_id: str, *, deleted: bool) -> Response | tuple[str, int]:
    principal = require("entity.resolve", project_id)
    values, errors = load_form(EntityBaseForm())
    if errors:
        return _entity_page(project_id, list_name, entity_id, 400, errors=errors)
    try:
        entities_svc.set_entity_deleted(
            db_session(),
            project_id,
            list_name,
            entity_id,
            deleted=deleted,
            base_version=values["base_version"],
            base_rev=values["base_rev"],
            actor=principal.actor,
        )
    except ApiError as error:
        if error.status == 404:
            raise
        return _entity_page(project_id, list_name, entity_id, error.status, error=error)
    notice("entity_deleted" if deleted else "entity_restored")
    return redirect(url_for("console.entity_page", project_id=project_id, list_name=list_name, entity_id=entity_id))


@bp.post("/projects/<int:project_id>/entities/<list_name>/<entity_id>/delete")
def delete_entity(project_id: int, list_name: str, entity_id: str) -> Response | tuple[str, int]:
    """Delete an entity (kept with its history; phones drop it from the list)."""
    return _set_deleted(project_id, list_name, entity_id, deleted=True)


@bp.post("/projects/<int:project_id>/entities/<list_name>/<entity_id>/restore")
def restore_entity(project_id: int, list_name: str, entity_id: str) -> Response | tuple[str, int]:
    """Restore a deleted entity with its properties."""
    return _set_deleted(project_id, list_name, entity_id, deleted=False)


def _queue_items(project_id: int) -> list[dict[str, Any]]:
    """Each conflicted entity with its history (who wrote each competing value, when, from which base)."""
    session = db_session()
    items = []
    for entity in entities_svc.list_conflicts(session, project_id, limit=QUEUE_SIZE):
        detail = entities_svc.entity_detail(session, project_id, entity["list"], entity["id"])
        items.append({**detail, "ops": {h["op_id"]: h for h in detail["history"]}})
    return items


def _queue_page(project_id: int, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    items = _queue_items(project_id)
    actors = {h["actor"] for item in items for h in item["history"] if h["actor"]}
    context.setdefault("errors", {})
    context.setdefault("failed", None)
    return render(
        "conflicts.html",
        status,
        project=overview.get_project(session, project_id),
        items=items,
        names=overview.names_of(session, actors),
        typed=TYPED,
        **context,
    )


@bp.get("/projects/<int:project_id>/conflicts")
def conflicts(project_id: int) -> tuple[str, int]:
    """The conflicts queue: every competing value of each field, side by side, with the provisional winner."""
    require("entity.read", project_id)
    return _queue_page(project_id)


def chosen_values(form: MultiDict[str, str], names: list[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The reviewer's value of each conflicted field: a picked candidate, or the typed value."""
    chosen: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for name in names:
        picked = form.get(f"pick.{name}")
        value = form.get(f"typed.{name}", "") if picked == TYPED else picked
        if value is None or (picked == TYPED and not value.strip()):
            errors[name] = ["required"]
        elif len(value) > 10_000:
            errors[name] = ["length"]
        else:
            chosen[name] = value
    return chosen, errors


@bp.post("/projects/<int:project_id>/conflicts/<list_name>/<entity_id>/resolve")
def resolve_conflict(project_id: int, list_name: str, entity_id: str) -> Response | tuple[str, int]:
    """Settle an entity's conflict with the values the reviewer picked or typed (409 if it changed since)."""
    principal = require("entity.resolve", project_id)
    session = db_session()
    values, errors = load_form(EntityBaseForm())
    current = entities_svc.entity_detail(session, project_id, list_name, entity_id)
    names = [c["field"] for c in current["conflict_fields"]]
    chosen, field_errors = chosen_values(request.form, names)
    errors.update(field_errors)
    if errors:
        return _queue_page(project_id, 400, errors=errors, failed=(list_name, entity_id))
    try:
        entities_svc.resolve_entity(
            session,
            project_id,
            list_name,
            entity_id,
            base_version=values["base_version"],
            base_rev=values["base_rev"],
            fields={k: v for k, v in chosen.items() if k != LABEL_FIELD},
            label=chosen.get(LABEL_FIELD),
            actor=principal.actor,
        )
    except ApiError as error:
        if error.status == 404:
            raise
        return _queue_page(project_id, error.status, error=error, failed=(list_name, entity_id))
    notice("conflict_resolved")
    return redirect(url_for("console.conflicts", project_id=project_id))
