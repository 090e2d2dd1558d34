"""Office relays: credentials and their projects, relayed submissions (national side); links, outbox and
resumable uploads (office side).

Revision ID: 0026_relays
Revises: 0025_comment_idempotency
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, UTCDateTime

revision = "0026_relays"
down_revision = "0025_comment_idempotency"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "relays",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_relays"),
        sa.UniqueConstraint("name", name="uq_relays_name"),
        sa.UniqueConstraint("token_hash", name="uq_relays_token_hash"),
    )
    op.create_table(
        "relay_projects",
        sa.Column("relay_id", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("relay_id", "project_id", name="pk_relay_projects"),
        _fk("relay_projects", "relay_id", "relays"),
        _fk("relay_projects", "project_id", "projects"),
    )
    op.create_table(
        "relayed_submissions",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("relay_id", sa.BigInteger(), nullable=False),
        sa.Column("xml_form_id", sa.String(255), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("device_id", sa.String(255), nullable=True),
        sa.Column("submitter", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_relayed_submissions"),
        sa.UniqueConstraint(
            "project_id", "xml_form_id", "instance_id", name="uq_relayed_submissions_project_id_xml_form_id_instance_id"
        ),
        _fk("relayed_submissions", "project_id", "projects"),
        _fk("relayed_submissions", "relay_id", "relays"),
    )
    op.create_index("ix_relayed_submissions_project_id", "relayed_submissions", ["project_id"])
    op.create_index("ix_relayed_submissions_relay_id", "relayed_submissions", ["relay_id"])
    op.create_table(
        "relay_links",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("upstream_url", sa.String(500), nullable=False),
        sa.Column("remote_project_id", sa.BigInteger(), nullable=False),
        sa.Column("pull_cursor", sa.Text(), nullable=True),
        sa.Column("last_contact_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name="pk_relay_links"),
        _fk("relay_links", "project_id", "projects"),
    )
    op.create_table(
        "relay_outbox",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_key", sa.String(64), nullable=True),
        sa.Column("status", sa.String(30), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_relay_outbox"),
        sa.UniqueConstraint("version_id", name="uq_relay_outbox_version_id"),
        sa.CheckConstraint("kind IN ('submission')", name=op.f("ck_relay_outbox_kind")),
        _fk("relay_outbox", "project_id", "projects"),
        _fk("relay_outbox", "version_id", "submission_versions"),
    )
    op.create_index("ix_relay_outbox_pending", "relay_outbox", ["project_id", "sent_at", "id"])
    op.create_index("ix_relay_outbox_batch_key", "relay_outbox", ["batch_key"])
    op.create_table(
        "relay_uploads",
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("location", sa.String(500), nullable=True),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("upload_offset", sa.BigInteger(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "sha256", name="pk_relay_uploads"),
        _fk("relay_uploads", "project_id", "projects"),
    )


def downgrade() -> None:
    op.drop_table("relay_uploads")
    op.drop_index("ix_relay_outbox_batch_key", table_name="relay_outbox")
    op.drop_index("ix_relay_outbox_pending", table_name="relay_outbox")
    op.drop_table("relay_outbox")
    op.drop_table("relay_links")
    op.drop_index("ix_relayed_submissions_relay_id", table_name="relayed_submissions")
    op.drop_index("ix_relayed_submissions_project_id", table_name="relayed_submissions")
    op.drop_table("relayed_submissions")
    op.drop_table("relay_projects")
    op.drop_table("relays")
