"""Helpers shared by the submission tests: Collect-like requests, a store dump, small test forms.

Not a test module by content (it holds no tests); named ``test_submissions_*`` to stay in the
submissions area's files.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from server.db.base import Base
from tests.conftest import REPO

EXAMPLE_SUBMISSIONS = REPO / "examples" / "submissions"
COLLECT_HEADERS = {"X-OpenRosa-Version": "1.0", "User-Agent": "org.odk.collect.android/v2025.2.1 test"}

# A small form with a repeat of photos, for multi-POST splits (the examples have one photo each).
PHOTO_XFORM = b"""<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    <h:title>Photo visit</h:title>
    <model>
      <instance>
        <data id="photo_visit" version="1">
          <site/>
          <visit jr:template=""><photo/></visit>
          <meta><instanceID/><deprecatedID/></meta>
        </data>
      </instance>
      <bind nodeset="/data/site" type="string"/>
      <bind nodeset="/data/visit/photo" type="binary"/>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" jr:preload="uid"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/site"><label>Site</label></input>
    <group ref="/data/visit"><label>Visit</label>
      <repeat nodeset="/data/visit">
        <upload ref="/data/visit/photo" mediatype="image/*"><label>Photo</label></upload>
      </repeat>
    </group>
  </h:body>
</h:html>
"""


def photo_submission(
    instance_id: str, photos: list[str], site: str = "Tafraout", deprecated_id: str | None = None
) -> bytes:
    """Return a photo_visit submission naming ``photos``."""
    visits = "".join(f"<visit><photo>{name}</photo></visit>" for name in photos)
    deprecated = f"<deprecatedID>{deprecated_id}</deprecatedID>" if deprecated_id else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<data xmlns:jr="http://openrosa.org/javarosa" id="photo_visit" version="1"><site>{site}</site>{visits}'
        f"<meta><instanceID>{instance_id}</instanceID>{deprecated}</meta></data>"
    ).encode()


def example_submission(form_id: str, stem: str) -> bytes:
    """Return the bytes of ``examples/submissions/<form_id>/<stem>*.xml``."""
    return next((EXAMPLE_SUBMISSIONS / form_id).glob(f"{stem}*.xml")).read_bytes()


def post_submission(
    client: FlaskClient,
    prefix: str,
    xml: bytes | None,
    files: Mapping[str, bytes] | None = None,
    *,
    incomplete: bool = False,
    headers: Mapping[str, str] | None = None,
    query: str = "?deviceID=collect%3Atest123",
) -> TestResponse:
    """POST like Collect: multipart with ``xml_submission_file`` and one part per file."""
    data: dict[str, Any] = {}
    if xml is not None:
        data["xml_submission_file"] = (io.BytesIO(xml), "submission.xml", "text/xml")
    for name, content in (files or {}).items():
        data[name] = (io.BytesIO(content), name, "image/jpeg")
    if incomplete:
        data["*isIncomplete*"] = "yes"
    return client.post(
        f"{prefix}/submission{query}",
        data=data,
        content_type="multipart/form-data",
        headers={**COLLECT_HEADERS, **(headers or {})},
    )


def dump_store(session: Session, app: Flask) -> tuple[dict[str, list[str]], list[tuple[str, int]]]:
    """Every row of every table (sorted) and the blob directory listing: equal dumps mean an untouched store."""
    from server.store import get_store

    # End the test session's read transaction with a RELEASE: a ROLLBACK TO would undo the app's writes.
    session.commit()
    tables: dict[str, list[str]] = {}
    for table in Base.metadata.sorted_tables:
        rows = session.execute(select(table)).all()
        tables[table.name] = sorted(repr(tuple(row)) for row in rows)
    session.commit()
    with app.app_context():
        root = Path(get_store().storage_dir)
    files = sorted((str(path.relative_to(root)), path.stat().st_size) for path in root.rglob("*") if path.is_file())
    return tables, files


def photo_project_app(url: str, tmp_path: Path, secret_key: str) -> tuple[Flask, int, str]:
    """An app on ``url``'s store with a new project, a device and ``PHOTO_XFORM`` published.

    Returns (app, project id, device token); the caller disposes the app's engine when done.
    """
    from server import create_app
    from server.services import accounts as accounts_svc
    from server.store import get_store
    from tests.server.fixtures_forms import publish_form

    app = create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(tmp_path / "var"),
            "STORAGE_DIR": str(tmp_path / "storage"),
            "SECRET_KEY": secret_key,
            "LOG_REQUESTS": False,
        }
    )
    with app.app_context():
        session = get_store().sessions()
        project = accounts_svc.create_project(session, "Photo visits")
        device = accounts_svc.create_device(session, project.id, "phone")
        publish_form(session, project.id, PHOTO_XFORM, "photo_visit.xml")
        session.close()
    return app, project.id, device.token
