"""Tables of the submissions area (filled by its issue).

Revision ID: 0004_submissions
Revises: 0003_forms
Create Date: 2026-11-29
"""

from __future__ import annotations

revision = "0004_submissions"
down_revision = "0003_forms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
