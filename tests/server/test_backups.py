"""Backups, restores and the SQLite → PostgreSQL move (issue 21, "Backups").

Rules:
- K1 ``fieldsync backup`` then ``fieldsync restore`` into an empty store (another database, other folders or
  another bucket) leaves exports, entity states (conflicts included) and attachment bytes identical.
- K2 a restore refuses a store that already has data, and a file that is not a backup, with clear errors.
- K3 ``fieldsync migrate-store --to`` copies a SQLite store into PostgreSQL: same exports and entities, and
  the new store keeps working (its id sequences are past the copied ids).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import select

from server.auth import Principal
from server.blobstore import blob_store
from server.db.models.sync import Entity
from server.ops_cli import backup_command, migrate_store_command, restore_command
from server.store import get_store
from tests.conftest import POSTGRES_URL, fresh_database_url
from tests.server.faulty_transport import batch_id_for, envelope
from tests.server.sync_fixtures import LIST, PROPERTIES, entity_item
from tests.server.test_submissions_support import photo_project_app, photo_submission, post_submission

PHOTOS = {"a.jpg": b"photo A " * 1000, "b.jpg": b"photo B", "c.jpg": "صورة".encode() * 50}


@dataclass
class Populated:
    """A store with forms, submissions (an edit, a soft deletion) with attachments, and entities in conflict."""

    app: Flask
    project_id: int
    token: str
    cleanup: Any


def _push(app: Flask, project_id: int, token: str, device: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    batch = batch_id_for(device, items)
    reply = app.test_client().post(
        f"/v1/projects/{project_id}/sync/push",
        data=envelope(device, batch, items),
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": batch, "Content-Type": "application/json"},
    )
    assert reply.status_code == 200, reply.get_data(as_text=True)
    results: list[dict[str, Any]] = reply.get_json()["results"]
    return results


def populate(backend_name: str, folder: Path, config: dict[str, Any] | None = None) -> Populated:
    """Fill a fresh store through the doors phones and admins use."""
    from forms.schema import EntityDeclaration
    from server.services import submissions as submissions_svc
    from server.services.entities import declare_entity_lists

    url, cleanup = fresh_database_url(backend_name, folder)
    app, project_id, token = photo_project_app(url, folder, "backup-secret")
    app.config.update(config or {})
    with app.app_context():
        session = get_store().sessions()
        with session.begin():
            declare_entity_lists(
                session, project_id, [EntityDeclaration(list_name=LIST, properties={p: p for p in PROPERTIES})]
            )
        session.close()
    client, prefix = app.test_client(), f"/v1/key/{token}/projects/{project_id}"
    sent = [
        (photo_submission("uuid:k1", ["a.jpg", "b.jpg"], site="Tafraout"), {"a.jpg": PHOTOS["a.jpg"]}),
        (photo_submission("uuid:k1b", ["a.jpg", "b.jpg"], site="Tiznit", deprecated_id="uuid:k1"), {}),
        (photo_submission("uuid:k2", ["c.jpg"], site="Agadir"), {"c.jpg": PHOTOS["c.jpg"]}),
        (photo_submission("uuid:k3", ["b.jpg"], site="deleted"), {"b.jpg": PHOTOS["b.jpg"]}),
    ]
    for xml, files in sent:
        assert post_submission(client, prefix, xml, files).status_code == 201
    with app.app_context():
        session = get_store().sessions()
        submissions_svc.delete_submission(
            session,
            project_id=project_id,
            xml_form_id="photo_visit",
            instance_id="uuid:k3",
            principal=Principal("user", 0, "manager"),
        )
        session.close()
    (created,) = _push(app, project_id, token, "devA", [entity_item("devA", 1, "e1", {"phone": "1"}, label="Amina")])
    rev = created["entity"]["rev"]
    _push(app, project_id, token, "devB", [entity_item("devB", 1, "e1", {"phone": "2"}, base_rev=rev, hlc=5)])
    (conflict,) = _push(app, project_id, token, "devA", [entity_item("devA", 2, "e1", {"phone": "3"}, base_rev=rev)])
    assert conflict["status"] == "conflict"
    _push(app, project_id, token, "devC", [entity_item("devC", 1, "e2", {"village": "Imi n'Tanout"}, label="Fatima")])
    return Populated(app, project_id, token, cleanup)


def state(app: Flask, project_id: int) -> dict[str, Any]:
    """What must survive: the export's files, every entity's state, every attachment's bytes."""
    from server.db.models.submissions import SubmissionAttachment
    from server.services import exports as exports_svc

    with app.app_context():
        session = get_store().sessions()
        out = io.BytesIO()
        exports_svc.write_export(session, project_id, "photo_visit", {}, "zip", "test", out)
        with zipfile.ZipFile(out) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
        entities = [
            {c: getattr(e, c) for c in ("entity_id", "label", "properties", "version", "rev", "conflict", "deleted")}
            | {"conflict_fields": json.dumps(e.conflict_fields, sort_keys=True)}
            for e in session.scalars(select(Entity).order_by(Entity.entity_id))
        ]
        store = blob_store(Path(app.config["STORAGE_DIR"]))
        hashes = sorted(
            set(
                session.scalars(
                    select(SubmissionAttachment.blob_sha256).where(SubmissionAttachment.blob_sha256.is_not(None))
                )
            )
        )
        blobs = {sha: hashlib.sha256(b"".join(store.iter_bytes(sha))).hexdigest() for sha in hashes}
        session.close()
    return {"export": files, "entities": entities, "blobs": blobs}


