"""Webhooks: the transactional outbox (``events``), subscriptions, deliveries and their attempts.

Revision ID: 0014_webhooks
Revises: 0013_form_conversion_jobs
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, JSONType, UTCDateTime

revision = "0014_webhooks"
down_revision = "0013_form_conversion_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("form_id", sa.String(255), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("fanned_out", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_events_project_id_projects", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_events_project_id", "events", ["project_id"])
    op.create_index("ix_events_fanned_out_id", "events", ["fanned_out", "id"])
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", JSONType, nullable=False),
        sa.Column("form_id", sa.String(255), nullable=True),
        sa.Column("language", sa.String(100), nullable=True),
        sa.Column("payload_format", sa.String(10), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("previous_secret", sa.String(100), nullable=True),
        sa.Column("previous_secret_until", UTCDateTime(), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("state_reason", sa.String(300), nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_subscriptions"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_webhook_subscriptions_project_id_projects", ondelete="CASCADE"
        ),
        sa.CheckConstraint("state IN ('active', 'paused', 'disabled')", name=op.f("ck_webhook_subscriptions_state")),
        sa.CheckConstraint(
            "payload_format IN ('standard', 'kobo')", name=op.f("ck_webhook_subscriptions_payload_format")
        ),
    )
    op.create_index("ix_webhook_subscriptions_project_id", "webhook_subscriptions", ["project_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("give_up_at", UTCDateTime(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response_ms", sa.Integer(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("replay", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name="fk_webhook_deliveries_subscription_id_webhook_subscriptions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_webhook_deliveries_event_id_events", ondelete="CASCADE"
        ),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'dead')", name=op.f("ck_webhook_deliveries_status")),
    )
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])
    op.create_index(
        "ix_webhook_deliveries_subscription_id_status_id", "webhook_deliveries", ["subscription_id", "status", "id"]
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", BigIntPK, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_ms", sa.Integer(), nullable=False),
        sa.Column("dispatcher", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_attempts"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name="fk_webhook_attempts_delivery_id_webhook_deliveries",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("events")
