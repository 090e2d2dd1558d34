"""Submissions: composite foreign keys tie a submission to its project's form, a version to its submission's.

``submissions`` had two foreign keys (``project_id -> projects``, ``form_id -> forms``) and
``submission_versions`` three (``submission_id``, ``project_id``, ``form_id``), yet nothing said that
a submission's form is in the submission's project, or that a version has its submission's project
and form. On PostgreSQL each foreign key is a trigger per inserted row, and those triggers were about
a third of the cost of inserting a new submission. One composite key per table says more with fewer
checks:

* ``submissions (form_id, project_id) -> forms (id, project_id)``
* ``submission_versions (submission_id, project_id, form_id) -> submissions (id, project_id, form_id)``

so a new submission fires 3 foreign-key triggers fewer (2 instead of 5 for these columns). Both keep
ON DELETE CASCADE (deleting a project still cascades, through its forms). Their targets need unique
constraints, ``forms (id, project_id)`` and ``submissions (id, project_id, form_id)``: the price is one
more index entry per new submission. The composite keys keep the names of the single-column keys
they replace (the naming convention takes the first column).

SQLite rebuilds the three tables (batch mode); ``migrations/env.py`` runs every migration there with
foreign-key enforcement off (a rebuild's DROP would otherwise cascade) and checks every row before
the commit, so a database with a submission whose form is in another project refuses the upgrade.

Revision ID: 0009_composite_foreign_keys
Revises: 0008_partial_deprecated_index
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0009_composite_foreign_keys"
down_revision = "0008_partial_deprecated_index"
branch_labels = None
depends_on = None

FORMS_KEY = "uq_forms_id_project_id"
SUBMISSIONS_KEY = "uq_submissions_id_project_id_form_id"
SUBMISSION_FORM_FK = "fk_submissions_form_id_forms"
SUBMISSION_PROJECT_FK = "fk_submissions_project_id_projects"
VERSION_SUBMISSION_FK = "fk_submission_versions_submission_id_submissions"
VERSION_PROJECT_FK = "fk_submission_versions_project_id_projects"
VERSION_FORM_FK = "fk_submission_versions_form_id_forms"


def upgrade() -> None:
    # On PostgreSQL batch mode emits plain ALTER TABLE statements; SQLite rebuilds each table.
    with op.batch_alter_table("forms") as batch:
        batch.create_unique_constraint(FORMS_KEY, ["id", "project_id"])
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(SUBMISSION_PROJECT_FK, type_="foreignkey")
        batch.drop_constraint(SUBMISSION_FORM_FK, type_="foreignkey")
        batch.create_foreign_key(
            SUBMISSION_FORM_FK, "forms", ["form_id", "project_id"], ["id", "project_id"], ondelete="CASCADE"
        )
        batch.create_unique_constraint(SUBMISSIONS_KEY, ["id", "project_id", "form_id"])
    with op.batch_alter_table("submission_versions") as batch:
        batch.drop_constraint(VERSION_SUBMISSION_FK, type_="foreignkey")
        batch.drop_constraint(VERSION_PROJECT_FK, type_="foreignkey")
        batch.drop_constraint(VERSION_FORM_FK, type_="foreignkey")
        batch.create_foreign_key(
            VERSION_SUBMISSION_FK,
            "submissions",
            ["submission_id", "project_id", "form_id"],
            ["id", "project_id", "form_id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("submission_versions") as batch:
        batch.drop_constraint(VERSION_SUBMISSION_FK, type_="foreignkey")
        batch.create_foreign_key(VERSION_SUBMISSION_FK, "submissions", ["submission_id"], ["id"], ondelete="CASCADE")
        batch.create_foreign_key(VERSION_PROJECT_FK, "projects", ["project_id"], ["id"], ondelete="CASCADE")
        batch.create_foreign_key(VERSION_FORM_FK, "forms", ["form_id"], ["id"], ondelete="CASCADE")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(SUBMISSIONS_KEY, type_="unique")
        batch.drop_constraint(SUBMISSION_FORM_FK, type_="foreignkey")
        batch.create_foreign_key(SUBMISSION_PROJECT_FK, "projects", ["project_id"], ["id"], ondelete="CASCADE")
        batch.create_foreign_key(SUBMISSION_FORM_FK, "forms", ["form_id"], ["id"], ondelete="CASCADE")
    with op.batch_alter_table("forms") as batch:
        batch.drop_constraint(FORMS_KEY, type_="unique")
