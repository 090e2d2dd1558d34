"""Uploads that outlast ``FORM_CONVERT_WAIT``: ``202 Accepted`` and a conversion job to poll.

Rules:
- JOB-1 past the wait the upload answers 202 with the job in the body and its URL in ``Location``;
  polling it shows ``queued``/``running`` then ``done`` with the version exactly as the synchronous
  upload answers it, and the form is stored (published with ``?publish=true``).
- JOB-2 a form pyxform refuses ends ``failed`` with the 400 the synchronous upload gives (pyxform's
  reason in ``details``), and nothing is stored.
- JOB-3 a conversion past ``FORM_CONVERT_TIMEOUT`` is killed and the job ends ``failed`` with
  ``conversion_timeout`` naming the limit.
- JOB-4 a conversion done within the wait answers 201 as always, and leaves no job.
- JOB-5 a job lost with its process (never claimed, or running past its limit plus a grace) is failed
  by the poll that finds it; states move by compare-and-set only (one claim, one finish); a job of
  another project is 404.
Jobs run in threads that commit, so JOB-1..4 use a fresh committed store; real child processes convert.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import Backend, Personas
from tests.server.fixtures_forms import committed_forms_app, count_rows, media_form, xlsform

BROKEN = """
| survey |
|        | type       | name | label |
|        | select_one | q1   | Q1    |
"""


@pytest.fixture
def jobs_app(backend: Backend, tmp_path: Path) -> Iterator[tuple[Flask, dict[str, str], int]]:
    config = {"FORM_CONVERT_INLINE": False, "FORM_CONVERT_WAIT": 0.0}
    with committed_forms_app(backend.name, tmp_path, config) as made:
        yield made


def _upload(app: Flask, headers: dict[str, str], project_id: int, data: bytes, query: str = "") -> Any:
    return app.test_client().post(
        f"/v1/projects/{project_id}/forms{query}",
        data={"file": (io.BytesIO(data), "m.xlsx")},
        headers=headers,
        content_type="multipart/form-data",
    )


def _poll(client: FlaskClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll until the job is done or failed (bounded: a stuck job fails the test, it never hangs)."""
    seen = []
    for _ in range(1200):
        body: dict[str, Any] = client.get(url, headers=headers).json
        seen.append(body["state"])
        if body["state"] in ("done", "failed"):
            body["seen"] = seen
            return body
        time.sleep(0.05)
    raise AssertionError(f"the job never finished: {seen[-5:]}")


def test_job_1_accepted_then_done(jobs_app: tuple[Flask, dict[str, str], int]) -> None:
    app, headers, project_id = jobs_app
    accepted = _upload(app, headers, project_id, media_form(), "?publish=true")
    assert accepted.status_code == 202, accepted.json
    url = accepted.headers["Location"]
    assert url == accepted.json["url"] == f"/v1/projects/{project_id}/form-conversions/{accepted.json['id']}"
    assert accepted.json["state"] == "queued"
    assert accepted.json["result"] is None
    client = app.test_client()
    done = _poll(client, url, headers)
    assert done["state"] == "done", done
    assert set(done["seen"]) <= {"queued", "running", "done"}
    assert done["error"] is None and done["startedAt"] and done["finishedAt"]
    assert done["elapsedSeconds"] >= 0
    result = done["result"]
    assert (result["xmlFormId"], result["version"], result["status"], result["created"]) == (
        "media_test",
        "1",
        "published",
        True,
    )
    assert result["missingAttachments"] == ["logo.png", "villages.csv"]
    detail = client.get(f"/v1/projects/{project_id}/forms/media_test", headers=headers).json
    assert detail["currentVersion"] == "1"
    assert result["id"] == detail["id"]
    again = client.get(url, headers=headers).json
    assert again["finishedAt"] == done["finishedAt"]


def test_job_2_refused_form_fails_with_pyxform_reason(jobs_app: tuple[Flask, dict[str, str], int]) -> None:
    from server.db.models.forms import Form, FormVersion

    app, headers, project_id = jobs_app
    accepted = _upload(app, headers, project_id, xlsform(BROKEN))
    assert accepted.status_code == 202
    failed = _poll(app.test_client(), accepted.headers["Location"], headers)
    assert failed["state"] == "failed"
    assert failed["result"] is None
    error = failed["error"]
    assert (error["status"], error["details"]["problem"]) == (400, "xlsform_invalid")
    assert error["details"]["reason"] == error["message"]
    assert (count_rows(app, Form), count_rows(app, FormVersion)) == (0, 0)


def test_job_3_timeout_fails_the_job(jobs_app: tuple[Flask, dict[str, str], int]) -> None:
    app, headers, project_id = jobs_app
    app.config["FORM_CONVERT_TIMEOUT"] = 0.001
    accepted = _upload(app, headers, project_id, media_form())
    failed = _poll(app.test_client(), accepted.headers["Location"], headers)
    assert failed["state"] == "failed"
    assert (failed["error"]["status"], failed["error"]["details"]["problem"]) == (422, "conversion_timeout")
    assert "0.001 s" in failed["error"]["message"]
    assert failed["error"]["details"]["limitSeconds"] == 0.001


def test_job_4_fast_conversion_answers_inline(jobs_app: tuple[Flask, dict[str, str], int]) -> None:
    from server.db.models.forms import FormConversionJob

    app, headers, project_id = jobs_app
    app.config["FORM_CONVERT_WAIT"] = 60.0
    created = _upload(app, headers, project_id, media_form())
    assert created.status_code == 201, created.json
    assert created.json["xmlFormId"] == "media_test"
    assert count_rows(app, FormConversionJob) == 0


def _job(session: Session, project_id: int, **values: Any) -> int:
    from server.db.base import utcnow
    from server.db.models.forms import FormConversionJob

    values.setdefault("created_at", utcnow())
    values.setdefault("timeout_seconds", 60.0)
    job = FormConversionJob(project_id=project_id, filename="m.xlsx", publish=False, created_by="test", **values)
    session.add(job)
    session.commit()
    return job.id


def test_job_5_lost_jobs_and_compare_and_set(client: FlaskClient, personas: Personas, session: Session) -> None:
    from server.db.base import utcnow
    from server.db.queries import forms as q

    long_ago = utcnow() - timedelta(hours=1)
    never_claimed = _job(session, personas.project_id, state="queued", created_at=long_ago)
    stuck = _job(session, personas.project_id, state="running", claimed_by="gone:1", started_at=long_ago)
    fresh = _job(session, personas.project_id, state="running", claimed_by="alive:2", started_at=utcnow())
    base = f"/v1/projects/{personas.project_id}/form-conversions"
    for job_id in (never_claimed, stuck):
        body = client.get(f"{base}/{job_id}", headers=personas.manager.headers).json
        assert (body["state"], body["error"]["details"]["problem"]) == ("failed", "conversion_lost"), body
        assert "Upload the form again" in body["error"]["message"]
    assert client.get(f"{base}/{fresh}", headers=personas.manager.headers).json["state"] == "running"
    other = f"/v1/projects/{personas.other_project_id}/form-conversions/{fresh}"
    assert client.get(other, headers=personas.admin.headers).status_code == 404

    queued = _job(session, personas.project_id, state="queued")
    assert q.claim_job(session, queued, "a:1", utcnow()) is True
    assert q.claim_job(session, queued, "b:2", utcnow()) is False
    assert q.finish_job(session, queued, "b:2", utcnow(), result={}) is False
    assert q.finish_job(session, queued, "a:1", utcnow(), result={}) is True
    assert q.finish_job(session, queued, "a:1", utcnow(), error={"code": "x"}) is False
