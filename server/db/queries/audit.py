"""Writing and reading the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AuditEvent


def record(
    session: Session,
    actor: str,
    action: str,
    project_id: int | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the session's current transaction."""
    event = AuditEvent(actor=actor, action=action, project_id=project_id, subject=subject, details=details or {})
    session.add(event)
    return event


def list_events(
    session: Session,
    project_id: int | None = None,
    action: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
) -> Sequence[AuditEvent]:
    """Return audit events, newest first, optionally filtered (``since`` inclusive, ``until`` exclusive)."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if project_id is not None:
        stmt = stmt.where(AuditEvent.project_id == project_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    return session.scalars(stmt).all()
