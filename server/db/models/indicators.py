"""Tables of the dashboard area: a project's indicator definitions, every version kept.

``indicator_definitions`` holds one row per saved version of an indicator; the newest version of a
name is the one in force, and a row whose ``definition`` is NULL marks the indicator removed (its
history stays). ``(project_id, name, version)`` is unique: two managers saving at once get one
version each, never the same number twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
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


class IndicatorRollupState(Base):
    """PostgreSQL only: a definition version whose figures are kept as a rollup (see docs/dashboard.md).

    ``built_at`` is NULL while the rollup is being built: the trigger logs the form's changes for it from
    the moment this row is committed, so none made during the build is missed.
    """

    __tablename__ = "indicator_rollup_states"

    definition_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("indicator_definitions.id", ondelete="CASCADE"), primary_key=True
    )
    form_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("forms.id", ondelete="CASCADE"), index=True)
    built_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IndicatorFact(Base):
    """What one counted submission gives one definition: its breakdown keys, month, value, match, number.

    Only submissions the definition counts have a row (live, current version, a counted review state,
    its filters true); the row is what the rollup holds for it, so a change subtracts exactly that.
    """

    __tablename__ = "indicator_facts"

    definition_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("indicator_rollup_states.definition_id", ondelete="CASCADE"), primary_key=True
    )
    submission_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    keys: Mapped[str] = mapped_column(Text)  # a JSON array: one value (or null) per breakdown
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM, or '' when the date is missing
    value: Mapped[str] = mapped_column(Text)  # the distinct count's value, or ''
    matched: Mapped[int] = mapped_column(Integer)
    number: Mapped[Decimal | None] = mapped_column(Numeric())


class IndicatorRollup(Base):
    """The sums of a definition's facts, grouped by breakdown keys, month and distinct value."""

    __tablename__ = "indicator_rollups"

    definition_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("indicator_rollup_states.definition_id", ondelete="CASCADE"), primary_key=True
    )
    keys: Mapped[str] = mapped_column(Text, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    matched: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[Decimal] = mapped_column(Numeric())
    numbers: Mapped[int] = mapped_column(BigInteger)


class IndicatorChange(Base):
    """PostgreSQL only: a submission a rollup counts or might count was inserted, changed or deleted.

    Written by the trigger ``fieldsync_indicator_change`` (migration 0028) in the writer's transaction,
    whatever the path (ORM, the bulk push through psycopg, SQL by hand), one row per rollup of the form.
    A refresh deletes the rows it can see and recomputes their submissions: a writer's rows become
    visible when it commits, so each change is read exactly by the first refresh after its commit.
    """

    __tablename__ = "indicator_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    definition_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("indicator_rollup_states.definition_id", ondelete="CASCADE"), index=True
    )
    submission_id: Mapped[int] = mapped_column(BigInteger)
