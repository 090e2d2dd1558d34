"""Form uploads without a form_id or a version, and conversions that outlast a request.

- ``form_versions.content_sha256``: the XForm pyxform made before a generated version was stamped in
  (plus itemsets.csv), so an identical re-upload of a spreadsheet without a version is a no-op;
  ``form_versions.version_generated``: the version was chosen by the server (``yyyymmddnn``).
- ``form_conversion_jobs``: the state of an upload answered ``202 Accepted``, kept in the database so
  any server process can answer the poll.

Revision ID: 0013_form_conversion_jobs
Revises: 0012_security
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0013_form_conversion_jobs"
down_revision = "0012_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("form_versions", sa.Column("content_sha256", sa.String(64), nullable=True))
    op.add_column(
        "form_versions",
        sa.Column("version_generated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "form_conversion_jobs",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("publish", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("error", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_form_conversion_jobs"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_form_conversion_jobs_project_id_projects", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_form_conversion_jobs_state")
        ),
    )
    op.create_index("ix_form_conversion_jobs_project_id", "form_conversion_jobs", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_form_conversion_jobs_project_id", table_name="form_conversion_jobs")
    op.drop_table("form_conversion_jobs")
    with op.batch_alter_table("form_versions") as batch:
        batch.drop_column("version_generated")
        batch.drop_column("content_sha256")
