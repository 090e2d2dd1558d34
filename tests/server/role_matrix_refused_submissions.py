"""Role matrix rows for refused submissions (the "kept for review" content): managers and admins read them."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.role_matrix import Case, statuses

MANAGERS = ("admin", "manager")
RULE = "/v1/projects/<int:project_id>/refused-submissions"
PATH = "/v1/projects/{pid}/refused-submissions"


def with_refused(app: Flask, personas: Personas) -> dict[str, Any]:
    """Store a submission, then refuse other XML under its instance id; return the refused row's id."""
    from sqlalchemy import select

    from server.db.models.submissions import RefusedSubmission
    from server.store import get_store
    from tests.server.fixtures_forms import publish_form
    from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission, post_submission

    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    client = app.test_client()
    assert post_submission(client, personas.collect_prefix, photo_submission("uuid:refused-1", [])).status_code == 201
    changed = photo_submission("uuid:refused-1", [], site="Tiznit")
    assert post_submission(client, personas.collect_prefix, changed).status_code == 409
    with app.app_context():
        session = get_store().sessions()
        refused_id = session.scalars(select(RefusedSubmission.id)).one()
        session.close()
    return {"refused_id": refused_id}


CASES = [
    Case("GET", PATH, RULE, statuses(200, allowed=MANAGERS)),
    Case(
        "GET", PATH + "/{refused_id}", RULE + "/<int:refused_id>", statuses(200, allowed=MANAGERS), setup="with_refused"
    ),
    Case(
        "GET",
        PATH + "/{refused_id}/xml",
        RULE + "/<int:refused_id>/xml",
        statuses(200, allowed=MANAGERS),
        setup="with_refused",
    ),
    Case(
        "POST",
        PATH + "/{refused_id}/release",
        RULE + "/<int:refused_id>/release",
        statuses(200, allowed=MANAGERS),
        setup="with_refused",
    ),
    Case(
        "POST",
        PATH + "/{refused_id}/discard",
        RULE + "/<int:refused_id>/discard",
        statuses(200, allowed=MANAGERS),
        setup="with_refused",
    ),
]
