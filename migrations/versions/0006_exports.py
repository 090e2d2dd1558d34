"""Exports: named export presets, scheduled exports and their claimed runs.

Revision ID: 0006_exports
Revises: 0005_sync
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0006_exports"
down_revision = "0005_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_presets",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("form_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("options", JSONType, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_export_presets"),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"], name="fk_export_presets_form_id_forms", ondelete="CASCADE"),
        sa.UniqueConstraint("form_id", "name", name="uq_export_presets_form_id_name"),
    )
    op.create_index("ix_export_presets_form_id", "export_presets", ["form_id"])
    op.create_table(
        "export_schedules",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("form_id", sa.BigInteger(), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("preset", sa.String(100), nullable=True),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("keep", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_export_schedules"),
        sa.ForeignKeyConstraint(
            ["form_id"], ["forms.id"], name="fk_export_schedules_form_id_forms", ondelete="CASCADE"
        ),
        sa.CheckConstraint("keep >= 1", name="ck_export_schedules_keep"),
        sa.CheckConstraint("format IN ('zip', 'xlsx', 'geojson')", name="ck_export_schedules_format"),
    )
    op.create_index("ix_export_schedules_form_id", "export_schedules", ["form_id"])
    op.create_index("ix_export_schedules_next_run_at", "export_schedules", ["next_run_at"])
    op.create_table(
        "export_runs",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("file_name", sa.String(255), nullable=True),
        sa.Column("records", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_export_runs"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["export_schedules.id"],
            name="fk_export_runs_schedule_id_export_schedules",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("schedule_id", "scheduled_for", name="uq_export_runs_schedule_id_scheduled_for"),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_export_runs_status"),
    )


def downgrade() -> None:
    op.drop_table("export_runs")
    op.drop_index("ix_export_schedules_next_run_at", table_name="export_schedules")
    op.drop_index("ix_export_schedules_form_id", table_name="export_schedules")
    op.drop_table("export_schedules")
    op.drop_index("ix_export_presets_form_id", table_name="export_presets")
    op.drop_table("export_presets")
