"""ODK Central's accounts: users' email and display name, app users' form assignments.

Revision ID: 0021_central_accounts
Revises: 0020_records_lz4
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import UTCDateTime

revision = "0021_central_accounts"
down_revision = "0020_records_lz4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``users.email``/``display_name``, ``access_tokens.form_access`` and ``app_user_forms``."""
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("display_name", sa.String(200), nullable=True))
        batch.create_unique_constraint("uq_users_email", ["email"])
    with op.batch_alter_table("access_tokens") as batch:
        batch.add_column(sa.Column("form_access", sa.String(10), nullable=False, server_default="all"))
        batch.create_check_constraint("form_access", "form_access IN ('all', 'assigned')")
    op.create_table(
        "app_user_forms",
        sa.Column("token_id", sa.BigInteger(), nullable=False),
        sa.Column("form_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_id", "form_id", name="pk_app_user_forms"),
        sa.ForeignKeyConstraint(
            ["token_id"], ["access_tokens.id"], name="fk_app_user_forms_token_id_access_tokens", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"], name="fk_app_user_forms_form_id_forms", ondelete="CASCADE"),
    )


def downgrade() -> None:
    """Drop what ``upgrade`` added."""
    op.drop_table("app_user_forms")
    with op.batch_alter_table("access_tokens") as batch:
        batch.drop_constraint("form_access", type_="check")
        batch.drop_column("form_access")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_email", type_="unique")
        batch.drop_column("display_name")
        batch.drop_column("email")
