"""When the database drops the server's connection: a clear 503, nothing stored, and the next request works.

Rules:
- U1 a submission whose database connection was lost is answered 503 (OpenRosa message,
  ``Retry-After``), not 500, and nothing of it is stored.
- U2 the lost connection is not lent again: the same submission sent again is stored (201), once.
- U4 on the plain-submission shortcut (one XML part), a lost connection is rolled back there and the full
  app, on a fresh connection, stores the submission once: the phone gets its 201 at the first try.
- U3 a connection lost after the answer was made (while the request's session closes) leaves the
  answer as it was, and the next request works.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from sqlalchemy import select, text

from tests.conftest import POSTGRES_URL, fresh_database_url, terminate_postgres_backend
from tests.server.test_submissions_support import photo_project_app, photo_submission, post_submission

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="a server-side connection drop needs PostgreSQL (SQLite has none)"
)


@dataclass(frozen=True)
class Served:
    """An app on a database of its own, with a project, a device key and the photo form."""

    app: Flask
    prefix: str  # the device's Collect server path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The app, its engine disposed and its database dropped afterwards."""
    from server.store import get_store

    url, cleanup = fresh_database_url("postgresql", tmp_path)
    try:
        app, project_id, token = photo_project_app(url, tmp_path, "outage-secret")
        try:
            yield Served(app, f"/v1/key/{token}/projects/{project_id}")
        finally:
            get_store(app).engine.dispose()
    finally:
        cleanup()


def _one_stored_then_its_connection_dropped(served: Served) -> tuple[Any, FlaskClient]:
    """Store ``uuid:before``, then terminate the connection the pool will lend next (LIFO: its newest)."""
    from server.store import get_store

    engine = get_store(served.app).engine
    client = served.app.test_client()
    assert post_submission(client, served.prefix, photo_submission("uuid:before", [])).status_code == 201
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    terminate_postgres_backend(pid)
    return engine, client


def test_a_lost_connection_is_503_and_the_retry_stores_once(served: Served) -> None:
    """U1, U2."""
    from server.db.models.submissions import Submission

    engine, client = _one_stored_then_its_connection_dropped(served)

    # A file part: the full app's own path (the plain-submission shortcut takes a lone XML part only).
    photo = {"p1.jpg": b"\xff\xd8 photo"}
    lost = post_submission(client, served.prefix, photo_submission("uuid:during", ["p1.jpg"]), photo)
    body = lost.get_data(as_text=True)
    assert lost.status_code == 503, body
    assert lost.headers["Retry-After"] == "5"
    assert "<OpenRosaResponse" in body and "try again" in body

    again = post_submission(client, served.prefix, photo_submission("uuid:during", ["p1.jpg"]), photo)
    assert again.status_code == 201, again.get_data(as_text=True)
    with engine.connect() as conn:
        stored = conn.execute(select(Submission.instance_id).order_by(Submission.instance_id)).scalars().all()
    assert stored == ["uuid:before", "uuid:during"]


def test_a_lost_connection_on_the_shortcut_is_stored_once_by_the_full_app(served: Served) -> None:
    """U4."""
    from server.db.models.submissions import Submission

    engine, client = _one_stored_then_its_connection_dropped(served)

    answer = post_submission(client, served.prefix, photo_submission("uuid:during", []))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    again = post_submission(client, served.prefix, photo_submission("uuid:during", []))
    assert again.status_code == 201, again.get_data(as_text=True)
    with engine.connect() as conn:
        stored = conn.execute(select(Submission.instance_id).order_by(Submission.instance_id)).scalars().all()
    assert stored == ["uuid:before", "uuid:during"]


def test_a_connection_lost_at_the_end_of_a_request_keeps_its_answer(served: Served) -> None:
    """U3: the backend is terminated after the response is made, before the session closes."""
    from server.store import db_session

    terminated: list[int] = []

    def drop_connection(response: Response) -> Response:
        if not terminated:
            terminated.append(db_session().execute(text("SELECT pg_backend_pid()")).scalar_one())
            terminate_postgres_backend(terminated[0])
        return response

    served.app.after_request(drop_connection)
    client = served.app.test_client()
    form_url = f"{served.prefix}/forms/photo_visit.xml"
    first = client.get(form_url)
    assert first.status_code == 200 and b"photo_visit" in first.data
    assert terminated
    assert client.get(form_url).status_code == 200
