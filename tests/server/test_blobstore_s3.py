"""The S3 blob store against a real S3 endpoint on loopback (moto's server mode; issue 21, "Object storage").

Rules:
- S1 the S3 store keeps blobs as the folder does: named by content, stored once, read back in chunks,
  listed and deleted; ``size_of`` and ``has_file`` answer without reading the bytes.
- S2 a file above the multipart threshold goes up as a multipart upload and comes back whole.
- S3 with ``BLOB_STORE=s3://...`` submission attachments and form media land in the bucket, none in the
  local folder, and download back through the API and OpenRosa.
- S4 a tus upload started through one app and finished through another (separate folders, one database,
  one bucket) becomes the blob; a PATCH cut on the first app resumes on the second.
- S5 a tus upload whose bytes do not hash to the declared sha256 leaves nothing in the bucket.
- S6 a ``BLOB_STORE`` that is not ``s3://bucket/prefix`` is refused clearly.
- S7 a PATCH body on S3 is durable in segments: one per ``PROGRESS_BYTES`` while it arrives (stored before
  the offset may move) and one for the rest, a cut body's rest included: every byte that arrived counts.
- S8 overlapping PATCHes (a phone resumed from an older offset while a cut PATCH was still being stored)
  leave overlapping segments; the upload is assembled from them byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.blobstore import MULTIPART_BYTES, PROGRESS_BYTES, S3BlobStore, blob_store, parse_s3_url
from server.db.models import Blob
from tests.conftest import Personas, fresh_database_url
from tests.server.fixtures_forms import media_form, publish_form
from tests.server.s3_fixtures import bucket_keys, settings_of
from tests.server.test_submissions_support import PHOTO_XFORM, photo_project_app, photo_submission, post_submission


def _store(tmp_path: Path, config: dict[str, Any]) -> S3BlobStore:
    store = blob_store(tmp_path, config)
    assert isinstance(store, S3BlobStore)
    return store


def test_s3_store_keeps_blobs_by_content(session: Session, tmp_path: Path, s3_config: dict[str, Any]) -> None:
    store = _store(tmp_path, s3_config)
    data = "صورة المقر — photo du local".encode() * 500
    first = store.put_bytes(session, data, "image/jpeg")
    second = store.put_stream(session, io.BytesIO(data), "image/jpeg")
    session.commit()
    assert first == second == hashlib.sha256(data).hexdigest()
    assert b"".join(store.iter_bytes(first)) == data
    assert store.open(first).read() == data
    assert store.has_file(first) and store.size_of(first) == len(data)
    assert bucket_keys(s3_config) == [f"site-a/blobs/{first[:2]}/{first[2:4]}/{first}"]
    assert [b.sha256 for b in store.list_blobs()] == [first]
    assert list(store.tmp.iterdir()) == []  # the staging file is gone
    store.delete(first)
    assert not store.has_file(first)


def test_a_big_file_goes_up_in_parts_and_streams_back(
    session: Session, tmp_path: Path, s3_config: dict[str, Any]
) -> None:
    store = _store(tmp_path, s3_config)
    block = os.urandom(1024 * 1024)
    size = 2 * MULTIPART_BYTES + 123

    def chunks() -> Any:  # generated as it is read: the test never holds the file either
        left = size
        while left:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            yield piece

    expected = hashlib.sha256()
    for piece in chunks():
        expected.update(piece)
    sha = store.put_chunks(session, chunks(), "video/mp4")
    assert sha == expected.hexdigest()
    head = store.client.head_object(Bucket=store.bucket, Key=store.key_for(sha))
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    back = hashlib.sha256()
    received = 0
    for piece in store.iter_bytes(sha):
        assert len(piece) <= 256 * 1024
        back.update(piece)
        received += len(piece)
    assert (received, back.hexdigest()) == (size, sha)


def test_attachments_and_media_live_in_the_bucket(
    app: Flask, client: FlaskClient, personas: Personas, s3_config: dict[str, Any], tmp_path: Path
) -> None:
    app.config.update(s3_config)
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:s3-1", ["a.jpg"])
    assert post_submission(client, personas.collect_prefix, xml, {"a.jpg": b"JPEG on S3"}).status_code == 201
    base = f"/v1/projects/{personas.project_id}/forms/photo_visit/submissions"
    download = client.get(f"{base}/uuid:s3-1/attachments/a.jpg", headers=personas.analyst.headers)
    assert download.status_code == 200
    assert download.data == b"JPEG on S3"
    assert download.headers["Content-Length"] == str(len(b"JPEG on S3"))

    publish_form(app, personas.project_id, media_form(), "media.xlsx")
    logo = b"\x89PNG\r\n\x1a\n logo on S3"
    uploaded = client.post(
        f"/v1/projects/{personas.project_id}/forms/media_test/draft/attachments/logo.png",
        data=logo,
        content_type="image/png",
        headers=personas.manager.headers,
    )
    assert uploaded.status_code == 200
    media = client.get(f"{personas.collect_prefix}/forms/media_test/attachments/logo.png?deviceID=collect:x")
    assert media.status_code == 200
    assert media.data == logo

    keys = bucket_keys(s3_config)
    for content in (b"JPEG on S3", logo):
        sha = hashlib.sha256(content).hexdigest()
        assert f"site-a/blobs/{sha[:2]}/{sha[2:4]}/{sha}" in keys
    local = Path(app.config["STORAGE_DIR"]) / "blobs"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _tus(client: FlaskClient, token: str, method: str, url: str, **headers: str) -> Any:
    return client.open(
        url, method=method, headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", **headers}
    )


def _patch(client: FlaskClient, token: str, url: str, offset: int, data: bytes, declared: int | None = None) -> Any:
    return client.patch(
        url,
        input_stream=io.BytesIO(data),
        headers={
            "Authorization": f"Bearer {token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
        # A CONTENT_LENGTH larger than the body is what a cut connection looks like.
        environ_overrides={"CONTENT_LENGTH": str(declared if declared is not None else len(data))},
    )


def _two_hosts(tmp_path: Path, s3_config: dict[str, Any], backend_name: str) -> tuple[Flask, Flask, int, str, Any]:
    """Two apps on one fresh database and one bucket, each with folders of its own."""
    from server import create_app
    from server.store import get_store

    url, cleanup = fresh_database_url(backend_name, tmp_path)
    first, project_id, token = photo_project_app(url, tmp_path / "host-a", "two-hosts")
    first.config.update(s3_config)
    second = create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(tmp_path / "host-b" / "var"),
            "STORAGE_DIR": str(tmp_path / "host-b" / "storage"),
            "SECRET_KEY": "two-hosts",
            "LOG_REQUESTS": False,
            **s3_config,
        }
    )

    def close() -> None:
        for app in (first, second):
            with app.app_context():
                get_store().engine.dispose()
        cleanup()

    return first, second, project_id, token, close


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def test_a_tus_upload_moves_between_hosts(tmp_path: Path, s3_config: dict[str, Any], backend_name: str) -> None:
    from tests.conftest import POSTGRES_URL

    if backend_name == "postgresql" and not POSTGRES_URL:
        pytest.skip(reason="FIELDSYNC_TEST_POSTGRES_URL is not set (CI sets it; see .ci/run)")
    first, second, project_id, token, close = _two_hosts(tmp_path, s3_config, backend_name)
    try:
        data = os.urandom(300_000)
        sha = hashlib.sha256(data).hexdigest()
        a, b = first.test_client(), second.test_client()
        created = _tus(
            a,
            token,
            "POST",
            "/v1/uploads",
            **{
                "Upload-Length": str(len(data)),
                "Upload-Metadata": f"sha256 {_b64(sha)},project {_b64(str(project_id))}",
            },
        )
        assert created.status_code == 201, created.get_data(as_text=True)
        url = created.headers["Location"]
        # Host A receives 100 000 bytes, then the connection is cut 50 000 bytes into the next PATCH.
        assert _patch(a, token, url, 0, data[:100_000]).status_code == 204
        cut = _patch(a, token, url, 100_000, data[100_000:150_000], declared=200_000)
        assert cut.status_code == 400
        # The phone's next attempt reaches host B, which knows where to resume from.
        head = _tus(b, token, "HEAD", url)
        assert head.status_code == 200
        assert head.headers["Upload-Offset"] == "150000"
        done = _patch(b, token, url, 150_000, data[150_000:])
        assert done.status_code == 204, done.get_data(as_text=True)
        assert done.headers["Upload-Offset"] == str(len(data))
        for app in (first, second):
            with app.app_context():
                assert b"".join(blob_store(Path(app.config["STORAGE_DIR"])).iter_bytes(sha)) == data
                from server.store import get_store

                with get_store().sessions() as session:
                    assert session.scalar(select(Blob.size).where(Blob.sha256 == sha)) == len(data)
        # Only the blob is left: the segments and the assembled copy are gone, nothing stayed on a disk.
        assert bucket_keys(s3_config) == [f"site-a/blobs/{sha[:2]}/{sha[2:4]}/{sha}"]
        for host in ("host-a", "host-b"):
            leftovers = [p for p in (tmp_path / host / "storage").rglob("*") if p.is_file()]
            assert leftovers == []
    finally:
        close()


def test_a_mismatching_tus_upload_leaves_nothing(
    app: Flask, client: FlaskClient, personas: Personas, s3_config: dict[str, Any]
) -> None:
    app.config.update(s3_config)
    data = b"the declared hash is of other bytes"
    created = client.post(
        "/v1/uploads",
        headers={
            **personas.device.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"sha256 {_b64('0' * 64)},project {_b64(str(personas.project_id))}",
        },
    )
    assert created.status_code == 201
    reply = client.patch(
        created.headers["Location"],
        data=data,
        headers={
            **personas.device.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert reply.status_code == 460
    assert bucket_keys(s3_config) == []


@pytest.mark.parametrize(
    "url", ["s3:/no-bucket", "https://bucket/prefix", "bucket/prefix"], ids=["no-host", "http", "bare"]
)
def test_a_bad_blob_store_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        parse_s3_url(url)


def test_a_bad_blob_store_stops_the_app_at_start(tmp_path: Path) -> None:
    from server import create_app

    with pytest.raises(ValueError, match="FIELDSYNC_BLOB_STORE: expected s3://bucket/prefix"):
        create_app({"VAR_DIR": str(tmp_path), "SECRET_KEY": "x", "BLOB_STORE": "/srv/blobs"})


def test_settings_come_from_the_config(s3_config: dict[str, Any]) -> None:
    settings = settings_of(s3_config)
    assert (settings.bucket.startswith("fieldsync-"), settings.prefix) == (True, "site-a")


def test_scheduled_exports_go_to_the_bucket(
    app: Flask, personas: Personas, session: Session, s3_config: dict[str, Any]
) -> None:
    from datetime import UTC, datetime

    from server.auth import Principal
    from server.scheduler import run_exports_tick
    from server.services import exports as svc
    from tests.server.fixtures_exports import ingest_xml
    from tests.server.fixtures_forms import COOP_XLSX
    from tests.server.test_submissions_support import example_submission

    app.config.update(s3_config)
    publish_form(app, personas.project_id, COOP_XLSX)
    ingest_xml(session, personas.project_id, example_submission("coop_diagnostic", "01"), Principal("user", 1, "t"))
    export_dir = Path(app.config["EXPORT_DIR"])
    t0, due = datetime(2026, 12, 7, 5, 30, tzinfo=UTC), [datetime(2026, 12, 7, h, 0, tzinfo=UTC) for h in (6, 7)]
    body = {"cron": "0 * * * *", "folder": "daily", "keep": 1}
    schedule = svc.create_schedule(session, personas.project_id, "coop_diagnostic", body, export_dir, "test", now=t0)
    session.commit()
    for when in due:
        assert [o.status for o in run_exports_tick(app, when)] == ["done"]
    newest = svc.dated_file_name("coop_diagnostic", schedule.id, due[-1], "zip")
    expected = f"site-a/exports/{personas.project_id}/daily/{newest}"  # each project's files under its own id
    assert [k for k in bucket_keys(s3_config) if "/exports/" in k] == [expected]
    assert not any(p.is_file() for p in export_dir.rglob("*"))  # nothing kept on this host's disk


def _cut_after(data: bytes, at: int, step: int = 8192) -> Any:
    """The chunks of ``data`` as a PATCH body cut after ``at`` bytes (the connection reset)."""
    for start in range(0, at, step):
        yield data[start : min(start + step, at)]
    raise ConnectionResetError("cut")


def test_a_patch_on_s3_is_durable_in_segments_and_a_cut_keeps_every_byte(
    tmp_path: Path, s3_config: dict[str, Any]
) -> None:
    store = _store(tmp_path, s3_config)
    data = os.urandom(2 * PROGRESS_BYTES + 12_345)
    cut_at = 2 * PROGRESS_BYTES + 7_001  # not on any boundary
    seen: list[tuple[int, int]] = []

    def advance(end: int) -> bool:
        ranges = [k.rsplit("/", 1)[1].split("-")[:2] for k in bucket_keys(s3_config)]
        stored = sum(int(end) - int(start) for start, end in ranges)
        seen.append((end, stored))
        return True

    written, error = store.write_partial("u1", 0, _cut_after(data, cut_at), len(data), advance=advance)
    assert isinstance(error, ConnectionResetError)
    assert written == cut_at
    assert seen == [(PROGRESS_BYTES, PROGRESS_BYTES), (2 * PROGRESS_BYTES, 2 * PROGRESS_BYTES)]
    # The rest of what arrived is a segment of its own; a PATCH from there completes the upload.
    rest, error = store.write_partial("u1", cut_at, iter([data[cut_at:]]), len(data) - cut_at)
    assert (rest, error) == (len(data) - cut_at, None)
    assert store.finish_partial("u1", len(data)) == hashlib.sha256(data).hexdigest()


def test_overlapping_patches_on_s3_assemble_byte_for_byte(tmp_path: Path, s3_config: dict[str, Any]) -> None:
    store = _store(tmp_path, s3_config)
    data = os.urandom(400_000)
    assert store.write_partial("u2", 0, _cut_after(data, 150_000), len(data))[0] == 150_000
    # The phone had asked HEAD elsewhere before the cut PATCH's last segment was stored: it resends from 90 000.
    assert store.write_partial("u2", 90_000, iter([data[90_000:300_000]]), len(data) - 90_000)[0] == 210_000
    assert store.finish_partial("u2", len(data)) == ""  # [300 000, 400 000) is still missing
    store.write_partial("u2", 300_000, iter([data[300_000:]]), 100_000)
    assert store.finish_partial("u2", len(data)) == hashlib.sha256(data).hexdigest()
    store.delete_partial("u2")
    assert bucket_keys(s3_config) == []
