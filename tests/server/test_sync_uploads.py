"""Resumable uploads (tus 1.0) and blobs/missing (SYNC.md "Attachments", invariant 8)."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Personas


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _create(client: FlaskClient, personas: Personas, data: bytes, sha: str | None = None) -> tuple[str, int]:
    sha = sha or hashlib.sha256(data).hexdigest()
    response = client.post(
        "/v1/uploads",
        headers={
            **personas.device.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"sha256 {_b64(sha)},project {_b64(str(personas.project_id))}",
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["Tus-Resumable"] == "1.0.0"
    return response.headers["Location"], int(response.headers["Upload-Offset"])


def _patch(client: FlaskClient, personas: Personas, url: str, offset: int, chunk: bytes, declared: int | None = None):  # type: ignore[no-untyped-def]
    return client.patch(
        url,
        input_stream=io.BytesIO(chunk),
        headers={
            **personas.device.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
        # The test client measures the stream; a larger CONTENT_LENGTH is what a cut connection looks like.
        environ_overrides={"CONTENT_LENGTH": str(declared if declared is not None else len(chunk))},
    )


def test_a_cut_patch_keeps_what_arrived_and_the_upload_resumes(client: FlaskClient, personas: Personas) -> None:
    data = bytes(range(256)) * 40
    sha = hashlib.sha256(data).hexdigest()
    missing = client.post(
        f"/v1/projects/{personas.project_id}/blobs/missing",
        json={"sha256": [sha, sha]},
        headers=personas.device.headers,
    )
    assert missing.get_json() == {"protocol": "fieldsync/2", "missing": [sha]}
    url, offset = _create(client, personas, data)
    assert offset == 0
    cut = _patch(client, personas, url, 0, data[:3000], declared=5000)  # the connection dies after 3000 bytes
    assert cut.status_code == 400
    head = client.head(url, headers=personas.device.headers)
    assert head.headers["Upload-Offset"] == "3000"
    assert head.headers["Cache-Control"] == "no-store"
    assert _patch(client, personas, url, 0, data[:10]).status_code == 409  # a stale offset
    done = _patch(client, personas, url, 3000, data[3000:])
    assert done.status_code == 204
    assert done.headers["Upload-Offset"] == str(len(data))
    again = client.post(
        f"/v1/projects/{personas.project_id}/blobs/missing", json={"sha256": [sha]}, headers=personas.device.headers
    )
    assert again.get_json()["missing"] == []
    # The same blob again: born complete (dedupe), nothing to send.
    _, offset = _create(client, personas, data)
    assert offset == len(data)


def test_bytes_that_do_not_hash_to_the_declared_sha256_are_discarded(client: FlaskClient, personas: Personas) -> None:
    url, _ = _create(client, personas, b"hello", sha=hashlib.sha256(b"other").hexdigest())
    response = _patch(client, personas, url, 0, b"hello")
    assert response.status_code == 460
    assert client.head(url, headers=personas.device.headers).status_code == 410
    missing = client.post(
        f"/v1/projects/{personas.project_id}/blobs/missing",
        json={"sha256": [hashlib.sha256(b"other").hexdigest()]},
        headers=personas.device.headers,
    )
    assert missing.get_json()["missing"] == [hashlib.sha256(b"other").hexdigest()]


def test_options_advertise_tus(client: FlaskClient) -> None:
    response = client.options("/v1/uploads")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert "creation" in response.headers["Tus-Extension"].split(",")
    assert int(response.headers["Tus-Max-Size"]) > 0


def test_abandoned_uploads_expire(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    from server.db.base import utcnow
    from server.jobs import expire_uploads
    from server.store import get_store

    url, _ = _create(client, personas, b"abandoned")
    assert _patch(client, personas, url, 0, b"aban").status_code == 204
    with app.app_context():
        storage = get_store().storage_dir
    partial = storage / "uploads" / url.rsplit("/", 1)[1]
    assert partial.read_bytes() == b"aban"
    assert expire_uploads(db, utcnow() + timedelta(days=1), storage) == 0
    assert expire_uploads(db, utcnow() + timedelta(days=31), storage) == 1
    assert expire_uploads(db, utcnow() + timedelta(days=31), storage) == 0  # claimed once
    assert not partial.exists()
    with app.app_context():
        assert expire_uploads(db) == 0  # the scheduler's call: app storage, now
    assert client.head(url, headers=personas.device.headers).status_code == 410
