"""The submissions JSON API: cursor pages with filters, one submission with versions and files, downloads, reviews.

Rules:
- A1 the list is ordered by (received time, id); the opaque cursor walks every row exactly once; filters by
  review state, submitter and date apply; a forged cursor is 400.
- A2 a submission is found by any version's instance id; it shows the current record, every version
  (edit order) and each file as present or missing.
- A3 a present file downloads byte for byte; a missing one is 404.
- A4 PATCH changes the review state with a comment; each change is a review row and an audit event.
- A5 the list is a bare array in Central's shape (``X-Total-Count``; ``X-Extended-Metadata`` adds
  ``submitter`` and ``currentVersion``); the next page is the ``Link`` header.
- A6 REST create: raw XML or multipart with files; the same XML again answers the stored submission and
  stores nothing more; XML of another form is 400; a body that is not XML is 415.
- A7 REST edit: the XML must replace the current version (else 409 ``stale_edit``, nothing stored); the
  same edit sent again answers 200; the versions list is newest first; ``.xml`` is the current XML.
- A8 attachment upload: a file the XML names, once; the same bytes again succeed; other bytes are 409.
- A9 a comment or review sent again under the same Idempotency-Key (same person) is written once.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models import AuditEvent
from server.db.models.submissions import SubmissionVersion
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
        body = client.get(base, query_string=query, headers=personas.analyst.headers)
        seen += [item["instanceId"] for item in body.get_json()]
        assert body.headers["X-Total-Count"] == "7"
        pages += 1
        cursor = body.headers.get("X-Next-Cursor")
        assert ("Link" in body.headers) == (cursor is not None)
        if cursor is None:
            break
    assert seen == [f"uuid:api-{k:02d}" for k in range(7)]
    assert pages == 3
    assert client.get(base, query_string={"cursor": "forged!"}, headers=personas.analyst.headers).status_code == 400
    assert client.get(base, query_string={"colour": "red"}, headers=personas.analyst.headers).status_code == 400


def test_filters(app: Flask, client: FlaskClient, personas: Personas) -> None:
    base = _setup(app, client, personas, 3)
    patched = client.patch(f"{base}/uuid:api-01", json={"reviewState": "approved"}, headers=personas.manager.headers)
    assert patched.status_code == 200
    approved = client.get(base, query_string={"reviewState": "approved"}, headers=personas.analyst.headers).get_json()
    assert [i["instanceId"] for i in approved] == ["uuid:api-01"]
    unreviewed = client.get(base, query_string={"reviewState": "null"}, headers=personas.analyst.headers).get_json()
    assert [i["reviewState"] for i in unreviewed] == [None, None]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get(base, query_string={"since": future}, headers=personas.analyst.headers).get_json() == []
    assert len(client.get(base, query_string={"until": future}, headers=personas.analyst.headers).get_json()) == 3
    # Device submissions have no submitting user.
    by_user = client.get(base, query_string={"submitter": personas.coach.id}, headers=personas.analyst.headers)
    assert by_user.get_json() == []
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
        assert body["instanceId"] == "uuid:d1"
        assert body["currentInstanceId"] == "uuid:d2"
        assert body["data"]["site"] == "second"
        assert (body["reviewState"], body["edits"]) == ("edited", 1)
        assert [v["instanceId"] for v in body["versions"]] == ["uuid:d1", "uuid:d2"]
        # a.jpg was carried over to the edit by file name; b.jpg never arrived.
        assert {f["name"]: f["exists"] for f in body["files"]} == {"a.jpg": True, "b.jpg": False}
        assert (body["attachmentsExpected"], body["attachmentsPresent"]) == (2, 1)
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
        url, json={"reviewState": "hasIssues", "comment": "GPS manquant"}, headers=personas.manager.headers
    )
    assert first.status_code == 200
    second = client.patch(url, json={"reviewState": "approved"}, headers=personas.admin.headers)
    body = second.get_json()
    assert body["reviewState"] == "approved"
    assert [(r["fromState"], r["toState"], r["comment"]) for r in body["reviews"]] == [
        (None, "hasIssues", "GPS manquant"),
        ("hasIssues", "approved", None),
    ]
    assert client.patch(url, json={"reviewState": "has_issues"}, headers=personas.manager.headers).status_code == 400
    back = client.patch(url, json={"reviewState": None}, headers=personas.manager.headers)
    assert back.get_json()["reviewState"] is None
    assert client.patch(url, json={"reviewState": "lost"}, headers=personas.manager.headers).status_code == 400
    assert client.patch(url, json={}, headers=personas.manager.headers).status_code == 400
    session.commit()
    actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("submission.%")))]
    session.commit()
    assert actions.count("submission.review") == 3
    assert actions.count("submission.create") == 1


def test_a5_the_list_is_centrals_bare_array(app: Flask, client: FlaskClient, personas: Personas) -> None:
    base = _setup(app, client, personas, 2)
    plain = client.get(base, headers=personas.analyst.headers)
    assert plain.headers["X-Total-Count"] == "2" and "Link" not in plain.headers
    first = plain.get_json()[0]
    assert (first["instanceId"], first["reviewState"], first["submitterId"]) == (
        "uuid:api-00",
        None,
        personas.device.id,
    )
    assert first["deviceId"] == "collect:test123" and "currentVersion" not in first
    extended = client.get(base, headers={**personas.analyst.headers, "X-Extended-Metadata": "true"}).get_json()[0]
    assert extended["submitter"] == {"id": personas.device.id, "type": "field_key", "displayName": "test phone"}
    assert (extended["currentVersion"]["instanceId"], extended["currentVersion"]["current"]) == ("uuid:api-00", True)


def _xml_post(client: FlaskClient, url: str, xml: bytes, headers: dict[str, str], method: str = "POST") -> Any:
    return client.open(url, method=method, data=xml, content_type="application/xml", headers=headers)


def test_a6_rest_create_is_a_safe_retry(app: Flask, client: FlaskClient, personas: Personas, session: Session) -> None:
    base = _setup(app, client, personas, 0)
    xml = photo_submission("uuid:rest-1", ["p.jpg"])
    created = _xml_post(client, base + "?deviceID=pyodk", xml, personas.coach.headers)
    assert created.status_code == 200, created.get_data(as_text=True)
    body = created.get_json()
    assert (body["instanceId"], body["submitterId"], body["deviceId"]) == ("uuid:rest-1", personas.coach.id, "pyodk")
    assert body["attachmentsPresent"] == 0 and body["versions"][0]["source"] == "api"
    assert _xml_post(client, base, xml, personas.coach.headers).get_json()["instanceId"] == "uuid:rest-1"
    multipart = client.post(
        base,
        data={
            "xml_submission_file": (io.BytesIO(photo_submission("uuid:rest-2", ["q.jpg"])), "s.xml"),
            "q.jpg": (io.BytesIO(b"QQQ"), "q.jpg"),
        },
        content_type="multipart/form-data",
        headers=personas.coach.headers,
    )
    assert multipart.status_code == 200, multipart.get_data(as_text=True)
    assert [(f["name"], f["exists"]) for f in multipart.get_json()["files"]] == [("q.jpg", True)]
    other_form = xml.replace(b'id="photo_visit"', b'id="other"')
    refused = _xml_post(client, base, other_form.replace(b"rest-1", b"rest-3"), personas.coach.headers)
    assert (refused.status_code, refused.get_json()["details"]["problem"]) == (400, "invalid_form_id")
    as_json = client.post(base, json={"xml": "<data/>"}, headers=personas.coach.headers)
    assert as_json.status_code == 415
    session.commit()
    assert sorted(session.scalars(select(SubmissionVersion.instance_id))) == ["uuid:rest-1", "uuid:rest-2"]


def test_a7_rest_edit_must_replace_the_current_version(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    base = _setup(app, client, personas, 1)
    url = f"{base}/uuid:api-00"
    edit = photo_submission("uuid:api-00b", [], site="corrigé", deprecated_id="uuid:api-00")
    first = _xml_post(client, url, edit, personas.manager.headers, "PUT")
    assert first.status_code == 200, first.get_data(as_text=True)
    assert (first.get_json()["reviewState"], first.get_json()["currentInstanceId"]) == ("edited", "uuid:api-00b")
    assert _xml_post(client, url, edit, personas.manager.headers, "PUT").status_code == 200  # a retry
    stale = photo_submission("uuid:api-00c", [], site="autre", deprecated_id="uuid:api-00")
    refused = _xml_post(client, url, stale, personas.manager.headers, "PUT")
    assert (refused.status_code, refused.get_json()["details"]["problem"]) == (409, "stale_edit")
    no_deprecated = _xml_post(client, url, photo_submission("uuid:api-00d", []), personas.manager.headers, "PUT")
    assert no_deprecated.status_code == 400
    assert _xml_post(client, url, edit, personas.coach.headers, "PUT").status_code == 403
    versions = client.get(url + "/versions", headers=personas.analyst.headers)
    assert [(v["instanceId"], v["current"]) for v in versions.get_json()] == [
        ("uuid:api-00b", True),
        ("uuid:api-00", False),
    ]
    assert versions.headers["X-Total-Count"] == "2"
    xml = client.get(url + ".xml", headers=personas.analyst.headers)
    assert xml.mimetype == "application/xml" and xml.data == edit
    session.commit()
    assert session.scalar(select(func.count()).select_from(SubmissionVersion)) == 2


def test_a8_an_attachment_is_uploaded_once(app: Flask, client: FlaskClient, personas: Personas) -> None:
    base = _setup(app, client, personas, 0)
    _xml_post(client, base, photo_submission("uuid:att-1", ["p.jpg"]), personas.coach.headers)
    url = f"{base}/uuid:att-1/attachments"
    assert client.get(url, headers=personas.analyst.headers).get_json()[0]["exists"] is False

    def upload(name: str, data: bytes) -> Any:
        return client.post(f"{url}/{name}", data=data, content_type="image/jpeg", headers=personas.coach.headers)

    assert upload("p.jpg", b"PPP").get_json() == {"success": True}
    assert upload("p.jpg", b"PPP").status_code == 200
    assert upload("p.jpg", b"other").status_code == 409
    assert upload("q.jpg", b"PPP").status_code == 404
    assert client.get(url, headers=personas.analyst.headers).get_json()[0]["exists"] is True
    assert client.get(f"{url}/p.jpg", headers=personas.analyst.headers).data == b"PPP"


def test_a9_a_retried_comment_or_review_under_its_key_is_written_once(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    base = _setup(app, client, personas, 1)
    url = f"{base}/uuid:api-00"
    keyed = {**personas.manager.headers, "Idempotency-Key": "note-1"}
    first = client.post(url + "/comments", json={"body": "Photo floue"}, headers=keyed)
    again = client.post(url + "/comments", json={"body": "Photo floue"}, headers=keyed)
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()
    other_person = {**personas.admin.headers, "Idempotency-Key": "note-1"}  # a key is per person
    assert client.post(url + "/comments", json={"body": "Vu"}, headers=other_person).status_code == 200
    for _ in range(2):
        reviewed = client.patch(
            url, json={"reviewState": "approved"}, headers={**personas.manager.headers, "Idempotency-Key": "ok-1"}
        )
        assert reviewed.get_json()["reviewState"] == "approved"
    unkeyed = client.post(url + "/comments", json={"body": "Photo floue"}, headers=personas.manager.headers)
    assert unkeyed.status_code == 200
    comments = client.get(url + "/comments", headers=personas.analyst.headers).get_json()
    assert [c["body"] for c in comments] == ["Photo floue", "Vu", "Photo floue"]
    session.commit()
    actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "submission.review"))]
    assert len(actions) == 4  # two comments by the manager, one by the admin, one review
    too_long = {**personas.manager.headers, "Idempotency-Key": "k" * 201}
    assert client.post(url + "/comments", json={"body": "x"}, headers=too_long).status_code == 400
