"""Refused submissions: what a 409 "kept for review" kept, listed and read by the project's managers.

An OpenRosa submission whose instance id was already stored with other XML is refused (Collect is
told so) and its payload kept byte for byte, once per distinct content. Nothing here changes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.db.queries import accounts as accounts_q
from server.db.queries import refused_submissions as q
from server.db.transaction import transaction
from server.errors import not_found


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


def get_refused(session: Session, project_id: int, refused_id: int) -> RefusedDetail:
    """One refused payload with its XML, byte for byte (``404`` when the project has none with this id)."""
    with transaction(session):
        found = q.get_refused(session, project_id, refused_id)
    if found is None:
        raise not_found("refused submission", id=refused_id)
    row, xml, stored = found
    return RefusedDetail(_summary(row), xml, stored)
