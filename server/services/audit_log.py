"""Reading the audit log, with the names of the people and devices beside their ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.db.queries import accounts as accounts_q
from server.db.queries import audit
from server.db.transaction import transaction


@dataclass(frozen=True)
class AuditEntry:
    """One audit event; ``actor_name``/``subject_name`` name a ``user:<id>`` or ``device:<id>`` (else ``None``)."""

    id: int
    at: datetime
    actor: str
    actor_name: str | None
    action: str
    project_id: int | None
    subject: str | None
    subject_name: str | None
    details: dict[str, Any]


def read_audit_log(
    session: Session,
    project_id: int | None = None,
    action: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
) -> list[AuditEntry]:
    """Audit events, newest first, filtered as ``audit.list_events`` filters them, with names (two queries more)."""
    with transaction(session):
        events = audit.list_events(
            session, project_id, action, limit, before_id, since=since, until=until, subject=subject
        )
        names = accounts_q.actor_names(session, [e.actor for e in events] + [e.subject for e in events])
    return [
        AuditEntry(
            e.id,
            e.at,
            e.actor,
            names.get(e.actor),
            e.action,
            e.project_id,
            e.subject,
            names.get(e.subject or ""),
            e.details,
        )
        for e in events
    ]
