"""The submissions JSON API: cursor pages with filters, one submission with versions and files, downloads, reviews.

Rules:
- A1 the list is ordered by (received time, id); the opaque cursor walks every row exactly once; filters by
  review state, submitter and date apply; a forged cursor is 400.
- A2 a submission is found by any version's instance id; it shows the current record, every version
  (edit order) and each file as present or missing.
- A3 a present file downloads byte for byte; a missing one is 404.
- A4 PATCH changes the review state with a comment; each change is a review row and an audit event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AuditEvent
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission, post_submission

BASE = "/v1/projects/{pid}/forms/photo_visit/submissions"


def _setup(app: Flask, client: FlaskClient, personas: Personas, count: int) -> str:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    for k in range(count):
        response = post_submission(
            client, personas.collect_prefix, photo_submission(f"uuid:api-{k:02d}", [], site=f"s{k}")
        )
        assert response.status_code == 201
    return BASE.format(pid=personas.project_id)


def test_cursor_pages_walk_every_row_once(app: Flask, client: FlaskClient, personas: Personas) -> None:
    base = _setup(app, client, personas, 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = client.get(base, query_string=query, headers=personas.analyst.headers).get_json()
        seen += [item["instance_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"uuid:api-{k:02d}" for k in range(7)]
    assert pages == 3
    assert client.get(base, query_string={"cursor": "forged!"}, headers=personas.analyst.headers).status_code == 400
    assert client.get(base, query_string={"colour": "red"}, headers=personas.analyst.headers).status_code == 400


def test_filters(app: Flask, client: FlaskClient, personas: Personas) -> None:
    base = _setup(app, client, personas, 3)
    patched = client.patch(f"{base}/uuid:api-01", json={"review_state": "approved"}, headers=personas.manager.headers)
    assert patched.status_code == 200
    approved = client.get(base, query_string={"review_state": "approved"}, headers=personas.analyst.headers).get_json()
    assert [i["instance_id"] for i in approved["items"]] == ["uuid:api-01"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get(base, query_string={"since": future}, headers=personas.analyst.headers).get_json()["items"] == []
    assert (
        len(client.get(base, query_string={"until": future}, headers=personas.analyst.headers).get_json()["items"]) == 3
    )
    # Device submissions have no submitting user.
    by_user = client.get(base, query_string={"submitter": personas.coach.id}, headers=personas.analyst.headers)
    assert by_user.get_json()["items"] == []
    assert (
        client.get(
            BASE.format(pid=personas.project_id).replace("photo_visit", "nope"), headers=personas.analyst.headers
        ).status_code
        == 404
    )


def test_detail_versions_files_and_download(app: Flask, client: FlaskClient, personas: Personas) -> None:
    base = _setup(app, client, personas, 0)
    v1 = photo_submission("uuid:d1", ["a.jpg", "b.jpg"], site="first")
    v2 = photo_submission("uuid:d2", ["a.jpg", "b.jpg"], site="second", deprecated_id="uuid:d1")
    assert post_submission(client, personas.collect_prefix, v1, {"a.jpg": b"AAA"}).status_code == 201
    assert post_submission(client, personas.collect_prefix, v2).status_code == 201
    for instance_id in ("uuid:d1", "uuid:d2"):
        body = client.get(f"{base}/{instance_id}", headers=personas.analyst.headers).get_json()
        assert body["instance_id"] == "uuid:d1"
        assert body["current_instance_id"] == "uuid:d2"
        assert body["data"]["site"] == "second"
        assert body["edited"] is True
        assert [v["instance_id"] for v in body["versions"]] == ["uuid:d1", "uuid:d2"]
        # a.jpg was carried over to the edit by file name; b.jpg never arrived.
        assert {f["name"]: f["present"] for f in body["files"]} == {"a.jpg": True, "b.jpg": False}
        assert (body["attachments_expected"], body["attachments_present"]) == (2, 1)
    download = client.get(f"{base}/uuid:d2/attachments/a.jpg", headers=personas.analyst.headers)
    assert download.status_code == 200
    assert download.data == b"AAA"
    assert download.mimetype == "image/jpeg"
    assert client.get(f"{base}/uuid:d2/attachments/b.jpg", headers=personas.analyst.headers).status_code == 404
    assert client.get(f"{base}/uuid:nope", headers=personas.analyst.headers).status_code == 404


def test_review_changes_are_recorded_and_audited(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    base = _setup(app, client, personas, 1)
    url = f"{base}/uuid:api-00"
    first = client.patch(
        url, json={"review_state": "has_issues", "comment": "GPS manquant"}, headers=personas.manager.headers
    )
    assert first.status_code == 200
    second = client.patch(url, json={"review_state": "approved"}, headers=personas.admin.headers)
    body = second.get_json()
    assert body["review_state"] == "approved"
    assert [(r["from_state"], r["to_state"], r["comment"]) for r in body["reviews"]] == [
        ("received", "has_issues", "GPS manquant"),
        ("has_issues", "approved", None),
    ]
    assert client.patch(url, json={"review_state": "lost"}, headers=personas.manager.headers).status_code == 400
    assert client.patch(url, json={}, headers=personas.manager.headers).status_code == 400
    session.commit()
    actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("submission.%")))]
    session.commit()
    assert actions.count("submission.review") == 2
    assert actions.count("submission.create") == 1
