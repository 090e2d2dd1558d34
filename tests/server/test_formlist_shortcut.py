"""The formList shortcut: a device's unchanged formList answered from the cache before Flask runs.

Rules:
- FL-FAST-SAME the shortcut answers what the full app answers: the same status, body and headers
  (``Date`` aside), for 200 and 304, with and without ``formID`` and ``deviceID``; the view does not run.
- FL-FAST-STAMP a change made elsewhere (plain SQL, as another process or host would) is in the very
  next answer: the shortcut checks the stamp in the database on every request.
- FL-FAST-TOKEN the token is checked on every request: revoked, expired, another project's key or a
  person's key never gets a cached answer; each gets the full app's answer.
- FL-FAST-LAST-USED a token whose ``last_used_at`` is stale is answered by the full app, which writes it.
- FL-FAST-METRICS a shortcut answer is counted under the formList URL rule and its status.
- FL-FAST-LOG with the request log on, a shortcut answer logs the full app's line (token redacted).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text, update
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from server.db.base import utcnow
from server.db.models import AccessToken
from server.openrosa import formlist
from tests.conftest import Personas
from tests.server.fixtures_forms import COOP_XLSX, ENTREPRENEUR_XLSX, publish_form
from tests.server.test_metrics import _scrape, _value

VIEW = "openrosa.form_list_key"


def count_view_calls(app: Flask, monkeypatch: pytest.MonkeyPatch, endpoint: str) -> list[int]:
    """Count the runs of the view of ``endpoint`` (the full app's answers): one item per run."""
    calls: list[int] = []
    real = app.view_functions[endpoint]

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setitem(app.view_functions, endpoint, counting)
    return calls


@pytest.fixture
def view_calls(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the runs of the formList view (the full app's answers)."""
    return count_view_calls(app, monkeypatch, VIEW)


@pytest.fixture
def published(app: Flask, personas: Personas) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)


def headers_but_date(response: TestResponse) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.items() if k != "Date")


@pytest.mark.parametrize(
    "query",
    ["", "?formID=coop_diagnostic", "?deviceID=collect%3Aabc123", "?formID=nope&deviceID=x"],
    ids=["all", "one-form", "device-id", "unknown-form"],
)
@pytest.mark.usefixtures("published")
def test_fl_fast_same_as_the_full_app(
    client: FlaskClient, personas: Personas, view_calls: list[int], query: str
) -> None:
    url = f"{personas.collect_prefix}/formList{query}"
    full = client.get(url)
    assert full.status_code == 200 and len(view_calls) == 1
    fast = client.get(url)
    assert len(view_calls) == 1  # answered before Flask
    assert (fast.status_code, fast.data, headers_but_date(fast)) == (200, full.data, headers_but_date(full))
    assert fast.headers["Date"]
    etag = full.headers["ETag"]
    fast_304 = client.get(url, headers={"If-None-Match": etag})
    assert len(view_calls) == 1
    formlist.shortcut_of(client.application).enabled = False
    try:
        full_304 = client.get(url, headers={"If-None-Match": etag})
    finally:
        formlist.shortcut_of(client.application).enabled = True
    assert len(view_calls) == 2
    assert (fast_304.status_code, fast_304.data, headers_but_date(fast_304)) == (304, b"", headers_but_date(full_304))
    assert full_304.status_code == 304


@pytest.mark.usefixtures("published")
def test_fl_fast_sees_a_change_made_elsewhere(
    client: FlaskClient, personas: Personas, session: Session, view_calls: list[int]
) -> None:
    url = f"{personas.collect_prefix}/formList"
    for _ in range(3):
        assert b"coop_diagnostic" in client.get(url).data
    assert len(view_calls) == 1
    # As another process or host would: plain SQL, no service, no message to this process.
    session.execute(text("UPDATE forms SET state = 'closed' WHERE xml_form_id = 'coop_diagnostic'"))
    session.flush()
    changed = client.get(url)
    assert changed.status_code == 200 and b"coop_diagnostic" not in changed.data
    assert b"entrepreneur_followup" in changed.data
    assert len(view_calls) == 2
    assert client.get(url).data == changed.data and len(view_calls) == 2


def _revoke(session: Session, token_id: int) -> None:
    session.execute(update(AccessToken).where(AccessToken.id == token_id).values(revoked_at=utcnow()))
    session.flush()


def _expire(session: Session, token_id: int) -> None:
    past = utcnow() - timedelta(minutes=1)
    session.execute(update(AccessToken).where(AccessToken.id == token_id).values(expires_at=past))
    session.flush()


@pytest.mark.parametrize("change", [_revoke, _expire], ids=["revoked", "expired"])
@pytest.mark.usefixtures("published")
def test_fl_fast_checks_the_token_on_every_request(
    client: FlaskClient, personas: Personas, session: Session, change: Callable[[Session, int], None]
) -> None:
    url = f"{personas.collect_prefix}/formList"
    assert client.get(url).status_code == 200
    assert client.get(url).status_code == 200  # cached now
    change(session, personas.device.id)
    refused = client.get(url)
    assert refused.status_code == 403
    assert b"token_revoked" in refused.data or b"revoked" in refused.data


@pytest.mark.usefixtures("published")
def test_fl_fast_never_answers_for_another_project_or_a_person(
    client: FlaskClient, personas: Personas, view_calls: list[int]
) -> None:
    assert client.get(f"{personas.collect_prefix}/formList").status_code == 200
    other = f"/v1/key/{personas.device.token}/projects/{personas.other_project_id}/formList"
    assert client.get(other).status_code == 403
    assert client.get(other).status_code == 403
    person = f"/v1/key/{personas.coach.token}/projects/{personas.project_id}/formList"
    first = client.get(person)
    assert first.status_code == 200
    assert client.get(person).data == first.data
    assert client.get("/v1/key/not-a-key/projects/1/formList").status_code == 401
    assert len(view_calls) == 6  # the device's first answer, then every one of the others


@pytest.mark.usefixtures("published")
def test_fl_fast_leaves_a_stale_last_used_to_the_full_app(
    client: FlaskClient, personas: Personas, session: Session, view_calls: list[int]
) -> None:
    url = f"{personas.collect_prefix}/formList"
    client.get(url)
    client.get(url)
    assert len(view_calls) == 1
    stale = utcnow() - timedelta(minutes=5)
    session.execute(update(AccessToken).where(AccessToken.id == personas.device.id).values(last_used_at=stale))
    session.commit()
    assert client.get(url).status_code == 200
    assert len(view_calls) == 2
    session.expire_all()
    token = session.get(AccessToken, personas.device.id)
    assert token is not None and token.last_used_at is not None
    assert token.last_used_at > stale + timedelta(minutes=4)


@pytest.mark.usefixtures("published")
def test_fl_fast_answers_are_counted(client: FlaskClient, personas: Personas, view_calls: list[int]) -> None:
    url = f"{personas.collect_prefix}/formList"
    etag = client.get(url).headers["ETag"]
    before = _scrape(client, personas)
    client.get(url)
    client.get(url, headers={"If-None-Match": etag})
    after = _scrape(client, personas)
    assert len(view_calls) == 1
    rule = "/v1/key/<token>/projects/<int:project_id>/formList"
    count = "fieldsync_http_request_duration_seconds_count"
    for status in ("200", "304"):
        assert _value(after, count, route=rule, status=status) - _value(before, count, route=rule, status=status) == 1


@pytest.mark.usefixtures("published")
def test_fl_fast_answers_are_logged(
    app: Flask, client: FlaskClient, personas: Personas, caplog: pytest.LogCaptureFixture, view_calls: list[int]
) -> None:
    shortcut = formlist.shortcut_of(app)
    url = f"{personas.collect_prefix}/formList?deviceID=collect%3Aabc"
    client.get(url)
    shortcut.log_requests = True
    try:
        with caplog.at_level(logging.INFO, logger="fieldsync.request"):
            assert client.get(url).status_code == 200
    finally:
        shortcut.log_requests = False
    assert len(view_calls) == 1
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fieldsync.request"]
    assert len(lines) == 1
    line = lines[0]
    assert personas.device.token not in json.dumps(line)
    assert line["path"] == f"/v1/key/***/projects/{personas.project_id}/formList"
    assert (line["method"], line["status"], line["actor"]) == ("GET", 200, f"device:{personas.device.id}")
    assert (line["device_id"], line["bytes_in"]) == ("collect:abc", None)
    assert isinstance(line["ms"], float)
