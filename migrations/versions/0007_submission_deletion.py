"""Submissions: soft deletion (``deleted_at``, ``deleted_by``) of logical submissions.

Revision ID: 0007_submission_deletion
Revises: 0006_exports
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import UTCDateTime

revision = "0007_submission_deletion"
down_revision = "0006_exports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain nullable columns: SQLite adds them without rebuilding the table.
    op.add_column("submissions", sa.Column("deleted_at", UTCDateTime(), nullable=True))
    op.add_column("submissions", sa.Column("deleted_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("deleted_by")
        batch.drop_column("deleted_at")
