"""No database transaction is open while a request body is read (issue 14 "Field networks").

Rules:
- BR1 On every endpoint that takes a body (OpenRosa small and large, push, tus PATCH, JSON API), when the
  body is being read the request holds no session transaction (both stores).
- BR2 On SQLite, while a body is being read, another writer can take the write lock at once.

The body is a stream that, at the moment the server reads it, looks at the store: that is the
moment a stalled phone would be holding whatever is open.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient

from tests.conftest import Personas, fresh_database_url
from tests.server.fixtures_forms import publish_form
from tests.server.live_server import multipart
from tests.server.test_submissions_support import PHOTO_XFORM, photo_project_app, photo_submission


class ProbingStream(io.BytesIO):
    """A request body that calls ``probe`` on its first read (as the server starts reading it)."""

    def __init__(self, data: bytes, probe: Callable[[], str]) -> None:
        super().__init__(data)
        self.probe = probe
        self.seen: list[str] = []

    def read(self, size: int | None = -1) -> bytes:
        if not self.seen:
            self.seen.append(self.probe())
        return super().read(size)

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        if not self.seen:
            self.seen.append(self.probe())
        return super().readinto(buffer)


def _transaction_open() -> str:
    if not has_app_context():
        return "no request yet"
    session = g.get("db_session")
    return "open" if session is not None and session.in_transaction() else "closed"


def _requests(prefix: str, project_id: int, upload: str | None) -> dict[str, tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body) of one request per kind of body."""
    xml = photo_submission("uuid:probe-small", [])
    small, small_type = multipart([("xml_submission_file", "s.xml", xml, "text/xml")])
    big_xml = photo_submission("uuid:probe-big", ["big.jpg"])
    big, big_type = multipart(
        [("xml_submission_file", "s.xml", big_xml, "text/xml"), ("big.jpg", "big.jpg", b"j" * 300_000, "image/jpeg")]
    )
    push = json.dumps({"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b1", "items": []}).encode()
    cases = {
        "openrosa-small": ("POST", f"{prefix}/submission", {"Content-Type": small_type}, small),
        "openrosa-large": ("POST", f"{prefix}/submission", {"Content-Type": big_type}, big),
        "push": (
            "POST",
            f"/v1/projects/{project_id}/sync/push",
            {"Content-Type": "application/json", "Idempotency-Key": "b1"},
            push,
        ),
        "json-api": (
            "POST",
            f"/v1/projects/{project_id}/blobs/missing",
            {"Content-Type": "application/json"},
            json.dumps({"sha256": ["0" * 64]}).encode(),
        ),
    }
    if upload is not None:
        cases["tus-patch"] = (
            "PATCH",
            upload,
            {"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            b"tus bytes",
        )
    return cases


def _create_upload(client: FlaskClient, headers: dict[str, str], project_id: int, length: int) -> str:
    import base64

    metadata = (
        f"sha256 {base64.b64encode(bytes(32)).decode()},project {base64.b64encode(str(project_id).encode()).decode()}"
    )
    created = client.post(
        "/v1/uploads",
        headers={**headers, "Tus-Resumable": "1.0.0", "Upload-Length": str(length), "Upload-Metadata": metadata},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    return str(created.headers["Location"])


KINDS = ["openrosa-small", "openrosa-large", "push", "json-api", "tus-patch"]


def _send(client: FlaskClient, request: tuple[str, str, dict[str, str], bytes], auth: dict[str, str], probe):  # type: ignore[no-untyped-def]
    method, path, headers, body = request
    stream = ProbingStream(body, probe)
    response = client.open(
        path,
        method=method,
        input_stream=stream,
        headers={**auth, **headers},
        environ_overrides={"CONTENT_LENGTH": str(len(body))},
    )
    return stream.seen, response.status_code


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_no_transaction_is_open_while_the_body_is_read(
    kind: str, app: Flask, client: FlaskClient, personas: Personas
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    upload = _create_upload(client, personas.device.headers, personas.project_id, 9) if kind == "tus-patch" else None
    request = _requests(personas.collect_prefix, personas.project_id, upload)[kind]
    seen, status = _send(client, request, personas.device.headers, _transaction_open)
    assert status < 500
    assert seen and seen[0] != "open"


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_a_body_being_read_never_blocks_another_writer_on_sqlite(kind: str, tmp_path: Path) -> None:
    url, cleanup = fresh_database_url("sqlite", tmp_path)
    app, project_id, token = photo_project_app(url, tmp_path, "probe-secret")
    database = url.removeprefix("sqlite:///")

    def other_writer() -> str:
        # Another coach's request, at the moment this one's body is on the wire: may it write now?
        probe = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return "writable"
        except sqlite3.OperationalError as error:
            return str(error)
        finally:
            probe.close()

    try:
        auth = {"Authorization": f"Bearer {token}"}
        client = app.test_client()
        upload = _create_upload(client, auth, project_id, 9) if kind == "tus-patch" else None
        request = _requests(f"/v1/key/{token}/projects/{project_id}", project_id, upload)[kind]
        seen, status = _send(client, request, auth, other_writer)
    finally:
        app.extensions["fieldsync.store"].engine.dispose()
        cleanup()
    assert status < 500
    assert seen == ["writable"]
