"""The audit log: who did what to which object, when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class AuditEvent(Base):
    """One audited action (``form.publish``, ``submission.review`` ...)."""

    __tablename__ = "audit_events"
    # One object's trail (a submission's page) without reading the whole project's log.
    __table_args__ = (Index("ix_audit_events_subject", "subject", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))  # "user:<id>", "device:<id>", "system"
    action: Mapped[str] = mapped_column(String(80), index=True)
    project_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    subject: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
