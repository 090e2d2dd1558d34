"""Forms: forms, form versions and form attachments.

Revision ID: 0003_forms
Revises: 0002_blobs
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0003_forms"
down_revision = "0002_blobs"
branch_labels = None
depends_on = None

CURRENT_VERSION_FK = "fk_forms_current_version_id"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # forms.current_version_id -> form_versions is circular. SQLite cannot add a constraint later but
    # does not check the referenced table at CREATE time, so it gets the FK inline; PostgreSQL adds it
    # once form_versions exists.
    current_fk = (
        [
            sa.ForeignKeyConstraint(
                ["current_version_id"], ["form_versions.id"], name=CURRENT_VERSION_FK, ondelete="SET NULL"
            )
        ]
        if sqlite
        else []
    )
    op.create_table(
        "forms",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("xml_form_id", sa.String(255), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("current_version_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_forms"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_forms_project_id_projects", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("project_id", "xml_form_id", name="uq_forms_project_id_xml_form_id"),
        sa.CheckConstraint("state IN ('open', 'closing', 'closed')", name="ck_forms_state"),
        *current_fk,
    )
    op.create_index("ix_forms_project_id", "forms", ["project_id"])
    op.create_table(
        "form_versions",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("form_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("xform", sa.LargeBinary(), nullable=False),
        sa.Column("xform_md5", sa.String(32), nullable=False),
        sa.Column("xform_sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.LargeBinary(), nullable=False),
        sa.Column("source_filename", sa.String(255), nullable=False),
        sa.Column("source_kind", sa.String(10), nullable=False),
        sa.Column("schema_json", JSONType, nullable=False),
        sa.Column("warnings", JSONType, nullable=False),
        sa.Column("itemsets", sa.LargeBinary(), nullable=True),
        sa.Column("conversion_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_form_versions"),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"], name="fk_form_versions_form_id_forms", ondelete="CASCADE"),
        sa.UniqueConstraint("form_id", "version", name="uq_form_versions_form_id_version"),
        sa.CheckConstraint("status IN ('draft', 'published')", name="ck_form_versions_status"),
    )
    op.create_index("ix_form_versions_form_id", "form_versions", ["form_id"])
    if not sqlite:
        op.create_foreign_key(
            CURRENT_VERSION_FK, "forms", "form_versions", ["current_version_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "form_attachments",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("form_version_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=True),
        sa.Column("md5", sa.String(32), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("content_type", sa.String(200), nullable=True),
        sa.Column("uploaded_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_form_attachments"),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["form_versions.id"],
            name="fk_form_attachments_form_version_id_form_versions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["blob_sha256"], ["blobs.sha256"], name="fk_form_attachments_blob_sha256_blobs"),
        sa.UniqueConstraint("form_version_id", "name", name="uq_form_attachments_form_version_id_name"),
    )
    op.create_index("ix_form_attachments_form_version_id", "form_attachments", ["form_version_id"])
    op.create_index("ix_form_attachments_blob_sha256", "form_attachments", ["blob_sha256"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(CURRENT_VERSION_FK, "forms", type_="foreignkey")
    op.drop_table("form_attachments")
    op.drop_table("form_versions")
    op.drop_table("forms")
