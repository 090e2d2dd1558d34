"""Office relays: the outbox also holds entity changes pushed to the office as JSON items.

Revision ID: 0027_relay_entity_items
Revises: 0026_relays
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027_relay_entity_items"
down_revision = "0026_relays"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relay_outbox") as batch:
        batch.add_column(sa.Column("entity_op_id", sa.BigInteger(), nullable=True))
        batch.alter_column("version_id", existing_type=sa.BigInteger(), nullable=True)
        batch.drop_constraint(op.f("ck_relay_outbox_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_relay_outbox_kind"), "kind IN ('submission', 'entity')")
        batch.create_unique_constraint("uq_relay_outbox_entity_op_id", ["entity_op_id"])
        batch.create_foreign_key(
            "fk_relay_outbox_entity_op_id_entity_ops", "entity_ops", ["entity_op_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    op.execute("DELETE FROM relay_outbox WHERE kind = 'entity'")
    with op.batch_alter_table("relay_outbox") as batch:
        batch.drop_constraint("fk_relay_outbox_entity_op_id_entity_ops", type_="foreignkey")
        batch.drop_constraint("uq_relay_outbox_entity_op_id", type_="unique")
        batch.drop_constraint(op.f("ck_relay_outbox_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_relay_outbox_kind"), "kind IN ('submission')")
        batch.alter_column("version_id", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("entity_op_id")
