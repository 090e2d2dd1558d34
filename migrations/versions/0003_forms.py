"""Tables of the forms area (filled by its issue).

Revision ID: 0003_forms
Revises: 0002_blobs
Create Date: 2026-11-29
"""

from __future__ import annotations

revision = "0003_forms"
down_revision = "0002_blobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
