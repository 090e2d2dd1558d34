"""Tables of the exports area (filled by its issue).

Revision ID: 0006_exports
Revises: 0005_sync
Create Date: 2026-11-29
"""

from __future__ import annotations

revision = "0006_exports"
down_revision = "0005_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
