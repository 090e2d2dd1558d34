"""Users keep the language they read the console in (``users.locale``: fr, ar, en; NULL follows the browser).

Revision ID: 0015_user_locale
Revises: 0014_webhooks
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_user_locale"
down_revision = "0014_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable ``users.locale`` column."""
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("locale", sa.String(10), nullable=True))


def downgrade() -> None:
    """Drop ``users.locale``."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locale")
