"""The submission shortcut: a device's plain OpenRosa POST stored and answered before Flask runs.

Rules:
- SUB-FAST-SAME the shortcut answers what the full app answers: the same status, body and headers
  (``Date`` aside), complete or awaiting files, in English and French; the view does not run.
- SUB-FAST-STORED what it stores is what the full app stores (submission, version, audit event,
  outbox row), edits and identical resends included; a resend stores nothing.
- SUB-FAST-HANDOFF anything else is the full app's to answer, with the full app's answer: a file
  part, an unknown, revoked or other project's key, a person's key, credentials, a NUL in the query,
  a body that is not multipart, an id conflict (refused payload kept once), an unknown or closed form.
- SUB-FAST-LAST-USED a stale ``last_used_at`` is written after a stored submission (as the full app
  does), never after a refusal.
- SUB-FAST-METRICS a shortcut answer is counted under the submission URL rule and its status, and
  in the submissions counter.
- SUB-FAST-LOG with the request log on, a shortcut answer logs the full app's line (token redacted).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import AccessToken
from server.db.models.audit import AuditEvent
from server.db.models.submissions import RefusedSubmission, Submission, SubmissionVersion
from server.openrosa import submission_shortcut
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_formlist_shortcut import count_view_calls, headers_but_date
from tests.server.test_metrics import _scrape, _value
from tests.server.test_submissions_support import COLLECT_HEADERS, PHOTO_XFORM, photo_submission, post_submission

VIEW = "openrosa.submission"
RULE = "/v1/key/<token>/projects/<int:project_id>/submission"


@pytest.fixture
def view_calls(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the runs of the submission view (the full app's answers)."""
    return count_view_calls(app, monkeypatch, VIEW)


@pytest.fixture
def photo_form(app: Flask, personas: Personas, client: FlaskClient) -> None:
    """The photo-visit form published; the device key used once (its ``last_used_at`` is recent)."""
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    assert client.get(f"{personas.collect_prefix}/formList").status_code == 200


@pytest.fixture
def full_app(app: Flask) -> Iterator[Any]:
    """Switch the shortcut off inside a ``with full_app():`` block."""
    shortcut = submission_shortcut.shortcut_of(app)

    class _Off:
        def __enter__(self) -> None:
            shortcut.enabled = False

        def __exit__(self, *_exc: object) -> None:
            shortcut.enabled = True

    yield _Off
    shortcut.enabled = True


def _uid() -> str:
    return f"uuid:{uuid.uuid4()}"


def _fresh(session: Session) -> Session:
    # End the test session's read (RELEASE) so the next read sees what the app committed.
    session.commit()
    return session


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("photos", [[], ["a.jpg", "b.jpg"]], ids=["complete", "awaiting-files"])
@pytest.mark.usefixtures("photo_form")
def test_sub_fast_same_as_the_full_app(
    client: FlaskClient, personas: Personas, view_calls: list[int], full_app: Any, language: str, photos: list[str]
) -> None:
    headers = {"Accept-Language": language}
    with full_app():
        full = post_submission(client, personas.collect_prefix, photo_submission(_uid(), photos), headers=headers)
    assert full.status_code == 201 and len(view_calls) == 1
    fast = post_submission(client, personas.collect_prefix, photo_submission(_uid(), photos), headers=headers)
    assert len(view_calls) == 1  # answered before Flask
    assert (fast.status_code, fast.data, headers_but_date(fast)) == (201, full.data, headers_but_date(full))
    assert fast.headers["Date"]
    if language == "fr":
        assert "Formulaire reçu" in fast.get_data(as_text=True) or "bien été envoyé" in fast.get_data(as_text=True)


