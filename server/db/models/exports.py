"""Tables of the exports area: named export presets, scheduled exports and their runs.

A scheduled run is claimed by inserting its ``(schedule_id, scheduled_for)`` row: the unique constraint
(not a check in Python) is what makes two scheduler processes run each due export exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow

EXPORT_FORMATS = ("zip", "xlsx", "geojson")
RUN_STATUSES = ("running", "done", "failed")


class ExportPreset(Base):
    """Named export options of one form (query-string keys and values, as an analyst would type them)."""

    __tablename__ = "export_presets"
    __table_args__ = (UniqueConstraint("form_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    form_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("forms.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExportSchedule(Base):
    """An export run on a cron schedule, written to a folder under EXPORT_DIR, keeping the last ``keep`` files."""

    __tablename__ = "export_schedules"
    __table_args__ = (
        CheckConstraint("keep >= 1", name="keep"),
        CheckConstraint("format IN ('zip', 'xlsx', 'geojson')", name="format"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    form_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("forms.id", ondelete="CASCADE"), index=True)
    cron: Mapped[str] = mapped_column(String(100))
    preset: Mapped[str | None] = mapped_column(String(100))  # a preset name, resolved at each run
    folder: Mapped[str] = mapped_column(String(255))  # relative to EXPORT_DIR
    keep: Mapped[int] = mapped_column(Integer, default=7)
    format: Mapped[str] = mapped_column(String(10), default="zip")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The next due time; moved forward with a compare-and-set by whichever scheduler claims the run.
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExportRun(Base):
    """One claimed run of a schedule: the unique (schedule, due time) row is the claim itself."""

    __tablename__ = "export_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_for"),
        CheckConstraint("status IN ('running', 'done', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("export_schedules.id", ondelete="CASCADE"))
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(10), default="running")
    claimed_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    file_name: Mapped[str | None] = mapped_column(String(255))
    records: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