def _cli(app: Flask, command: Any, *args: str) -> Any:
    return CliRunner().invoke(command, list(args), obj=ScriptInfo(create_app=lambda: app))


def _empty_app(backend_name: str, folder: Path, config: dict[str, Any] | None = None) -> tuple[Flask, Any]:
    from server import create_app

    url, cleanup = fresh_database_url(backend_name, folder)
    app = create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(folder / "var"),
            "STORAGE_DIR": str(folder / "storage"),
            "SECRET_KEY": "backup-secret",
            "LOG_REQUESTS": False,
            **(config or {}),
        }
    )
    return app, cleanup


def _another_bucket(config: dict[str, Any]) -> dict[str, Any]:
    """The same endpoint, a new empty bucket."""
    from server.blobstore import s3_client
    from tests.server.s3_fixtures import settings_of

    bucket = settings_of(config).bucket + "-restored"
    s3_client(settings_of(config)).create_bucket(Bucket=bucket)
    return {**config, "BLOB_STORE": f"s3://{bucket}/site-b"}


def _dispose(*apps: Flask) -> None:
    for app in apps:
        get_store(app).engine.dispose()


@pytest.mark.one_store_per_run
@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend_name", "blobs"),
    [("sqlite", "folder"), ("postgresql", "folder"), ("sqlite", "s3")],
    ids=["sqlite-folder", "postgresql-folder", "sqlite-s3"],
)
def test_backup_and_restore_round_trip(
    tmp_path: Path, backend_name: str, blobs: str, request: pytest.FixtureRequest
) -> None:
    if backend_name == "postgresql" and not POSTGRES_URL:
        pytest.skip(reason="FIELDSYNC_TEST_POSTGRES_URL is not set (CI sets it; see .ci/run)")
    source_config = request.getfixturevalue("s3_config") if blobs == "s3" else {}
    target_config = _another_bucket(source_config) if blobs == "s3" else {}
    source = populate(backend_name, tmp_path / "source", source_config)
    target, target_cleanup = _empty_app(backend_name, tmp_path / "target", target_config)
    try:
        archive = tmp_path / "fieldsync-backup.zip"
        done = _cli(source.app, backup_command, str(archive))
        assert done.exit_code == 0, done.output
        with zipfile.ZipFile(archive) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        assert manifest["tables"]["submissions"] == 3 and manifest["tables"]["entities"] == 2
        assert manifest["blobs"] == 3
        restored = _cli(target, restore_command, str(archive))
        assert restored.exit_code == 0, restored.output
        before = state(source.app, source.project_id)
        assert [e["conflict"] for e in before["entities"]] == ["hard", None]  # e1 in conflict, e2 not
        assert len(before["blobs"]) == 3 and before["export"]
        assert state(target, source.project_id) == before
        again = _cli(target, restore_command, str(archive))
        assert again.exit_code != 0
        assert "store_not_empty" in again.output
        # The restored store takes new work: ids continue past the restored ones.
        client = target.test_client()
        prefix = f"/v1/key/{source.token}/projects/{source.project_id}"
        assert post_submission(client, prefix, photo_submission("uuid:after", [])).status_code == 201
    finally:
        _dispose(source.app, target)
        source.cleanup()
        target_cleanup()


def test_a_file_that_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    target, cleanup = _empty_app("sqlite", tmp_path)
    bogus = tmp_path / "holiday.zip"
    with zipfile.ZipFile(bogus, "w") as zf:
        zf.writestr("photo.jpg", b"not a backup")
    try:
        result = _cli(target, restore_command, str(bogus))
        assert result.exit_code != 0
        assert "bad_backup" in result.output
    finally:
        _dispose(target)
        cleanup()


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES_URL, reason="the move's target is PostgreSQL")
def test_migrate_store_moves_sqlite_to_postgresql(tmp_path: Path) -> None:
    from server import create_app

    source = populate("sqlite", tmp_path / "source")
    target_url, target_cleanup = fresh_database_url("postgresql", tmp_path / "target")
    try:
        result = _cli(source.app, migrate_store_command, "--to", target_url)
        assert result.exit_code == 0, result.output
        moved = create_app({**source.app.config, "DATABASE_URL": target_url})
        assert state(moved, source.project_id) == state(source.app, source.project_id)
        prefix = f"/v1/key/{source.token}/projects/{source.project_id}"
        assert post_submission(moved.test_client(), prefix, photo_submission("uuid:after", [])).status_code == 201
        _dispose(moved)
    finally:
        _dispose(source.app)
        source.cleanup()
        target_cleanup()
