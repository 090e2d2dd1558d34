"""Tables of the dashboard area: a project's indicator definitions, every version kept.

``indicator_definitions`` holds one row per saved version of an indicator; the newest version of a
name is the one in force, and a row whose ``definition`` is NULL marks the indicator removed (its
history stays). ``(project_id, name, version)`` is unique: two managers saving at once get one
version each, never the same number twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class IndicatorDefinitionRow(Base):
    """One saved version of a project's indicator (its JSON definition, or NULL once removed)."""

    __tablename__ = "indicator_definitions"
    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
