"""Retention (``fieldsync purge`` and the scheduler's purge job): what is kept, and for how long.

- Soft-deleted submissions are purged ``PURGE_AFTER_DAYS`` (30, as ODK Central) after their deletion,
  with their versions and attachment rows; each purge is audited (``submission.purge``). A deletion
  is compare-and-set on ``deleted_at``, so a submission restored meanwhile stays.
- A blob is garbage once no row needs it (submission or form attachment, a pushed submission
  awaiting it, a live tus upload of it) and nobody has written or touched it for ``BLOB_GRACE_HOURS``.
  Its row and bytes are deleted in one transaction that holds the row's lock; a writer storing the same
  content takes that lock first (``server/blobstore.py:record_blob``), so a blob a concurrent upload is
  about to reference is either kept (the writer touched it first) or written anew by that writer.
- Bytes with no row at all (a writer rolled back after placing them) go after the grace period too,
  under a placeholder row so that a writer of the same content waits for the collector.
- Conversion jobs (``form_conversion_jobs``) are deleted ``JOB_RETENTION_DAYS`` after they finished
  (or were created, for one whose process died); a poll of such a job then answers 404.
- Webhook deliveries are deleted ``WEBHOOK_RETENTION_DAYS`` after they were delivered (with their
  attempts), then the outbox events no delivery needs any more; pending and dead deliveries stay.
- Expired tus uploads are marked and their partial bytes deleted; partial bytes of finished uploads
  and local staging files older than ``STAGING_MAX_AGE`` (a request that crashed) are removed.

Every step is idempotent and safe to run in several processes at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from server.blobstore import BlobStore
from server.db.models import Blob
from server.db.queries import audit
from server.db.queries import retention as q
from server.db.transaction import transaction
from server.db.upsert import insert_ignore
from server.services import uploads

log = logging.getLogger("fieldsync.retention")

BATCH = 500
STAGING_MAX_AGE = timedelta(hours=6)  # a staging file lives for one request
PURGE_ACTOR = "system:purge"


@dataclass(frozen=True)
class PurgeReport:
    """What one purge removed."""

    submissions: int
    blobs: int
    orphan_files: int
    uploads_expired: int
    partials: int
    staged: int
    conversion_jobs: int = 0
    webhook_deliveries: int = 0
    webhook_events: int = 0


def purge_deleted_submissions(session: Session, now: datetime, older_than: timedelta) -> int:
    """Purge submissions soft-deleted before ``now - older_than``; audit each; return how many."""
    cutoff = now - older_than
    total = 0
    while True:
        with transaction(session):
            rows = q.purge_deleted_submissions(session, cutoff, BATCH)
            for row in rows:
                audit.record(
                    session,
                    PURGE_ACTOR,
                    "submission.purge",
                    row.project_id,
                    f"submission:{row.id}",
                    {
                        "instance_id": row.instance_id,
                        "deleted_by": row.deleted_by,
                        "deleted_at": row.deleted_at.isoformat(),
                    },
                )
        total += len(rows)
        if len(rows) < BATCH:
            return total


def _in_batches(session: Session, step: Callable[[Session, datetime, int], int], cutoff: datetime) -> int:
    total = 0
    while True:
        with transaction(session):
            count = step(session, cutoff, BATCH)
        total += count
        if count < BATCH:
            return total


def purge_conversion_jobs(session: Session, now: datetime, older_than: timedelta) -> int:
    """Delete conversion jobs finished (or started and abandoned) before ``now - older_than``; return how many."""
    return _in_batches(session, q.purge_conversion_jobs, now - older_than)


def purge_webhook_history(session: Session, now: datetime, older_than: timedelta) -> tuple[int, int]:
    """Delete deliveries delivered before ``now - older_than``, then the events left unneeded; return both counts."""
    cutoff = now - older_than
    deliveries = _in_batches(session, q.purge_delivered_webhooks, cutoff)
    return deliveries, _in_batches(session, q.purge_spent_events, cutoff)


def collect_blob(session: Session, store: BlobStore, sha256: str, cutoff: datetime, now: datetime) -> bool:
    """Delete one garbage blob (row, then bytes, in one transaction); False when it is needed after all."""
    with transaction(session):
        try:
            with session.begin_nested():
                deleted = q.delete_garbage_blob(session, sha256, cutoff, now)
        except IntegrityError:
            # A reference committed between the candidate read and this DELETE (its foreign key holds).
            return False
        if deleted:
            store.delete(sha256)  # inside the transaction: a writer waiting on the row lock rewrites the bytes
    return deleted


def collect_blobs(session: Session, store: BlobStore, now: datetime, grace: timedelta) -> int:
    """Delete every unreferenced blob untouched for ``grace``; return how many."""
    cutoff = now - grace
    total = 0
    while True:
        with transaction(session):
            candidates = q.garbage_blob_candidates(session, cutoff, now, BATCH)
        total += sum(collect_blob(session, store, sha, cutoff, now) for sha in candidates)
        if len(candidates) < BATCH:
            return total


def collect_orphan_files(session: Session, store: BlobStore, now: datetime, grace: timedelta) -> int:
    """Delete stored bytes that have no row and are older than ``grace``; return how many."""
    cutoff = now - grace
    old = [b.sha256 for b in store.list_blobs() if b.modified_at < cutoff]
    total = 0
    for start in range(0, len(old), BATCH):
        batch = old[start : start + BATCH]
        with transaction(session):
            known = q.known_blobs(session, batch)
        for sha in (s for s in batch if s not in known):
            with transaction(session):
                # A placeholder row: a writer of the same content waits on it, then writes row and bytes anew.
                if not insert_ignore(session, Blob.__table__, {"sha256": sha, "size": 0}, ["sha256"]):
                    continue  # a writer recorded it meanwhile
                store.delete(sha)
                session.execute(delete(Blob).where(Blob.sha256 == sha))
            total += 1
    return total


def remove_finished_partials(session: Session, store: BlobStore) -> int:
    """Delete the partial bytes of uploads that are done, failed or expired; return how many."""
    ids = list(store.list_partials())
    with transaction(session):
        finished = q.finished_uploads(session, ids)
    for upload_id in finished:
        store.delete_partial(upload_id)
    return len(finished)


def remove_stale_staging(store: BlobStore, now: datetime) -> int:
    """Delete this host's staging files older than ``STAGING_MAX_AGE``; return how many."""
    count = 0
    for path, modified_at in list(store.list_staged()):
        if modified_at < now - STAGING_MAX_AGE and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                count += 1
    return count


def purge(
    sessions: sessionmaker[Session],
    store: BlobStore,
    storage_dir: Path,
    now: datetime,
    *,
    purge_after: timedelta,
    grace: timedelta,
    jobs_after: timedelta = timedelta(days=30),
    webhooks_after: timedelta = timedelta(days=30),
) -> PurgeReport:
    """Run every retention step once and say what went."""
    expired = uploads.expire_uploads(sessions, storage_dir, now)
    session = sessions()
    try:
        # Jobs first: a job row no longer there lets the blob collector below take its upload's bytes.
        jobs = purge_conversion_jobs(session, now, jobs_after)
        deliveries, events = purge_webhook_history(session, now, webhooks_after)
        report = PurgeReport(
            submissions=purge_deleted_submissions(session, now, purge_after),
            blobs=collect_blobs(session, store, now, grace),
            orphan_files=collect_orphan_files(session, store, now, grace),
            uploads_expired=expired,
            partials=remove_finished_partials(session, store),
            staged=remove_stale_staging(store, now),
            conversion_jobs=jobs,
            webhook_deliveries=deliveries,
            webhook_events=events,
        )
    finally:
        session.close()
    log.info("purge: %s", report)
    return report
