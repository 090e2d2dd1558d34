"""Queries of retention (``fieldsync purge``): old soft-deleted submissions, unreferenced blobs, finished uploads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from server.db.models import Blob
from server.db.models.forms import FormAttachment, FormConversionJob
from server.db.models.submissions import Submission, SubmissionAttachment
from server.db.models.sync import Upload
from server.db.models.webhooks import Event, WebhookDelivery


def purge_deleted_submissions(
    session: Session, cutoff: datetime, limit: int
) -> Sequence[Row[tuple[int, int, str, str | None, datetime]]]:
    """Delete (compare-and-set: still deleted, before ``cutoff``) up to ``limit`` soft-deleted submissions.

    Returns (id, project_id, instance_id, deleted_by, deleted_at) of each deleted row; versions and their
    attachments go with them (ON DELETE CASCADE). A submission restored meanwhile is not touched.
    """
    ids = select(Submission.id).where(Submission.deleted_at < cutoff).order_by(Submission.id).limit(limit)
    stmt = (
        delete(Submission)
        .where(Submission.id.in_(ids.scalar_subquery()), Submission.deleted_at < cutoff)
        .returning(
            Submission.id, Submission.project_id, Submission.instance_id, Submission.deleted_by, Submission.deleted_at
        )
    )
    return session.execute(stmt, execution_options={"synchronize_session": False}).all()


def _unreferenced(sha: object, now: datetime) -> list[object]:
    """Conditions true of a blob no row needs (``sha``: the blob's sha256 column or value)."""
    return [
        ~exists().where(SubmissionAttachment.blob_sha256 == sha),
        ~exists().where(SubmissionAttachment.declared_sha256 == sha),  # a pushed submission awaits it
        ~exists().where(FormAttachment.blob_sha256 == sha),
        # A tus upload of it, finished or not, until the upload expires: its submission may come later.
        ~exists().where(Upload.sha256 == sha, Upload.state.in_(("open", "done")), Upload.expires_at > now),
    ]


def garbage_blob_candidates(session: Session, cutoff: datetime, now: datetime, limit: int) -> list[str]:
    """Up to ``limit`` unreferenced blobs last written or touched before ``cutoff``."""
    stmt = (
        select(Blob.sha256)
        .where(func.coalesce(Blob.touched_at, Blob.created_at) < cutoff, *_unreferenced(Blob.sha256, now))
        .order_by(Blob.sha256)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def delete_garbage_blob(session: Session, sha256: str, cutoff: datetime, now: datetime) -> bool:
    """Delete the row of ``sha256`` if it is still unreferenced and untouched since ``cutoff``.

    The DELETE waits on a writer's row lock (``record_blob``) and then re-checks ``touched_at`` on the
    row as that writer left it: a blob a concurrent upload reached for is kept.
    """
    stmt = (
        delete(Blob)
        .where(
            Blob.sha256 == sha256,
            func.coalesce(Blob.touched_at, Blob.created_at) < cutoff,
            *_unreferenced(Blob.sha256, now),
        )
        .returning(Blob.sha256)
    )
    return session.execute(stmt, execution_options={"synchronize_session": False}).first() is not None


def known_blobs(session: Session, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` have a row."""
    if not hashes:
        return set()
    return set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(list(hashes)))))


def finished_uploads(session: Session, upload_ids: Sequence[str]) -> set[str]:
    """Which of ``upload_ids`` are done, failed or expired (their partial bytes are no longer needed)."""
    if not upload_ids:
        return set()
    stmt = select(Upload.id).where(Upload.id.in_(list(upload_ids)), Upload.state.in_(("done", "failed", "expired")))
    return set(session.scalars(stmt))


def purge_conversion_jobs(session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` conversion jobs that finished before ``cutoff`` (or never did, created before it)."""
    old = or_(
        FormConversionJob.finished_at < cutoff,
        and_(FormConversionJob.finished_at.is_(None), FormConversionJob.created_at < cutoff),
    )
    ids = select(FormConversionJob.id).where(old).order_by(FormConversionJob.id).limit(limit).scalar_subquery()
    stmt = delete(FormConversionJob).where(FormConversionJob.id.in_(ids), old)
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False}))


def purge_delivered_webhooks(session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` deliveries delivered before ``cutoff`` (their attempts go with them)."""
    old = and_(WebhookDelivery.status == "delivered", WebhookDelivery.delivered_at < cutoff)
    ids = select(WebhookDelivery.id).where(old).order_by(WebhookDelivery.id).limit(limit).scalar_subquery()
    stmt = delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids), old)
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False}))


def purge_spent_events(session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` outbox events fanned out before ``cutoff`` that no delivery needs any more.

    A pending or dead delivery keeps its event (it is still sent, or may be replayed).
    """
    spent = and_(
        Event.fanned_out.is_(True),
        Event.created_at < cutoff,
        ~exists().where(WebhookDelivery.event_id == Event.id),
    )
    ids = select(Event.id).where(spent).order_by(Event.id).limit(limit).scalar_subquery()
    stmt = delete(Event).where(Event.id.in_(ids), spent)
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False}))


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
