"""Tables of the sync area (filled by its issue).

Revision ID: 0005_sync
Revises: 0004_submissions
Create Date: 2026-11-29
"""

from __future__ import annotations

revision = "0005_sync"
down_revision = "0004_submissions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
