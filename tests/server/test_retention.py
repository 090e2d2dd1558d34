"""Retention: ``fieldsync purge`` (issue 21, "Retention").

Rules:
- R1 submissions soft-deleted longer than ``PURGE_AFTER_DAYS`` are purged with their versions and
  attachment rows, one ``submission.purge`` audit event each; younger deletions and live ones stay.
- R2 a blob no row needs, untouched for the grace period, is deleted (row and bytes); a referenced blob,
  a young one, and one a live tus upload brings are kept; bytes with no row go after the grace period.
- R3 expired tus uploads lose their partial bytes, finished uploads' leftovers and stale staging files go.
- R4 a writer storing the content of a garbage blob while the collector runs never ends with a row
  without bytes, in either order (PostgreSQL, two connections).
- R6 conversion jobs finished more than ``JOB_RETENTION_DAYS`` ago (or abandoned unfinished that long)
  are deleted; younger ones stay.
- R7 deliveries delivered more than ``WEBHOOK_RETENTION_DAYS`` ago go with their attempts, then the events
  no delivery needs; pending and dead deliveries and their events stay, as do young deliveries.
- R5 ``fieldsync purge`` runs it all and says what went; the scheduler has a purge job.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from server.blobstore import BlobStore, blob_store
from server.db.base import utcnow
from server.db.models import Blob
from server.db.models.audit import AuditEvent
from server.db.models.forms import FormConversionJob
from server.db.models.submissions import Submission, SubmissionAttachment, SubmissionVersion
from server.db.models.sync import Upload
from server.db.models.webhooks import Event, WebhookAttempt, WebhookDelivery, WebhookSubscription
from server.ops_cli import purge_command, run_purge
from server.services import retention
from tests.conftest import POSTGRES_URL, Personas, fresh_database_url
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission, post_submission

DAY = timedelta(days=1)


def _store(app: Flask) -> BlobStore:
    return blob_store(Path(app.config["STORAGE_DIR"]), app.config)


def _age_blobs(session: Session, days: float) -> None:
    session.execute(update(Blob).values(created_at=utcnow() - timedelta(days=days), touched_at=None))
    session.commit()


def _submit(client: FlaskClient, personas: Personas, instance_id: str, photo: bytes) -> None:
    xml = photo_submission(instance_id, ["p.jpg"])
    assert post_submission(client, personas.collect_prefix, xml, {"p.jpg": photo}).status_code == 201


def test_old_soft_deleted_submissions_are_purged_and_audited(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    for name in ("old", "young", "live"):
        _submit(client, personas, f"uuid:{name}", name.encode())
    base = f"/v1/projects/{personas.project_id}/forms/photo_visit/submissions"
    for name in ("old", "young"):
        assert client.delete(f"{base}/uuid:{name}", headers=personas.manager.headers).status_code == 200
    now = utcnow()
    session.execute(update(Submission).where(Submission.instance_id == "uuid:old").values(deleted_at=now - 31 * DAY))
    session.commit()
    report = run_purge(app, now)
    assert report.submissions == 1
    assert sorted(session.scalars(select(Submission.instance_id))) == ["uuid:live", "uuid:young"]
    assert sorted(session.scalars(select(SubmissionVersion.instance_id))) == ["uuid:live", "uuid:young"]
    (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "submission.purge"))
    assert (event.actor, event.details["instance_id"]) == ("system:purge", "uuid:old")
    # Its photo is garbage now, but young: it goes once the grace period has passed.
    old_photo = hashlib.sha256(b"old").hexdigest()
    assert _store(app).has_file(old_photo)
    assert run_purge(app, now + 2 * DAY).blobs == 1
    assert not _store(app).has_file(old_photo)
    assert session.scalar(select(func.count()).select_from(SubmissionAttachment)) == 2


def test_the_purge_period_is_configurable(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    _submit(client, personas, "uuid:week", b"week")
    session.execute(update(Submission).values(deleted_at=utcnow() - 8 * DAY, deleted_by="manager"))
    session.commit()
    assert run_purge(app).submissions == 0
    app.config["PURGE_AFTER_DAYS"] = 7
    assert run_purge(app).submissions == 1


def test_only_unneeded_old_blobs_are_collected(
    app: Flask, client: FlaskClient, personas: Personas, session: Session, db: sessionmaker[Session]
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    _submit(client, personas, "uuid:kept", b"referenced photo")
    store = _store(app)
    garbage = store.put_bytes(session, b"nobody needs me")
    awaited = store.put_bytes(session, b"a tus upload brings me")
    session.add(
        Upload(
            id="u" * 32,
            project_id=personas.project_id,
            sha256=awaited,
            length=22,
            offset=22,
            state="done",
            expires_at=utcnow() + 10 * DAY,
        )
    )
    session.commit()
    _age_blobs(session, 3)
    young = store.put_bytes(session, b"just written")
    session.commit()
    # Bytes whose row was rolled back: found by listing the store.
    orphan_path = store.path_for(hashlib.sha256(b"orphan").hexdigest())
    orphan_path.parent.mkdir(parents=True, exist_ok=True)
    orphan_path.write_bytes(b"orphan")
    old = time.time() - 3 * 86400
    os.utime(orphan_path, (old, old))

    now = utcnow()
    assert retention.collect_blobs(db(), store, now, timedelta(hours=24)) == 1
    assert retention.collect_orphan_files(db(), store, now, timedelta(hours=24)) == 1
    left = set(session.scalars(select(Blob.sha256)))
    assert garbage not in left and not store.has_file(garbage)
    assert {awaited, young, hashlib.sha256(b"referenced photo").hexdigest()} <= left
    assert all(store.has_file(sha) for sha in left)
    assert not orphan_path.exists()


def test_expired_uploads_and_stale_staging_are_removed(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    import base64

    store = _store(app)
    data = b"abandoned upload"
    sha = hashlib.sha256(data).hexdigest()
    project = base64.b64encode(str(personas.project_id).encode()).decode()
    meta = f"sha256 {base64.b64encode(sha.encode()).decode()},project {project}"
    created = client.post(
        "/v1/uploads",
        headers={
            **personas.device.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta,
        },
    )
    assert created.status_code == 201
    upload_id = created.headers["Location"].rsplit("/", 1)[1]
    assert list(store.list_partials()) == [upload_id]
    stale = store.tmp / "upload-crashed"
    stale.write_bytes(b"left by a crashed request")
    fresh = store.tmp / "upload-in-flight"
    fresh.write_bytes(b"a request still running")
    later = utcnow() + 31 * DAY  # the upload has expired by then
    os.utime(stale, (later.timestamp() - 86400,) * 2)
    os.utime(fresh, (later.timestamp() - 60,) * 2)

    report = run_purge(app, later)
    assert (report.uploads_expired, report.staged) == (1, 1)
    assert list(store.list_partials()) == []
    assert session.scalar(select(Upload.state).where(Upload.id == upload_id)) == "expired"
    assert not stale.exists() and fresh.exists()


def _job(session: Session, project_id: int, created_days: float, finished_days: float | None) -> int:
    now = utcnow()
    job = FormConversionJob(
        project_id=project_id,
        state="queued" if finished_days is None else "done",
        filename="f.xlsx",
        created_by="manager",
        created_at=now - timedelta(days=created_days),
        finished_at=None if finished_days is None else now - timedelta(days=finished_days),
        timeout_seconds=60.0,
    )
    session.add(job)
    session.flush()
    return job.id


def test_old_conversion_jobs_are_purged(app: Flask, personas: Personas, session: Session) -> None:
    _job(session, personas.project_id, 40, 40)  # finished long ago
    _job(session, personas.project_id, 40, None)  # its process died before finishing it
    young = _job(session, personas.project_id, 40, 2)
    running = _job(session, personas.project_id, 0.5, None)
    session.commit()
    assert run_purge(app).conversion_jobs == 2
    assert sorted(session.scalars(select(FormConversionJob.id))) == sorted([young, running])
    app.config["JOB_RETENTION_DAYS"] = 1
    assert run_purge(app).conversion_jobs == 1  # the job finished 2 days ago; the one created 12 h ago runs


def test_delivered_webhooks_are_purged_with_their_events(app: Flask, personas: Personas, session: Session) -> None:
    now = utcnow()
    subscription = WebhookSubscription(
        project_id=personas.project_id, url="http://127.0.0.1:9/", events=["*"], secret="s" * 32, created_by="t"
    )
    events = {
        name: Event(
            project_id=personas.project_id,
            kind="submission.created",
            subject=name,
            payload={},
            created_at=now - 40 * DAY,
            fanned_out=True,
        )
        for name in ("delivered-old", "delivered-young", "pending", "dead", "unmatched")
    }
    session.add_all([subscription, *events.values()])
    session.flush()
    deliveries = {
        "delivered-old": WebhookDelivery(status="delivered", delivered_at=now - 31 * DAY),
        "delivered-young": WebhookDelivery(status="delivered", delivered_at=now - 2 * DAY),
        "pending": WebhookDelivery(status="pending"),
        "dead": WebhookDelivery(status="dead"),
    }
    for name, delivery in deliveries.items():
        delivery.subscription_id, delivery.event_id, delivery.give_up_at = subscription.id, events[name].id, now
        delivery.created_at = now - 40 * DAY
    session.add_all(deliveries.values())
    session.flush()
    session.add(
        WebhookAttempt(delivery_id=deliveries["delivered-old"].id, status_code=200, response_ms=3, dispatcher="d")
    )
    session.commit()
    report = run_purge(app, now)
    assert (report.webhook_deliveries, report.webhook_events) == (1, 2)  # delivered-old, then its event and unmatched
    assert sorted(session.scalars(select(Event.subject))) == ["dead", "delivered-young", "pending"]
    assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0
    app.config["WEBHOOK_RETENTION_DAYS"] = 1
    assert run_purge(app, now).webhook_deliveries == 1


def test_fieldsync_purge_reports_what_went(app: Flask) -> None:
    result = CliRunner().invoke(purge_command, obj=ScriptInfo(create_app=lambda: app))
    assert result.exit_code == 0, result.output
    assert "purged 0 submission(s), 0 blob(s)" in result.output


def test_the_scheduler_has_a_purge_job(app: Flask) -> None:
    from server.scheduler import build_scheduler

    assert "purge" in {job.id for job in build_scheduler(app).get_jobs()}


# --- R4: the race, on PostgreSQL -----------------------------------------------------------------


def _waiting_on_a_lock(engine: object, application_name: str) -> bool:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return bool(
            conn.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n AND wait_event_type = 'Lock'"),
                {"n": application_name},
            )
        )


def _wait_until_blocked(engine: object, name: str, thread: threading.Thread) -> None:
    for _ in range(500):
        if _waiting_on_a_lock(engine, name) or not thread.is_alive():
            return
        time.sleep(0.01)
    pytest.fail(f"{name} never waited on the lock")


@pytest.mark.postgres_only
@pytest.mark.skipif(not POSTGRES_URL, reason="the row-lock race needs two PostgreSQL connections")
@pytest.mark.parametrize("first", ["writer", "collector"], ids=["writer-first", "collector-first"])
def test_a_concurrent_upload_never_loses_its_blob(tmp_path: Path, first: str) -> None:
    from server.db.engine import make_engine, make_sessionmaker

    url, cleanup = fresh_database_url("postgresql", tmp_path)
    engines = {
        name: make_engine(url + ("&" if "?" in url else "?") + f"application_name={name}")
        for name in ("writer", "collector", "setup")
    }
    try:
        sessions = {name: make_sessionmaker(engine) for name, engine in engines.items()}
        store = BlobStore(tmp_path / "storage")
        content = b"a photo sent again after weeks"
        with sessions["setup"]() as setup:
            sha = store.put_bytes(setup, content)
            setup.commit()
            _age_blobs(setup, 3)
        now, cutoff = utcnow(), utcnow() - DAY

        def write(session: Session) -> None:
            staged = store.tmp / "staged"
            staged.write_bytes(content)
            store.adopt_file(session, staged, sha, len(content), "image/jpeg")

        writer, collector = sessions["writer"](), sessions["collector"]()
        if first == "writer":
            write(writer)  # the row is touched and locked, not committed yet
            thread = threading.Thread(target=retention.collect_blob, args=(collector, store, sha, cutoff, now))
            thread.start()
            _wait_until_blocked(engines["setup"], "collector", thread)
            writer.commit()
        else:
            collector.begin()
            assert retention.q.delete_garbage_blob(collector, sha, cutoff, now)
            store.delete(sha)  # the collector's transaction deleted the row and the bytes, not committed yet
            thread = threading.Thread(target=lambda: (write(writer), writer.commit()))
            thread.start()
            _wait_until_blocked(engines["setup"], "writer", thread)
            collector.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
        writer.close()
        collector.close()
        with sessions["setup"]() as check:
            assert check.scalar(select(Blob.size).where(Blob.sha256 == sha)) == len(content)
        assert store.path_for(sha).read_bytes() == content
    finally:
        for engine in engines.values():
            engine.dispose()
        cleanup()
