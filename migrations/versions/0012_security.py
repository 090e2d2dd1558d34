"""Security hardening (issue 15): which project delivered which blob; login throttling; Digest replays.

``project_blobs`` is filled from what each project already references (its submissions' attachments);
uploads finished by deduplication are not counted, since they proved nothing about the bytes.

Revision ID: 0012_security
Revises: 0011_blob_touched_at
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import UTCDateTime

revision = "0012_security"
down_revision = "0011_blob_touched_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_blobs",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_project_blobs_project_id_projects", ondelete="CASCADE"
        ),
        # A grant dies with its blob: retention deletes unreferenced blobs, and a grant is no reference.
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name="fk_project_blobs_sha256_blobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "sha256", name="pk_project_blobs"),
    )
    op.execute(
        "INSERT INTO project_blobs (project_id, sha256, created_at) "
        "SELECT DISTINCT v.project_id, a.blob_sha256, CURRENT_TIMESTAMP "
        "FROM submission_attachments a JOIN submission_versions v ON v.id = a.version_id "
        "WHERE a.blob_sha256 IS NOT NULL"
    )
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("last_failure_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttles"),
    )
    op.create_index("ix_login_throttles_last_failure_at", "login_throttles", ["last_failure_at"])
    op.create_table(
        "digest_nonce_uses",
        sa.Column("nonce", sa.String(100), nullable=False),
        sa.Column("nc", sa.String(8), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", "nc", name="pk_digest_nonce_uses"),
    )
    op.create_index("ix_digest_nonce_uses_used_at", "digest_nonce_uses", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_digest_nonce_uses_used_at", table_name="digest_nonce_uses")
    op.drop_table("digest_nonce_uses")
    op.drop_index("ix_login_throttles_last_failure_at", table_name="login_throttles")
    op.drop_table("login_throttles")
    op.drop_table("project_blobs")
