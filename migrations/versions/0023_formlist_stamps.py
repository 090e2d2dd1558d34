"""formList stamps: one value per project, drawn anew by triggers whenever its formList may change.

A random 63-bit value rather than a counter: a counter would restart at 1 for a project re-created
with a reused id (SQLite reuses them), or run again over the same values after a test's rollback or
a restore, and a server's cached document would then pass for the new one.

Revision ID: 0023_formlist_stamps
Revises: 0021_central_accounts
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_formlist_stamps"
down_revision = "0021_central_accounts"
branch_labels = None
depends_on = None

# What a formList lists: a form's id, state and published version (``forms``) and whether that
# version has attachments (``form_attachments``). Each change draws the project's stamp anew; other
# updates of a form (its ``updated_at`` ...) do not, so ingest never contends for the stamp row.
_FORM_COLUMNS = "project_id, xml_form_id, state, current_version_id"
_BUMP_SQLITE = (
    "INSERT INTO formlist_stamps (project_id, stamp) {source} "
    "ON CONFLICT (project_id) DO UPDATE SET stamp = excluded.stamp"
)
_ATTACHMENT_PROJECT = (
    "SELECT f.project_id, abs(random()) FROM form_versions v JOIN forms f ON f.id = v.form_id "
    "WHERE v.id = {row}.form_version_id"
)
_PG_FUNCTIONS = {
    "fieldsync_formlist_bump_forms": """
        DECLARE pid bigint;
        BEGIN
            IF TG_OP = 'DELETE' THEN pid := OLD.project_id; ELSE pid := NEW.project_id; END IF;
            -- A project being deleted (its forms go with it) gets no stamp back.
            INSERT INTO formlist_stamps (project_id, stamp)
            SELECT pid, (random() * 9.2e18)::bigint WHERE EXISTS (SELECT 1 FROM projects WHERE id = pid)
            ON CONFLICT (project_id) DO UPDATE SET stamp = excluded.stamp;
            RETURN NULL;
        END""",
    "fieldsync_formlist_bump_attachments": """
        DECLARE vid bigint;
        BEGIN
            IF TG_OP = 'DELETE' THEN vid := OLD.form_version_id; ELSE vid := NEW.form_version_id; END IF;
            INSERT INTO formlist_stamps (project_id, stamp)
            SELECT f.project_id, (random() * 9.2e18)::bigint
            FROM form_versions v JOIN forms f ON f.id = v.form_id WHERE v.id = vid
            ON CONFLICT (project_id) DO UPDATE SET stamp = excluded.stamp;
            RETURN NULL;
        END""",
}


def upgrade() -> None:
    op.create_table(
        "formlist_stamps",
        sa.Column("project_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("stamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name="pk_formlist_stamps"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_formlist_stamps_project_id_projects", ondelete="CASCADE"
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        for name, body in _PG_FUNCTIONS.items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$")
        op.execute(
            f"CREATE TRIGGER formlist_stamp_forms AFTER INSERT OR UPDATE OF {_FORM_COLUMNS} OR DELETE ON forms "
            "FOR EACH ROW EXECUTE FUNCTION fieldsync_formlist_bump_forms()"
        )
        op.execute(
            "CREATE TRIGGER formlist_stamp_attachments AFTER INSERT OR UPDATE OR DELETE ON form_attachments "
            "FOR EACH ROW EXECUTE FUNCTION fieldsync_formlist_bump_attachments()"
        )
        return
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        # A project being deleted (its forms go with it) gets no stamp back.
        alive = f"EXISTS (SELECT 1 FROM projects WHERE id = {row}.project_id)"
        forms_bump = _BUMP_SQLITE.format(source=f"SELECT {row}.project_id, abs(random()) WHERE {alive}")
        columns = f" OF {_FORM_COLUMNS}" if event == "UPDATE" else ""
        op.execute(
            f"CREATE TRIGGER formlist_stamp_forms_{event.lower()} AFTER {event}{columns} ON forms "
            f"BEGIN {forms_bump}; END"
        )
        # "WHERE true": SQLite needs it to tell an upsert's ON CONFLICT from a join's ON (lang_upsert).
        attachments_bump = _BUMP_SQLITE.format(source=_ATTACHMENT_PROJECT.format(row=row) + " AND true")
        op.execute(
            f"CREATE TRIGGER formlist_stamp_attachments_{event.lower()} AFTER {event} ON form_attachments "
            f"BEGIN {attachments_bump}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER formlist_stamp_forms ON forms")
        op.execute("DROP TRIGGER formlist_stamp_attachments ON form_attachments")
        for name in _PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION {name}()")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER formlist_stamp_forms_{event}")
            op.execute(f"DROP TRIGGER formlist_stamp_attachments_{event}")
    op.drop_table("formlist_stamps")
