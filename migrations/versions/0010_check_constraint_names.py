"""Check constraints get the names the models give them (``ck_forms_state``, not ``ck_forms_ck_forms_state``).

The earlier migrations passed full names (``name="ck_forms_state"``) to ``CheckConstraint``, and the
naming convention (``ck_%(table_name)s_%(constraint_name)s``) prefixed them a second time, so every
migrated store had names the models never use. Harmless until a migration drops one by its model
name; renamed here. PostgreSQL renames in place; SQLite rebuilds each table (batch mode, with
foreign keys off as ``migrations/env.py`` does for every SQLite migration).

Revision ID: 0010_check_constraint_names
Revises: 0009_composite_foreign_keys
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0010_check_constraint_names"
down_revision = "0009_composite_foreign_keys"
branch_labels = None
depends_on = None

# table -> (constraint name without the "ck_<table>_" prefix, its condition), as the earlier migrations wrote them
CHECKS: dict[str, list[tuple[str, str]]] = {
    "memberships": [("role", "role IN ('manager', 'coach', 'analyst')")],
    "access_tokens": [("kind", "kind IN ('device', 'session')")],
    "forms": [("state", "state IN ('open', 'closing', 'closed')")],
    "form_versions": [("status", "status IN ('draft', 'published')")],
    "submissions": [("review_state", "review_state IN ('received', 'has_issues', 'approved', 'rejected')")],
    "entities": [("conflict", "conflict IN ('soft', 'hard')")],
    "push_batches": [("state", "state IN ('in_progress', 'done')")],
    "uploads": [("state", "state IN ('open', 'done', 'failed', 'expired')")],
    "held_items": [
        ("outcome", "outcome IN ('quarantined', 'rejected')"),
        ("status", "status IN ('open', 'released', 'discarded')"),
    ],
    "export_schedules": [("keep", "keep >= 1"), ("format", "format IN ('zip', 'xlsx', 'geojson')")],
    "export_runs": [("status", "status IN ('running', 'done', 'failed')")],
}


def _rename(names: list[tuple[str, str, str, str]]) -> None:
    """Rename each ``(table, old, new, condition)`` check constraint."""
    if op.get_bind().dialect.name != "sqlite":
        for table, old, new, _ in names:
            op.execute(f'ALTER TABLE {table} RENAME CONSTRAINT "{old}" TO "{new}"')
        return
    for table in CHECKS:
        with op.batch_alter_table(table) as batch:
            for _, old, new, condition in (n for n in names if n[0] == table):
                batch.drop_constraint(op.f(old), type_="check")
                batch.create_check_constraint(op.f(new), condition)  # op.f: the name as given, no second prefix


def _names() -> list[tuple[str, str, str, str]]:
    """``(table, doubled name, model name, condition)`` of every check constraint."""
    return [
        (table, f"ck_{table}_ck_{table}_{name}", f"ck_{table}_{name}", condition)
        for table, checks in CHECKS.items()
        for name, condition in checks
    ]


def upgrade() -> None:
    _rename(_names())


def downgrade() -> None:
    _rename([(table, single, doubled, condition) for table, doubled, single, condition in _names()])
