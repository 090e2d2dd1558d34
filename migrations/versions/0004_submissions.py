"""Submissions: logical submissions, their versions, attachments, refused payloads and reviews.

Revision ID: 0004_submissions
Revises: 0003_forms
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0004_submissions"
down_revision = "0003_forms"
branch_labels = None
depends_on = None


def _who(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("submitter_id", sa.BigInteger(), nullable=True),
        sa.Column("device_token_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["submitter_id"], ["users.id"], name=f"fk_{table}_submitter_id_users", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["device_token_id"],
            ["access_tokens.id"],
            name=f"fk_{table}_device_token_id_access_tokens",
            ondelete="SET NULL",
        ),
    ]


def _project_form(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("form_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=f"fk_{table}_project_id_projects", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"], name=f"fk_{table}_form_id_forms", ondelete="CASCADE"),
    ]


def upgrade() -> None:
    op.create_table(
        "submissions",
        sa.Column("id", BigIntPK, nullable=False),
        *_project_form("submissions"),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("current_instance_id", sa.String(255), nullable=False),
        sa.Column("review_state", sa.String(20), nullable=False),
        sa.Column("edits", sa.Integer(), nullable=False),
        *_who("submissions"),
        sa.Column("attachments_expected", sa.Integer(), nullable=False),
        sa.Column("attachments_present", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_submissions"),
        sa.CheckConstraint(
            "review_state IN ('received', 'has_issues', 'approved', 'rejected')", name="ck_submissions_review_state"
        ),
    )
    op.create_index("ix_submissions_form_listing", "submissions", ["project_id", "form_id", "created_at", "id"])
    op.create_table(
        "submission_versions",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("submission_id", sa.BigInteger(), nullable=False),
        *_project_form("submission_versions"),
        sa.Column("form_version_id", sa.BigInteger(), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("deprecated_id", sa.String(255), nullable=True),
        sa.Column("form_version", sa.String(255), nullable=False),
        sa.Column("xml", sa.LargeBinary(), nullable=False),
        sa.Column("xml_sha256", sa.String(64), nullable=False),
        sa.Column("record", JSONType, nullable=False),
        sa.Column("instance_name", sa.Text(), nullable=True),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        *_who("submission_versions"),
        sa.Column("device_id", sa.String(255), nullable=True),
        sa.Column("user_agent", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_submission_versions"),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name="fk_submission_versions_submission_id_submissions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["form_versions.id"],
            name="fk_submission_versions_form_version_id_form_versions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "project_id", "form_id", "instance_id", name="uq_submission_versions_project_id_form_id_instance_id"
        ),
    )
    op.create_index("ix_submission_versions_submission_id", "submission_versions", ["submission_id"])
    op.create_index(
        "ix_submission_versions_deprecated", "submission_versions", ["project_id", "form_id", "deprecated_id"]
    )
    op.create_table(
        "submission_attachments",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=True),
        sa.Column("declared_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_submission_attachments"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["submission_versions.id"],
            name="fk_submission_attachments_version_id_submission_versions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["blob_sha256"], ["blobs.sha256"], name="fk_submission_attachments_blob_sha256_blobs"),
        sa.UniqueConstraint("version_id", "name", name="uq_submission_attachments_version_id_name"),
    )
    op.create_index("ix_submission_attachments_blob_sha256", "submission_attachments", ["blob_sha256"])
    op.create_index("ix_submission_attachments_declared_sha256", "submission_attachments", ["declared_sha256"])
    op.create_table(
        "refused_submissions",
        sa.Column("id", BigIntPK, nullable=False),
        *_project_form("refused_submissions"),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("xml", sa.LargeBinary(), nullable=False),
        sa.Column("xml_sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        *_who("refused_submissions"),
        sa.Column("device_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_refused_submissions"),
        sa.UniqueConstraint(
            "project_id",
            "form_id",
            "instance_id",
            "xml_sha256",
            name="uq_refused_submissions_content",
        ),
    )
    op.create_table(
        "submission_reviews",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("submission_id", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.String(20), nullable=False),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_submission_reviews"),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name="fk_submission_reviews_submission_id_submissions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_submission_reviews_submission_id", "submission_reviews", ["submission_id"])


def downgrade() -> None:
    op.drop_table("submission_reviews")
    op.drop_table("refused_submissions")
    op.drop_table("submission_attachments")
    op.drop_table("submission_versions")
    op.drop_table("submissions")
