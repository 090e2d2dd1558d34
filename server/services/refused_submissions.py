"""Refused submissions: what a 409 "kept for review" kept, listed and read by the project's managers.

An OpenRosa submission whose instance id was already stored with other XML is refused (Collect is
told so) and its payload kept byte for byte, once per distinct content. A manager then releases one
(stored as an edit of the submission it collided with, as ODK Collect writes an edit: a new instance
id that deprecates the chain's current one) or discards it. The payload itself is never changed or
deleted; each decision is audited, and repeating a decision answers as the first one did.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from forms.errors import SubmissionError
from forms.submission import rewrite_as_edit
from server.auth import Principal
from server.db.base import utcnow
from server.db.queries import accounts as accounts_q
from server.db.queries import audit
from server.db.queries import refused_submissions as q
from server.db.transaction import transaction
from server.errors import bad_request, conflict, not_found
from server.services import submissions as submissions_svc


@dataclass(frozen=True)
class RefusedSummary:
    """A refused payload as a listing shows it (its XML is read one at a time)."""

    id: int
    form_id: str
    instance_id: str
    reason: str
    xml_sha256: str
    size: int
    source: str
    received_at: datetime
    submitter: str | None
    device: str | None
    device_id: str | None
    state: str
    decided_by: str | None
    decided_at: datetime | None
    released_instance_id: str | None


@dataclass(frozen=True)
class RefusedDetail:
    """A refused payload with its XML and the hash of what is stored under the same instance id."""

    summary: RefusedSummary
    xml: bytes
    stored_xml_sha256: str | None


def _summary(row: Any) -> RefusedSummary:
    return RefusedSummary(*(row[i] for i in range(len(RefusedSummary.__dataclass_fields__))))


def list_refused(
    session: Session, project_id: int, *, xml_form_id: str | None = None, limit: int = 100, after_id: int = 0
) -> list[RefusedSummary]:
    """The project's refused payloads after ``after_id``, oldest first (``404`` for an unknown project)."""
    with transaction(session):
        if accounts_q.get_project(session, project_id) is None:
            raise not_found("project", project_id=project_id)
        return [_summary(row) for row in q.list_refused(session, project_id, xml_form_id, limit, after_id)]


def refused_page(
    session: Session, project_id: int, *, xml_form_id: str | None = None, limit: int = 100, after_id: int = 0
) -> tuple[list[RefusedSummary], int]:
    """A page of ``list_refused`` and how many refused payloads the filter keeps in all."""
    rows = list_refused(session, project_id, xml_form_id=xml_form_id, limit=limit, after_id=after_id)
    with transaction(session):
        return rows, q.count_refused(session, project_id, xml_form_id)


def get_refused(session: Session, project_id: int, refused_id: int) -> RefusedDetail:
    """One refused payload with its XML, byte for byte (``404`` when the project has none with this id)."""
    with transaction(session):
        return _detail(session, project_id, refused_id)


def _detail(session: Session, project_id: int, refused_id: int) -> RefusedDetail:
    found = q.get_refused(session, project_id, refused_id)
    if found is None:
        raise not_found("refused submission", id=refused_id)
    row, xml, stored = found
    return RefusedDetail(_summary(row), xml, stored)


# A released payload's instance id is derived from the payload: a repeated release names the same edit.
_RELEASE_NAMESPACE = uuid.UUID("5b0c9b52-3d1e-4c55-9f57-8f3f4fd2a1c7")


def released_instance_id(project_id: int, refused_id: int, xml_sha256: str) -> str:
    """The instance id a released payload is stored under (the same for every repeat of the release)."""
    return f"uuid:{uuid.uuid5(_RELEASE_NAMESPACE, f'{project_id}:{refused_id}:{xml_sha256}')}"


def _already_decided(detail: RefusedDetail, wanted: str) -> RefusedDetail:
    """A repeat of the same decision answers as the first did; the other decision is a ``409``."""
    if detail.summary.state == wanted:
        return detail
    raise conflict(
        "already_decided",
        f"This refused submission was already {detail.summary.state}; it cannot be {wanted} now.",
        state=detail.summary.state,
    )


def release(session: Session, project_id: int, refused_id: int, principal: Principal) -> RefusedDetail:
    """Store a held payload as an edit of the submission it collided with; mark it released (audited)."""
    with transaction(session):
        detail = _detail(session, project_id, refused_id)
        if detail.summary.state != "held":
            return _already_decided(detail, "released")
        head = q.chain_head(session, project_id, refused_id)
        if head is None:
            raise conflict(
                "nothing_to_edit",
                "The submission this payload collided with is no longer stored (deleted or purged); discard it.",
            )
        new_id = released_instance_id(project_id, refused_id, detail.summary.xml_sha256)
        try:
            edit = rewrite_as_edit(detail.xml, new_id, head)
        except SubmissionError as exc:
            raise bad_request(exc.code, exc.message) from exc
        result = submissions_svc.ingest_submission(
            session,
            project_id=project_id,
            xml=edit,
            files={},
            principal=principal,
            device_id=detail.summary.device_id,
            source="openrosa",
            nested=True,
        )
        if not result.outcome.stored:
            why = getattr(result.outcome, "detail", "") or getattr(result.outcome, "reason", "")
            raise conflict(
                "not_released",
                f"The payload could not be stored as an edit ({result.outcome.status}): {why}.",
                outcome=result.outcome.status,
                reason=getattr(result.outcome, "reason", None),
            )
        details = {"instance_id": detail.summary.instance_id, "released_instance_id": new_id, "deprecated_id": head}
        return _decide(session, project_id, refused_id, principal, "released", details, new_id)


def discard(session: Session, project_id: int, refused_id: int, principal: Principal) -> RefusedDetail:
    """Mark a held payload discarded: kept byte for byte and audited, never stored as data."""
    with transaction(session):
        detail = _detail(session, project_id, refused_id)
        if detail.summary.state != "held":
            return _already_decided(detail, "discarded")
        details = {"instance_id": detail.summary.instance_id}
        return _decide(session, project_id, refused_id, principal, "discarded", details)


def _decide(
    session: Session,
    project_id: int,
    refused_id: int,
    principal: Principal,
    state: str,
    details: dict[str, Any],
    released: str | None = None,
) -> RefusedDetail:
    """Record a decision on a held payload (compare-and-set, audited) and return the payload as it now is."""
    if not q.decide(session, project_id, refused_id, state, principal.actor, utcnow(), released):
        raise conflict("already_decided", "Another manager decided about this payload at the same moment.")
    action = {"released": "refused.release", "discarded": "refused.discard"}[state]
    audit.record(session, principal.actor, action, project_id, f"refused:{refused_id}", details)
    return _detail(session, project_id, refused_id)
