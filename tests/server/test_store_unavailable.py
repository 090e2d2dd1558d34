"""When the database drops the server's connection: a clear 503, nothing stored, and the next request works.

Rules:
- U1 a submission whose database connection was lost is answered 503 (OpenRosa message,
  ``Retry-After``), not 500, and nothing of it is stored.
- U2 the lost connection is not lent again: the same submission sent again is stored (201), once.
- U3 a connection lost after the answer was made (while the request's session closes) leaves the
  answer as it was, and the next request works.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text

from tests.conftest import POSTGRES_URL, fresh_database_url
from tests.server.test_submissions_support import photo_project_app, photo_submission, post_submission


def _driver_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.mark.skipif(not POSTGRES_URL, reason="a server-side connection drop needs PostgreSQL (SQLite has none)")
def test_a_lost_connection_is_503_and_the_retry_stores_once(tmp_path: Path) -> None:
    """U1, U2."""
    from server.db.models.submissions import Submission
    from server.store import get_store

    assert POSTGRES_URL
    url, cleanup = fresh_database_url("postgresql", tmp_path)
    app = None
    try:
        app, project_id, token = photo_project_app(url, tmp_path, "outage-secret")
        engine = get_store(app).engine
        client = app.test_client()
        prefix = f"/v1/key/{token}/projects/{project_id}"
        assert post_submission(client, prefix, photo_submission("uuid:before", [])).status_code == 201
        # The pool lends its most recent connection first (LIFO): the next request gets this one.
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(_driver_url(POSTGRES_URL), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        lost = post_submission(client, prefix, photo_submission("uuid:during", []))
        body = lost.get_data(as_text=True)
        assert lost.status_code == 503, body
        assert lost.headers["Retry-After"] == "5"
        assert "<OpenRosaResponse" in body and "try again" in body

        again = post_submission(client, prefix, photo_submission("uuid:during", []))
        assert again.status_code == 201, again.get_data(as_text=True)
        with engine.connect() as conn:
            stored = conn.execute(select(Submission.instance_id).order_by(Submission.instance_id)).scalars().all()
            assert stored == ["uuid:before", "uuid:during"]
    finally:
        if app is not None:
            get_store(app).engine.dispose()
        cleanup()


@pytest.mark.skipif(not POSTGRES_URL, reason="a server-side connection drop needs PostgreSQL (SQLite has none)")
def test_a_connection_lost_at_the_end_of_a_request_keeps_its_answer(tmp_path: Path) -> None:
    """U3: the backend is terminated after the response is made, before the session closes."""
    from flask import Response

    from server.store import db_session, get_store

    assert POSTGRES_URL
    url, cleanup = fresh_database_url("postgresql", tmp_path)
    app = None
    try:
        app, project_id, token = photo_project_app(url, tmp_path, "outage-secret")
        form_url = f"/v1/key/{token}/projects/{project_id}/forms/photo_visit.xml"
        terminated: list[int] = []

        def drop_connection(response: Response) -> Response:
            if not terminated:
                pid = db_session().execute(text("SELECT pg_backend_pid()")).scalar_one()
                with psycopg.connect(_driver_url(POSTGRES_URL or ""), autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                terminated.append(pid)
            return response

        app.after_request(drop_connection)
        client = app.test_client()
        first = client.get(form_url)
        assert first.status_code == 200 and b"photo_visit" in first.data
        assert terminated
        assert client.get(form_url).status_code == 200
    finally:
        if app is not None:
            get_store(app).engine.dispose()
        cleanup()
