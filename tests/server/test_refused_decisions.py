"""A manager releases or discards a refused submission (the second, different XML under a stored instance id).

Rules:
- RD-1 Release stores the refused XML as an edit of the submission it collided with: a new version whose
  instance id is derived from the payload and whose deprecatedID is the chain's current instance id; the
  refused row says released, by whom and under which instance id; the decision is audited.
- RD-2 Repeating a decision answers as the first did and stores nothing more; the other decision is
  then a 409 that leaves the store as it was.
- RD-3 Discard keeps the payload, marks it discarded and stores no submission version.
- RD-4 A payload whose submission was deleted since cannot be released (409 naming why), stays held.
- RD-5 Another project's payload is 404 for release and discard.
- RD-6 The console's refused page releases without JavaScript and shows the decision.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from forms.submission import read_submission_header
from server.db.models.audit import AuditEvent
from server.db.models.submissions import RefusedSubmission, Submission, SubmissionVersion
from server.store import get_store
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission, post_submission


@pytest.fixture
def refused_id(app: Flask, client: FlaskClient, personas: Personas) -> int:
    """One stored submission and one refused payload under its instance id (another site)."""
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    assert post_submission(client, personas.collect_prefix, photo_submission("uuid:dup-1", [])).status_code == 201
    changed = photo_submission("uuid:dup-1", [], site="Tiznit")
    assert post_submission(client, personas.collect_prefix, changed).status_code == 409
    return int(_rows(app, select(RefusedSubmission.id))[0])


def _rows(app: Flask, statement: Any) -> list[Any]:
    with app.app_context():
        session = get_store().sessions()
        try:
            return list(
                session.execute(statement).all() if len(statement.selected_columns) > 1 else session.scalars(statement)
            )
        finally:
            session.close()


def _store(app: Flask) -> dict[str, Any]:
    """What the decisions may change: the versions, the chains' heads and the refused rows' states."""
    versions = _rows(app, select(SubmissionVersion.instance_id, SubmissionVersion.deprecated_id, SubmissionVersion.xml))
    heads = _rows(app, select(Submission.instance_id, Submission.current_instance_id))
    states = _rows(app, select(RefusedSubmission.id, RefusedSubmission.state, RefusedSubmission.released_instance_id))
    return {
        "versions": sorted(map(tuple, versions)),
        "heads": sorted(map(tuple, heads)),
        "states": sorted(map(tuple, states)),
    }


def _url(personas: Personas, refused: int, action: str, project_id: int | None = None) -> str:
    return f"/v1/projects/{project_id or personas.project_id}/refused-submissions/{refused}/{action}"


def test_release_stores_the_payload_as_an_edit_once(
    app: Flask, client: FlaskClient, personas: Personas, refused_id: int
) -> None:
    refused_xml = client.get(
        f"/v1/projects/{personas.project_id}/refused-submissions/{refused_id}/xml", headers=personas.manager.headers
    ).data
    answer = client.post(_url(personas, refused_id, "release"), headers=personas.manager.headers)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["state"] == "released" and body["decidedBy"] == f"user:{personas.manager.id}"
    new_id = body["releasedInstanceId"]
    assert new_id.startswith("uuid:") and new_id != "uuid:dup-1"

    versions = {
        row[0]: row
        for row in _rows(
            app, select(SubmissionVersion.instance_id, SubmissionVersion.deprecated_id, SubmissionVersion.xml)
        )
    }
    assert set(versions) == {"uuid:dup-1", new_id}
    edit = read_submission_header(bytes(versions[new_id][2]))
    assert (edit.instance_id, edit.deprecated_id) == (new_id, "uuid:dup-1")
    assert versions[new_id][1] == "uuid:dup-1"
    assert b"Tiznit" in bytes(versions[new_id][2]) and b"Tiznit" in refused_xml
    assert _rows(app, select(Submission.current_instance_id)) == [new_id]
    audits = _rows(app, select(AuditEvent.action).where(AuditEvent.action.like("refused.%")))
    assert audits == ["refused.release"]

    before = _store(app)
    again = client.post(_url(personas, refused_id, "release"), headers=personas.manager.headers)
    assert again.status_code == 200 and again.get_json()["releasedInstanceId"] == new_id
    refused_discard = client.post(_url(personas, refused_id, "discard"), headers=personas.manager.headers)
    assert refused_discard.status_code == 409 and refused_discard.get_json()["details"]["state"] == "released"
    assert _store(app) == before


def test_discard_keeps_the_payload_and_stores_nothing(
    app: Flask, client: FlaskClient, personas: Personas, refused_id: int
) -> None:
    versions_before = _store(app)["versions"]
    answer = client.post(_url(personas, refused_id, "discard"), headers=personas.manager.headers)
    assert answer.status_code == 200 and answer.get_json()["state"] == "discarded"
    assert answer.get_json()["releasedInstanceId"] is None and "Tiznit" in answer.get_json()["xml"]
    after = _store(app)
    assert after["versions"] == versions_before
    assert client.post(_url(personas, refused_id, "discard"), headers=personas.manager.headers).status_code == 200
    release = client.post(_url(personas, refused_id, "release"), headers=personas.manager.headers)
    assert release.status_code == 409 and release.get_json()["details"]["state"] == "discarded"
    assert _store(app) == after


def test_a_payload_whose_submission_was_deleted_stays_held(
    app: Flask, client: FlaskClient, personas: Personas, refused_id: int
) -> None:
    deleted = client.delete(
        f"/v1/projects/{personas.project_id}/forms/photo_visit/submissions/uuid:dup-1", headers=personas.manager.headers
    )
    assert deleted.status_code in (200, 204)
    before = _store(app)
    answer = client.post(_url(personas, refused_id, "release"), headers=personas.manager.headers)
    assert answer.status_code == 409
    assert "deleted" in answer.get_json()["message"]
    assert _store(app) == before


@pytest.mark.parametrize("action", ["release", "discard"])
def test_another_project_s_payload_is_404(
    app: Flask, client: FlaskClient, personas: Personas, refused_id: int, action: str
) -> None:
    before = _store(app)
    answer = client.post(_url(personas, refused_id, action, personas.other_project_id), headers=personas.admin.headers)
    assert answer.status_code == 404
    assert _store(app) == before