def _stored(session: Session, instance_id: str) -> tuple[Any, ...]:
    """What the store holds of one instance, without its ids and times."""
    version = session.scalars(select(SubmissionVersion).where(SubmissionVersion.instance_id == instance_id)).one()
    chain = session.get(Submission, version.submission_id)
    assert chain is not None
    audit = session.scalars(select(AuditEvent.action).where(AuditEvent.subject == f"submission:{chain.id}")).all()
    return (
        version.source,
        version.device_id,
        version.user_agent,
        version.device_token_id,
        version.submitter_id,
        version.form_version,
        {k: v for k, v in version.record.items() if k != "meta"},  # meta holds the instance ids
        version.deprecated_id is not None,
        chain.review_state,
        chain.edits,
        chain.current_instance_id == instance_id,
        (chain.attachments_expected, chain.attachments_present),
        sorted(audit),
    )


@pytest.mark.usefixtures("photo_form")
def test_sub_fast_stores_what_the_full_app_stores(
    client: FlaskClient, personas: Personas, session: Session, view_calls: list[int], full_app: Any
) -> None:
    # A new chain, then an edit of it, then an identical resend of the edit: once each way.
    ways: list[list[Any]] = []
    for fast in (False, True):
        first, edit = _uid(), _uid()
        answers = []
        with full_app() if not fast else _nothing():
            for xml in (
                photo_submission(first, ["a.jpg"]),
                photo_submission(edit, ["a.jpg"], site="Tiznit", deprecated_id=first),
                photo_submission(edit, ["a.jpg"], site="Tiznit", deprecated_id=first),
            ):
                answers.append(post_submission(client, personas.collect_prefix, xml).status_code)
        _fresh(session)
        ways.append([answers, _stored(session, first), _stored(session, edit)])
    assert len(view_calls) == 3  # only the full app's round
    assert ways[0] == ways[1]
    assert ways[1][0] == [201, 201, 201]
    assert _fresh(session).scalar(select(func.count()).select_from(SubmissionVersion)) == 4


class _nothing:  # a context manager used like full_app's
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def _revoke(session: Session, personas: Personas) -> None:
    session.execute(update(AccessToken).where(AccessToken.id == personas.device.id).values(revoked_at=utcnow()))
    session.commit()


def _close_form(session: Session, _personas: Personas) -> None:
    session.execute(text("UPDATE forms SET state = 'closed' WHERE xml_form_id = 'photo_visit'"))
    session.commit()


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("file", 201),
        ("unknown_key", 401),
        ("revoked", 403),
        ("other_project", 403),
        ("person", 201),
        ("credentials", 201),
        ("nul", 400),
        ("not_multipart", 400),
        ("id_conflict", 409),
        ("unknown_form", 404),
        ("closed_form", 403),
    ],
)
@pytest.mark.usefixtures("photo_form")
def test_sub_fast_hands_everything_else_to_the_full_app(
    client: FlaskClient, personas: Personas, session: Session, view_calls: list[int], case: str, status: int
) -> None:
    prefix, instance = personas.collect_prefix, _uid()
    xml = photo_submission(instance, ["a.jpg"])
    files: dict[str, bytes] = {}
    headers: dict[str, str] = {}
    query = "?deviceID=collect%3Atest123"
    if case == "file":
        files = {"a.jpg": b"jpeg"}
    elif case == "unknown_key":
        prefix = f"/v1/key/not-a-key/projects/{personas.project_id}"
    elif case == "revoked":
        _revoke(session, personas)
    elif case == "other_project":
        prefix = f"/v1/key/{personas.device.token}/projects/{personas.other_project_id}"
    elif case == "person":
        prefix = f"/v1/key/{personas.coach.token}/projects/{personas.project_id}"
    elif case == "credentials":
        headers = dict(personas.admin.headers)
    elif case == "nul":
        query = "?deviceID=collect%00x"
    elif case == "id_conflict":
        assert post_submission(client, prefix, xml).status_code == 201
        xml = photo_submission(instance, ["a.jpg"], site="Elsewhere")
    elif case == "unknown_form":
        xml = xml.replace(b'id="photo_visit"', b'id="no_such_form"')
    elif case == "closed_form":
        _close_form(session, personas)
    calls = len(view_calls)
    if case == "not_multipart":
        url = f"{prefix}/submission{query}"
        response = client.post(url, data=xml, content_type="text/xml", headers=COLLECT_HEADERS)
    else:
        response = post_submission(client, prefix, xml, files, headers=headers, query=query)
    assert response.status_code == status, response.get_data(as_text=True)
    if case == "nul":
        assert b"NUL character" in response.data  # the full app's hook, before its view
    else:
        assert len(view_calls) == calls + 1  # the full app answered
    if case == "id_conflict":
        assert post_submission(client, prefix, xml).status_code == 409
        refused = _fresh(session).scalar(select(func.count()).select_from(RefusedSubmission))
        assert refused == 1  # kept once, whoever decided first


