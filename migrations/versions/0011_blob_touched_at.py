"""``blobs.touched_at``: when a writer last reached for a blob (garbage collection's grace period).

A writer that stores bytes already present (the same photo sent again, a tus upload of known content)
sets it in the transaction that adds its reference; ``fieldsync purge`` only deletes a blob no row
references whose ``coalesce(touched_at, created_at)`` is older than the grace period.

Revision ID: 0011_blob_touched_at
Revises: 0010_check_constraint_names
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import UTCDateTime

revision = "0011_blob_touched_at"
down_revision = "0010_check_constraint_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("touched_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("touched_at")
