"""Dashboard rollups on PostgreSQL: per-definition facts and sums, kept in step through a change log.

``indicator_changes`` is written by a trigger on ``submissions`` (insert, delete, and an update of the
columns a figure reads: review state, deletion, current version, arrival date): one row per rollup of
the submission's form (none for a form without a rollup), in the writer's own transaction. Every write
path is covered, the bulk push through psycopg included, with no Python write path changed. The tables
exist on SQLite too (one schema), where no trigger writes them and figures are computed from the
submissions on every read.

Revision ID: 0028_indicator_rollups
Revises: 0027_relay_entity_items
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.db.base import BigIntPK, UTCDateTime

revision = "0028_indicator_rollups"
down_revision = "0027_relay_entity_items"
branch_labels = None
depends_on = None

# The shared lock (per schema and form, held to the writer's commit) lets a rollup's build wait for the
# writers that checked for a rollup before it existed (server.db.queries.indicator_rollups.wait_for_writers).
TRIGGER_FUNCTION = """
CREATE FUNCTION fieldsync_indicator_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed submissions%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(
        hashtextextended('fieldsync.indicators:' || current_schema() || ':' || changed.form_id, 0));
    INSERT INTO indicator_changes (definition_id, submission_id)
    SELECT definition_id, changed.id FROM indicator_rollup_states WHERE form_id = changed.form_id;
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER fieldsync_indicator_change
AFTER INSERT OR DELETE OR UPDATE OF review_state, deleted_at, current_instance_id, created_at
ON submissions FOR EACH ROW EXECUTE FUNCTION fieldsync_indicator_change()
"""


def upgrade() -> None:
    op.create_table(
        "indicator_rollup_states",
        sa.Column("definition_id", sa.BigInteger(), nullable=False),
        sa.Column("form_id", sa.BigInteger(), nullable=False),
        sa.Column("built_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["indicator_definitions.id"],
            name=op.f("fk_indicator_rollup_states_definition_id_indicator_definitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["form_id"], ["forms.id"], name=op.f("fk_indicator_rollup_states_form_id_forms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("definition_id", name=op.f("pk_indicator_rollup_states")),
    )
    op.create_index(op.f("ix_indicator_rollup_states_form_id"), "indicator_rollup_states", ["form_id"])
    op.create_table(
        "indicator_facts",
        sa.Column("definition_id", sa.BigInteger(), nullable=False),
        sa.Column("submission_id", sa.BigInteger(), nullable=False),
        sa.Column("keys", sa.Text(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("number", sa.Numeric(), nullable=True),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["indicator_rollup_states.definition_id"],
            name=op.f("fk_indicator_facts_definition_id_indicator_rollup_states"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("definition_id", "submission_id", name=op.f("pk_indicator_facts")),
    )
    op.create_table(
        "indicator_rollups",
        sa.Column("definition_id", sa.BigInteger(), nullable=False),
        sa.Column("keys", sa.Text(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("matched", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Numeric(), nullable=False),
        sa.Column("numbers", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["indicator_rollup_states.definition_id"],
            name=op.f("fk_indicator_rollups_definition_id_indicator_rollup_states"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("definition_id", "keys", "month", "value", name=op.f("pk_indicator_rollups")),
    )
    op.create_table(
        "indicator_changes",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("definition_id", sa.BigInteger(), nullable=False),
        sa.Column("submission_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["indicator_rollup_states.definition_id"],
            name=op.f("fk_indicator_changes_definition_id_indicator_rollup_states"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_indicator_changes")),
    )
    op.create_index(op.f("ix_indicator_changes_definition_id"), "indicator_changes", ["definition_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TRIGGER_FUNCTION)
        op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER fieldsync_indicator_change ON submissions")
        op.execute("DROP FUNCTION fieldsync_indicator_change()")
    op.drop_index(op.f("ix_indicator_changes_definition_id"), table_name="indicator_changes")
    op.drop_table("indicator_changes")
    op.drop_table("indicator_rollups")
    op.drop_table("indicator_facts")
    op.drop_index(op.f("ix_indicator_rollup_states_form_id"), table_name="indicator_rollup_states")
    op.drop_table("indicator_rollup_states")