@pytest.mark.usefixtures("photo_form")
def test_sub_fast_writes_a_stale_last_used(
    client: FlaskClient, personas: Personas, session: Session, view_calls: list[int]
) -> None:
    stale = utcnow() - timedelta(minutes=5)
    session.execute(update(AccessToken).where(AccessToken.id == personas.device.id).values(last_used_at=stale))
    session.commit()
    assert post_submission(client, personas.collect_prefix, photo_submission(_uid(), [])).status_code == 201
    assert len(view_calls) == 0
    session.expire_all()
    token = session.get(AccessToken, personas.device.id)
    assert token is not None and token.last_used_at is not None
    assert token.last_used_at > stale + timedelta(minutes=4)
    # A refusal writes nothing: the full app answers it and leaves the key as it was.
    session.execute(update(AccessToken).where(AccessToken.id == personas.device.id).values(last_used_at=stale))
    session.commit()
    unknown = photo_submission(_uid(), []).replace(b'id="photo_visit"', b'id="no_such_form"')
    assert post_submission(client, personas.collect_prefix, unknown).status_code == 404
    assert len(view_calls) == 1
    session.expire_all()
    token = session.get(AccessToken, personas.device.id)
    assert token is not None and token.last_used_at == stale


@pytest.mark.usefixtures("photo_form")
def test_sub_fast_answers_are_counted(client: FlaskClient, personas: Personas, view_calls: list[int]) -> None:
    before = _scrape(client, personas)
    instance = _uid()
    for xml in (photo_submission(instance, []), photo_submission(instance, []), photo_submission(_uid(), ["a.jpg"])):
        assert post_submission(client, personas.collect_prefix, xml).status_code == 201
    after = _scrape(client, personas)
    assert len(view_calls) == 0
    count = "fieldsync_http_request_duration_seconds_count"
    assert _value(after, count, route=RULE, status="201") - _value(before, count, route=RULE, status="201") == 3
    submissions = "fieldsync_submissions_total"
    for outcome, added in (("created", 1), ("duplicate", 1), ("awaiting_attachments", 1)):
        delta = _value(after, submissions, source="openrosa", outcome=outcome) - _value(
            before, submissions, source="openrosa", outcome=outcome
        )
        assert delta == added, outcome


@pytest.mark.usefixtures("photo_form")
def test_sub_fast_answers_are_logged(
    app: Flask, client: FlaskClient, personas: Personas, caplog: pytest.LogCaptureFixture, view_calls: list[int]
) -> None:
    shortcut = submission_shortcut.shortcut_of(app)
    shortcut.log_requests = True
    try:
        with caplog.at_level(logging.INFO, logger="fieldsync.request"):
            response = post_submission(client, personas.collect_prefix, photo_submission(_uid(), []))
            assert response.status_code == 201
    finally:
        shortcut.log_requests = False
    assert len(view_calls) == 0
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fieldsync.request"]
    assert len(lines) == 1
    line = lines[0]
    assert personas.device.token not in json.dumps(line)
    assert line["path"] == f"/v1/key/***/projects/{personas.project_id}/submission"
    assert (line["method"], line["status"], line["actor"]) == ("POST", 201, f"device:{personas.device.id}")
    assert (line["device_id"], line["bytes_in"]) == ("collect:test123", response.request.content_length)
    assert isinstance(line["ms"], float)
