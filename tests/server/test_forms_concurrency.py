"""Concurrent uploads of one form version: uniqueness is the database's job, not a check in Python.

Rules:
- RACE-1 the same file uploaded by several requests at once → exactly one ``201``, the others ``200``,
  one form and one version row.
- RACE-2 different content under one version string, published at once → one ``201``, the others
  ``409 version_reused``.
Runs against a fresh, committed database (threads need real commits), on each store.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.conftest import Backend, fresh_database_url
from tests.server.fixtures_forms import media_form

WORKERS = 4


@pytest.fixture
def committed_app(backend: Backend, tmp_path: Path) -> Iterator[tuple[Flask, dict[str, str], int]]:
    from server import create_app
    from server.services import accounts as svc
    from server.store import get_store

    url, cleanup = fresh_database_url(backend.name, tmp_path)
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "VAR_DIR": str(tmp_path / "var"),
            "STORAGE_DIR": str(tmp_path / "storage"),
            "SECRET_KEY": "test-secret",
            "LOG_REQUESTS": False,
            "FORM_CONVERT_INLINE": True,
        }
    )
    with app.app_context():
        session = get_store().sessions()
        project = svc.create_project(session, "Concurrence")
        user = svc.create_user(session, "racer", "long enough password", is_admin=True)
        from server.db.models import User

        db_user = session.get(User, user.id)
        assert db_user is not None
        token = svc.create_session_token(session, db_user).token
        session.close()
    try:
        yield app, {"Authorization": f"Bearer {token}"}, project.id
    finally:
        get_store(app).engine.dispose()
        cleanup()


def _upload_all(app: Flask, headers: dict[str, str], project_id: int, bodies: list[bytes]) -> list[int]:
    def upload(body: bytes) -> int:
        client = app.test_client()
        response = client.post(
            f"/v1/projects/{project_id}/forms?publish=true",
            data={"file": (io.BytesIO(body), "m.xlsx")},
            headers=headers,
            content_type="multipart/form-data",
        )
        return response.status_code

    with ThreadPoolExecutor(WORKERS) as pool:
        return sorted(pool.map(upload, bodies))


def _versions(app: Flask) -> int:
    from server.db.models.forms import FormVersion
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        try:
            return session.scalar(select(func.count()).select_from(FormVersion)) or 0
        finally:
            session.close()


def test_race_1_same_file(committed_app: tuple[Flask, dict[str, str], int]) -> None:
    app, headers, project_id = committed_app
    statuses = _upload_all(app, headers, project_id, [media_form()] * WORKERS)
    assert statuses == [200] * (WORKERS - 1) + [201]
    assert _versions(app) == 1


def test_race_2_same_version_other_content(committed_app: tuple[Flask, dict[str, str], int]) -> None:
    app, headers, project_id = committed_app
    bodies = [media_form("1", f"Titre {i}") for i in range(WORKERS)]
    statuses = _upload_all(app, headers, project_id, bodies)
    assert statuses == [201] + [409] * (WORKERS - 1)
    assert _versions(app) == 1
