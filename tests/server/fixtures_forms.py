"""Fixtures for tests that need published forms: ``publish_form`` and ``published_coop``.

Use from another test module with ``from tests.server.fixtures_forms import published_coop, publish_form``
(importing the fixture name makes pytest find it). Conversions run inline (no child process) and
are cached per test session by file content, so publishing the same example again is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from tests.conftest import REPO, Personas, fresh_database_url

EXAMPLES = REPO / "examples" / "forms"
COOP_XLSX = EXAMPLES / "coop_diagnostic.xlsx"
ENTREPRENEUR_XLSX = EXAMPLES / "entrepreneur_followup.xlsx"


@dataclass(frozen=True)
class PublishedForm:
    """A form published for a test: its database id, XForm id and version."""

    form_db_id: int
    xml_form_id: str
    version: str


@lru_cache(maxsize=256)
def _cached_conversion(data: bytes, filename: str) -> Any:
    from forms.convert import convert_upload
    from server.services.form_conversion import TimedConversion

    return TimedConversion(convert_upload(data, filename), 0.0)


def _patch_cache() -> Callable[[], None]:
    """Route inline conversions through the per-session cache; return the undo function."""
    from server.services import form_conversion

    original = form_conversion.convert_inline

    def cached(data: bytes, filename: str, *, default_form_id: str | None = None) -> Any:
        if default_form_id is not None:
            return original(data, filename, default_form_id=default_form_id)
        return _cached_conversion(data, filename)

    form_conversion.convert_inline = cached  # type: ignore[assignment]

    def undo() -> None:
        form_conversion.convert_inline = original  # type: ignore[assignment]

    return undo


def publish_form(
    app_or_session: Flask | Session,
    project_id: int,
    path_or_bytes: Path | str | bytes,
    filename: str | None = None,
    *,
    publish: bool = True,
    actor: str = "test",
) -> tuple[int, str, str]:
    """Upload and publish a form; return (form db id, XForm id, version).

    With a session, call it inside the app context of the app whose store the session belongs to.
    """
    from server.services import forms as svc
    from server.store import get_store

    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
        name = filename or "form.xlsx"
    else:
        path = Path(path_or_bytes)
        data = path.read_bytes()
        name = filename or path.name
    settings = svc.UploadSettings(convert_inline=True, convert_timeout=60.0)
    undo = _patch_cache()
    try:
        if isinstance(app_or_session, Flask):
            with app_or_session.app_context():
                session = get_store().sessions()
                try:
                    result = svc.create_form_version(
                        session, project_id, data, name, publish=publish, actor=actor, settings=settings
                    )
                finally:
                    session.close()
        else:
            result = svc.create_form_version(
                app_or_session, project_id, data, name, publish=publish, actor=actor, settings=settings
            )
    finally:
        undo()
    return result.form_db_id, result.xml_form_id, result.version


@pytest.fixture
def published_coop(app: Flask, personas: Personas) -> PublishedForm:
    """The cooperative diagnostic example, published in the personas' project."""
    return PublishedForm(*publish_form(app, personas.project_id, COOP_XLSX))


@pytest.fixture
def published_entrepreneur(app: Flask, personas: Personas) -> PublishedForm:
    """The entrepreneur follow-up example (entity list), published in the personas' project."""
    return PublishedForm(*publish_form(app, personas.project_id, ENTREPRENEUR_XLSX))


@contextmanager
def committed_forms_app(
    backend_name: str, tmp_path: Path, config: dict[str, Any]
) -> Iterator[tuple[Flask, dict[str, str], int]]:
    """An app on a fresh database that requests commit to (threads, processes); yield (app, admin headers, project)."""
    from server import create_app
    from server.db.models import User
    from server.services import accounts as svc
    from server.store import get_store

    url, cleanup = fresh_database_url(backend_name, tmp_path)
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "VAR_DIR": str(tmp_path / "var"),
            "STORAGE_DIR": str(tmp_path / "storage"),
            "SECRET_KEY": "test-secret",
            "LOG_REQUESTS": False,
            **config,
        }
    )
    with app.app_context():
        session = get_store().sessions()
        project = svc.create_project(session, "Concurrence")
        user = svc.create_user(session, "racer", "long enough password", is_admin=True)
        db_user = session.get(User, user.id)
        assert db_user is not None
        token = svc.create_session_token(session, db_user).token
        session.close()
    try:
        yield app, {"Authorization": f"Bearer {token}"}, project.id
    finally:
        get_store(app).engine.dispose()
        cleanup()


def count_rows(app: Flask, model: Any) -> int:
    """Return how many rows ``model``'s table holds in ``app``'s committed store."""
    from sqlalchemy import func, select

    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        try:
            return session.scalar(select(func.count()).select_from(model)) or 0
        finally:
            session.close()


def xlsform(markdown: str) -> bytes:
    """Build an .xlsx from markdown tables, pyxform-test style: a row ``| sheet |`` starts a sheet.

    Example::

        | survey |
        |        | type | name | label |
        |        | text | q1   | Q1    |
    """
    import io

    from openpyxl import Workbook

    book = Workbook()
    assert book.active is not None
    book.remove(book.active)
    sheet = None
    for line in markdown.strip().splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0]:
            sheet = book.create_sheet(cells[0])
            continue
        assert sheet is not None, "a table row before any sheet name"
        sheet.append(cells[1:])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def multipart(data: bytes, filename: str, field: str = "file") -> tuple[bytes, str]:
    """Return (body, content type) of a multipart/form-data upload holding one file part."""
    boundary = "fieldsync-test-boundary-7d1e"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


MEDIA_FORM_MD = """
| survey   |
|          | type                              | name      | label::French (fr) | media::image::French (fr) |
|          | select_one_from_file villages.csv | village   | Village            |                           |
|          | note                              | welcome   | Bienvenue          | logo.png                  |
| settings |
|          | form_id    | version | form_title   |
|          | media_test | 1       | Média test   |
"""

EXTERNAL_FORM_MD = """
| survey          |
|                 | type                        | name     | label    | choice_filter     |
|                 | select_one region           | region   | Région   |                   |
|                 | select_one_external province | province | Province | region=${region}  |
| choices         |
|                 | list_name | name  | label |
|                 | region    | north | Nord  |
|                 | region    | south | Sud   |
| external_choices |
|                 | list_name | name | label    | region |
|                 | province  | p1   | Tanger   | north  |
|                 | province  | p2   | Agadir   | south  |
| settings        |
|                 | form_id       | version |
|                 | external_test | 1       |
"""


def media_form(version: str = "1", title: str = "Média test") -> bytes:
    """A form expecting logo.png (image) and villages.csv (select_one_from_file)."""
    return xlsform(MEDIA_FORM_MD.replace("| 1       | Média test", f"| {version} | {title}"))


def external_form() -> bytes:
    """A select_one_external form: pyxform's itemsets.csv becomes an attachment."""
    return xlsform(EXTERNAL_FORM_MD)


def name_photo_xlsform(form_id: str, version: str) -> bytes:
    """An XLSForm with a text ``name`` and an image ``photo`` (push tests: plain items with one declared file)."""
    return xlsform(
        f"""
| survey   |
|          | type  | name  | label |
|          | text  | name  | Name  |
|          | image | photo | Photo |
| settings |
|          | form_id   | version    |
|          | {form_id} | {version}  |
"""
    )
