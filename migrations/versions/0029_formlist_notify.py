"""formList notifications: PostgreSQL tells every server when a cached formList answer may be stale.

A ``NOTIFY fieldsync_formlist`` is sent (at commit, once per transaction) whenever a project's formList
stamp moves (migration 0023's triggers draw it on every change a formList shows) and whenever an access
token changes in any way a formList answer depends on: revoked, expired, deleted, another role or
project. ``last_used_at`` alone is left out: it is written once per token and resolution period and
changes no answer. The payload is the schema of the table, so servers of another schema of the same
database (another deployment, a parallel test) ignore it. Each server process listens
(``server.db.change_listener``) and, while its listener is connected, answers an unchanged device
formList without reading the database. SQLite (one host) gets no trigger: its servers read the stamp
on every request, as before.

Revision ID: 0029_formlist_notify
Revises: 0028_indicator_rollups
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0029_formlist_notify"
down_revision = "0028_indicator_rollups"
branch_labels = None
depends_on = None

CHANNEL = "fieldsync_formlist"
_FUNCTION = f"""
CREATE FUNCTION fieldsync_formlist_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA);
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER formlist_stamps_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON formlist_stamps "
        "FOR EACH STATEMENT EXECUTE FUNCTION fieldsync_formlist_notify()"
    )
    # Any column but last_used_at: a column added later is covered without a new migration.
    op.execute(
        "CREATE TRIGGER access_tokens_notify_update AFTER UPDATE ON access_tokens FOR EACH ROW "
        "WHEN (to_jsonb(OLD) - 'last_used_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at') "
        "EXECUTE FUNCTION fieldsync_formlist_notify()"
    )
    op.execute(
        "CREATE TRIGGER access_tokens_notify_delete AFTER DELETE OR TRUNCATE ON access_tokens "
        "FOR EACH STATEMENT EXECUTE FUNCTION fieldsync_formlist_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER access_tokens_notify_delete ON access_tokens")
    op.execute("DROP TRIGGER access_tokens_notify_update ON access_tokens")
    op.execute("DROP TRIGGER formlist_stamps_notify ON formlist_stamps")
    op.execute("DROP FUNCTION fieldsync_formlist_notify()")
