"""Tables of the dashboard area: a project's indicator definitions, every version kept.

``indicator_definitions`` holds one row per saved version of an indicator; the newest version of a
name is the one in force, and a row whose ``definition`` is NULL marks the indicator removed (its
history stays). ``(project_id, name, version)`` is unique: two managers saving at once get one
version each, never the same number twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
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


class IndicatorFact(Base):
    """What one definition reads from one submission version: never stale, as the version never changes."""

    __tablename__ = "indicator_facts"

    definition_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("indicator_definitions.id", ondelete="CASCADE"), primary_key=True
    )
    breakdown: Mapped[str] = mapped_column(String(255), primary_key=True)  # "" when not broken down
    form_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("submission_versions.id", ondelete="CASCADE"), index=True
    )
    passes: Mapped[bool] = mapped_column(Boolean)  # the definition's filters hold (and it is not encrypted)
    k: Mapped[str | None] = mapped_column(Text)  # the breakdown field's value
    m: Mapped[str | None] = mapped_column(Text)  # the date field's month, when the definition has one
    d: Mapped[str | None] = mapped_column(Text)  # the counted value of a distinct count
    match: Mapped[int] = mapped_column(Integer)  # a share's conditions hold
    number: Mapped[float | None] = mapped_column(Float)  # a sum's or a mean's number
