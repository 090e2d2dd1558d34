"""Concurrent uploads of one form version: uniqueness is the database's job, not a check in Python.

Rules:
- RACE-1 the same file uploaded by several requests at once → exactly one ``201``, the others ``200``,
  one form and one version row.
- RACE-2 different content under one version string, published at once → one ``201``, the others
  ``409 version_reused``.
- RACE-3 spreadsheets of one form without a version, uploaded at once: the same file → one generated
  version, one ``201`` and the others ``200``; different files → each its own version, all ``201``
  (the form's row is locked while a version is chosen, so two never pick the same one).
Runs against a fresh, committed database (threads need real commits), on each store.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import Backend
from tests.server.fixtures_forms import committed_forms_app, count_rows, media_form, xlsform

WORKERS = 4


@pytest.fixture
def committed_app(backend: Backend, tmp_path: Path) -> Iterator[tuple[Flask, dict[str, str], int]]:
    with committed_forms_app(backend.name, tmp_path, {"FORM_CONVERT_INLINE": True}) as made:
        yield made


def _upload_all(app: Flask, headers: dict[str, str], project_id: int, bodies: list[bytes]) -> list[int]:
    """Upload every body at once (as m.xlsx, published); return the statuses, sorted."""

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

    return count_rows(app, FormVersion)


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


NO_VERSION = """
| survey |
|        | type | name | label |
|        | text | nom  | {label} |
"""


def test_race_3_same_file_without_version(committed_app: tuple[Flask, dict[str, str], int]) -> None:
    app, headers, project_id = committed_app
    # The form exists first: inserting it is not what makes the uploads wait for each other.
    assert _upload_all(app, headers, project_id, [xlsform(NO_VERSION.format(label="Nom"))]) == [201]
    statuses = _upload_all(app, headers, project_id, [xlsform(NO_VERSION.format(label="Prénom"))] * WORKERS)
    assert statuses == [200] * (WORKERS - 1) + [201]
    assert _versions(app) == 2


def test_race_3_other_files_without_version(committed_app: tuple[Flask, dict[str, str], int]) -> None:
    app, headers, project_id = committed_app
    assert _upload_all(app, headers, project_id, [xlsform(NO_VERSION.format(label="Nom"))]) == [201]
    bodies = [xlsform(NO_VERSION.format(label=f"Nom {n}")) for n in range(WORKERS)]
    assert _upload_all(app, headers, project_id, bodies) == [201] * WORKERS
    assert _versions(app) == WORKERS + 1
