"""Tables of the sync area: entity lists, entities, entity ops and revisions, push batches, uploads,
held items, the change log and its clock.

Revision ID: 0005_sync
Revises: 0004_submissions
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0005_sync"
down_revision = "0004_submissions"
branch_labels = None
depends_on = None


def _project_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"], ["projects.id"], name=f"fk_{table}_project_id_projects", ondelete="CASCADE"
    )


def _list_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["list_id"], ["entity_lists.id"], name=f"fk_{table}_list_id_entity_lists", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "entity_lists",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("properties", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entity_lists"),
        _project_fk("entity_lists"),
        sa.UniqueConstraint("project_id", "name", name="uq_entity_lists_project_id_name"),
    )
    op.create_index("ix_entity_lists_project_id", "entity_lists", ["project_id"])
    op.create_table(
        "entities",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("list_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("properties", JSONType, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rev", sa.String(32), nullable=False),
        sa.Column("conflict", sa.String(10), nullable=True),
        sa.Column("conflict_fields", JSONType, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entities"),
        _list_fk("entities"),
        sa.UniqueConstraint("list_id", "entity_id", name="uq_entities_list_id_entity_id"),
        sa.CheckConstraint("conflict IN ('soft', 'hard')", name="ck_entities_conflict"),
    )
    op.create_index("ix_entities_list_id", "entities", ["list_id"])
    op.create_table(
        "entity_ops",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("list_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("op_id", sa.String(200), nullable=False),
        sa.Column("writer", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("context", JSONType, nullable=False),
        sa.Column("fields", JSONType, nullable=False),
        sa.Column("hlc", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("unknown_base", sa.Boolean(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("submission_version_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entity_ops"),
        _list_fk("entity_ops"),
        sa.UniqueConstraint("list_id", "op_id", name="uq_entity_ops_list_id_op_id"),
        sa.UniqueConstraint("list_id", "entity_id", "writer", "seq", name="uq_entity_ops_list_id_entity_id_writer_seq"),
    )
    op.create_index("ix_entity_ops_list_id_entity_id", "entity_ops", ["list_id", "entity_id"])
    op.create_table(
        "entity_revisions",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("list_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rev", sa.String(32), nullable=False),
        sa.Column("seen", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entity_revisions"),
        _list_fk("entity_revisions"),
        sa.UniqueConstraint("list_id", "entity_id", "version", name="uq_entity_revisions_list_id_entity_id_version"),
    )
    op.create_index("ix_entity_revisions_list_id_entity_id_rev", "entity_revisions", ["list_id", "entity_id", "rev"])
    op.create_table(
        "push_batches",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_key", sa.String(200), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_push_batches"),
        _project_fk("push_batches"),
        sa.UniqueConstraint("project_id", "batch_key", name="uq_push_batches_project_id_batch_key"),
        sa.CheckConstraint("state IN ('in_progress', 'done')", name="ck_push_batches_state"),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        _project_fk("uploads"),
        sa.CheckConstraint("state IN ('open', 'done', 'failed', 'expired')", name="ck_uploads_state"),
    )
    op.create_index("ix_uploads_project_id", "uploads", ["project_id"])
    op.create_index("ix_uploads_expires_at", "uploads", ["expires_at"])
    op.create_table(
        "held_items",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("item_key", sa.String(200), nullable=False),
        sa.Column("raw", JSONType, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_held_items"),
        _project_fk("held_items"),
        sa.UniqueConstraint("project_id", "fingerprint", name="uq_held_items_project_id_fingerprint"),
        sa.CheckConstraint("outcome IN ('quarantined', 'rejected')", name="ck_held_items_outcome"),
        sa.CheckConstraint("status IN ('open', 'released', 'discarded')", name="ck_held_items_status"),
    )
    op.create_index("ix_held_items_project_id", "held_items", ["project_id"])
    op.create_table(
        "change_log",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("collection", sa.String(50), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("op", sa.String(20), nullable=False),
        sa.Column("data", JSONType, nullable=False),
        sa.Column("audience", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_change_log"),
        _project_fk("change_log"),
        sa.UniqueConstraint("seq", name="uq_change_log_seq"),
    )
    op.create_index("ix_change_log_project_id_seq", "change_log", ["project_id", "seq"])
    op.create_table(
        "sync_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sync_clock"),
    )
    op.bulk_insert(
        sa.table("sync_clock", sa.column("id", sa.Integer()), sa.column("seq", sa.BigInteger())), [{"id": 1, "seq": 0}]
    )


def downgrade() -> None:
    for table in (
        "sync_clock",
        "change_log",
        "held_items",
        "uploads",
        "push_batches",
        "entity_revisions",
        "entity_ops",
        "entities",
        "entity_lists",
    ):
        op.drop_table(table)
