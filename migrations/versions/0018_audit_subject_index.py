"""Audit log: an index on (subject, id), so one object's trail (a submission's page) reads only its events.

Revision ID: 0018_audit_subject_index
Revises: 0017_indicators
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0018_audit_subject_index"
down_revision = "0017_indicators"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_events_subject", "audit_events", ["subject", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_subject", table_name="audit_events")
