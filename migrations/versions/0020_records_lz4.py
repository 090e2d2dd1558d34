"""PostgreSQL: compress the versions' JSON records with lz4 rather than pglz (the dashboard reads them all).

A dashboard figure reads one or two fields of every current record of a form, and each read of a
compressed JSONB value decompresses it: at 100k submissions pglz's decompression was most of the
statement's time; lz4 decompresses several times faster for records a little larger on disk. Only
values written from now on use lz4 (PostgreSQL keeps a stored value as it was compressed); rewriting
older ones is an operator's choice (``UPDATE submission_versions SET record = record || '{}'``, see
docs/dashboard.md). Nothing changes on SQLite, or on a PostgreSQL built without lz4.

Revision ID: 0020_records_lz4
Revises: 0018_audit_subject_index
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_records_lz4"
down_revision = "0018_audit_subject_index"
branch_labels = None
depends_on = None


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    found = bind.execute(
        sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return bool(found)


def upgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE submission_versions ALTER COLUMN record SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE submission_versions ALTER COLUMN record SET COMPRESSION pglz")
