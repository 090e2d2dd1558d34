"""Submissions: the ``deprecated_id`` index covers only edits (a partial index).

Most versions are first versions (``deprecated_id IS NULL``), so the full index was mostly NULL
entries, written on every insert. Worse, on a table without planner statistics (a fresh database,
or autovacuum off) PostgreSQL took its ``(project_id, form_id)`` prefix for instance-id probes and
filtered every row of the form: a push batch's read of stored ids grew with the form's size. A
partial index cannot serve a query that does not imply ``deprecated_id IS NOT NULL``, so instance-id
probes go to the unique key, whatever the statistics.

Revision ID: 0008_partial_deprecated_index
Revises: 0007_submission_deletion
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_partial_deprecated_index"
down_revision = "0007_submission_deletion"
branch_labels = None
depends_on = None

_COLUMNS = ["project_id", "form_id", "deprecated_id"]


def upgrade() -> None:
    op.drop_index("ix_submission_versions_deprecated", table_name="submission_versions")
    op.create_index(
        "ix_submission_versions_deprecated",
        "submission_versions",
        _COLUMNS,
        postgresql_where=sa.text("deprecated_id IS NOT NULL"),
        sqlite_where=sa.text("deprecated_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_submission_versions_deprecated", table_name="submission_versions")
    op.create_index("ix_submission_versions_deprecated", "submission_versions", _COLUMNS)
