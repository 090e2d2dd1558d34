"""Refused submissions: a manager's decision (held, released as an edit, discarded), who made it and when.

Revision ID: 0024_refused_decisions
Revises: 0023_formlist_stamps
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import UTCDateTime

revision = "0024_refused_decisions"
down_revision = "0023_formlist_stamps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A check constraint needs a table rebuild on SQLite: one batch for every column.
    with op.batch_alter_table("refused_submissions") as batch:
        batch.add_column(sa.Column("state", sa.String(10), nullable=False, server_default="held"))
        batch.add_column(sa.Column("decided_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("decided_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("released_instance_id", sa.String(255), nullable=True))
        batch.create_check_constraint("state", "state IN ('held', 'released', 'discarded')")


def downgrade() -> None:
    with op.batch_alter_table("refused_submissions") as batch:
        batch.drop_constraint("state", type_="check")
        batch.drop_column("released_instance_id")
        batch.drop_column("decided_at")
        batch.drop_column("decided_by")
        batch.drop_column("state")
