"""Submissions table: each user's saved column choice per form (``submission_table_columns``).

Received-time sorts walk the form-listing index ``ix_submissions_form_listing``. Select filters on a
field use a GIN index on the versions' JSON records on PostgreSQL (``record @> {...}``), one index for
every field of every form: without it a field sort with a region filter read all 100k records of a
form per page (~600 ms); see ``server/db/queries/submission_table.py`` and docs/benchmarks.md.

Revision ID: 0016_submission_table_columns
Revises: 0015_user_locale
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0016_submission_table_columns"
down_revision = "0015_user_locale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submission_table_columns",
        sa.Column("id", BigIntPK, primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("form_id", sa.BigInteger(), sa.ForeignKey("forms.id", ondelete="CASCADE"), nullable=False),
        sa.Column("paths", JSONType, nullable=False),
        sa.Column("language", sa.String(100), nullable=True),
        sa.Column("display", sa.String(10), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "form_id"),
        sa.CheckConstraint("display IN ('labels', 'values')", name="display"),
    )
    op.create_index("ix_submission_table_columns_form_id", "submission_table_columns", ["form_id"])
    # Select filters on any field of any form: one GIN index (jsonb_path_ops: containment only, a third
    # of the default operator class's size). SQLite gets an always-empty partial index (see the model).
    op.create_index(
        "ix_submission_versions_record",
        "submission_versions",
        ["record"],
        postgresql_using="gin",
        postgresql_ops={"record": "jsonb_path_ops"},
        sqlite_where=sa.text("0"),
    )


def downgrade() -> None:
    op.drop_index("ix_submission_versions_record", "submission_versions")
    op.drop_index("ix_submission_table_columns_form_id", "submission_table_columns")
    op.drop_table("submission_table_columns")
