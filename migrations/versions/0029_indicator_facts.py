"""Indicator facts: what each indicator definition reads from each submission version (PostgreSQL's dashboard).

Revision ID: 0029_indicator_facts
Revises: 0026_relays
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_indicator_facts"
down_revision = "0026_relays"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty at first: a figure's first read fills the facts of the versions it counts.
    op.create_table(
        "indicator_facts",
        sa.Column("definition_id", sa.BigInteger(), nullable=False),
        sa.Column("breakdown", sa.String(255), nullable=False),
        sa.Column("form_id", sa.BigInteger(), nullable=False),
        sa.Column("instance_id", sa.String(255), nullable=False),
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("passes", sa.Boolean(), nullable=False),
        sa.Column("k", sa.Text(), nullable=True),
        sa.Column("m", sa.Text(), nullable=True),
        sa.Column("d", sa.Text(), nullable=True),
        sa.Column("match", sa.Integer(), nullable=False),
        sa.Column("number", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("definition_id", "breakdown", "form_id", "instance_id", name="pk_indicator_facts"),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["indicator_definitions.id"],
            name="fk_indicator_facts_definition_id_indicator_definitions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["submission_versions.id"],
            name="fk_indicator_facts_version_id_submission_versions",
            ondelete="CASCADE",
        ),
    )
    # A version's deletion (a purge) finds its facts through this index rather than a scan.
    op.create_index("ix_indicator_facts_version_id", "indicator_facts", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_indicator_facts_version_id", table_name="indicator_facts")
    op.drop_table("indicator_facts")
