"""Reviews and comments under an Idempotency-Key: a retried request names the review it already wrote.

Revision ID: 0025_comment_idempotency
Revises: 0024_refused_decisions
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_comment_idempotency"
down_revision = "0024_refused_decisions"
branch_labels = None
depends_on = None

UNIQUE = "uq_submission_reviews_submission_id_actor_request_key"


def upgrade() -> None:
    # Rows without a key (every review so far) never collide: NULLs are distinct in a unique constraint.
    with op.batch_alter_table("submission_reviews") as batch:
        batch.add_column(sa.Column("request_key", sa.String(200), nullable=True))
        batch.create_unique_constraint(UNIQUE, ["submission_id", "actor", "request_key"])


def downgrade() -> None:
    with op.batch_alter_table("submission_reviews") as batch:
        batch.drop_constraint(UNIQUE, type_="unique")
        batch.drop_column("request_key")
