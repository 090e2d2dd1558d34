"""Dashboard: a project's indicator definitions, every saved version kept.

Revision ID: 0017_indicators
Revises: 0016_submission_table_columns
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0017_indicators"
down_revision = "0016_submission_table_columns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "indicator_definitions",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", JSONType, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_indicator_definitions"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_indicator_definitions_project_id_projects", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("project_id", "name", "version", name="uq_indicator_definitions_project_id_name_version"),
    )


def downgrade() -> None:
    op.drop_table("indicator_definitions")
