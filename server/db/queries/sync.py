"""Queries of the sync area: push batches, held items, uploads, blobs and the commit-ordered change log.

Change log in commit order (SYNC.md "Pull", research §8.9). Writers append rows with ``seq`` NULL
(:func:`log_change`); just before the *outermost* transaction commits, a
``before_commit`` hook bumps ``sync_clock`` by the number of this transaction's unnumbered rows and
numbers them in id order, in ONE statement on PostgreSQL (a data-modifying CTE; two on SQLite). That
statement is the last of the transaction and the clock row's lock is held until commit, so on
PostgreSQL the next writer gets higher seqs only after this one committed: **seq order is commit
order**, and a pull reading ``seq > cursor`` can never skip a row that commits later with a lower seq.
SQLite has one writer (``BEGIN IMMEDIATE``), so the same code is trivially in commit order there.
Releasing a SAVEPOINT also fires ``before_commit``; the hook ignores it, so the clock row is locked
only for the instant before the real COMMIT (concurrent pushes do not queue behind a whole batch).
Rows written inside a savepoint that rolls back vanish with it, so only surviving rows are numbered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, event, func, insert, inspect, or_, select, text, update
from sqlalchemy.orm import Session

from server.db.advisory import STORE_SALT_SQL
from server.db.models.sync import ChangeLogEntry, HeldItem, PushBatch, SyncClock, Upload
from server.db.queries.blobs import project_blobs
from server.db.upsert import insert_ignore

_PENDING = "fieldsync.change_log_pending"


# ---------------------------------------------------------------------------------------------------
# Change log


def log_change(
    session: Session,
    project_id: int,
    collection: str,
    key: str,
    op: str,
    data: Any,
    audience: str | None = None,
) -> None:
    """Append a change for pull; its seq is allocated in commit order when the transaction commits."""
    session.add(
        ChangeLogEntry(project_id=project_id, collection=collection, key=key, op=op, data=data, audience=audience)
    )
    session.info[_PENDING] = True


def log_change_numbered(
    session: Session,
    project_id: int,
    collection: str,
    key: str,
    op: str,
    data: Any,
    audience: str | None = None,
) -> None:
    """Append a change with its seq taken now (arguments as :func:`log_change`): the transaction's LAST change.

    Bumping the clock locks its row until commit, exactly as the commit-time numbering does, so seq
    order stays commit order, and the row is written once instead of inserted and then numbered.
    Rows logged unnumbered in the same transaction are still numbered at commit, after this one.
    """
    seq = session.execute(
        update(SyncClock).where(SyncClock.id == 1).values(seq=SyncClock.seq + 1).returning(SyncClock.seq)
    ).scalar_one()
    session.execute(
        insert(cast(Table, ChangeLogEntry.__table__)).values(
            seq=seq, project_id=project_id, collection=collection, key=key, op=op, data=data, audience=audience
        )
    )


# PostgreSQL: count, bump the clock and number the rows in one round trip. It runs right before
# COMMIT; the clock row is otherwise locked only by ``log_change_numbered``, also a last write.
_NUMBER_PG = text(
    """
    WITH pending AS (
        SELECT id, row_number() OVER (ORDER BY id) AS rn, count(*) OVER () AS n
        FROM change_log WHERE seq IS NULL
    ),
    clock AS (
        UPDATE sync_clock SET seq = seq + (SELECT count(*) FROM pending) WHERE id = 1 RETURNING seq
    )
    UPDATE change_log SET seq = clock.seq - pending.n + pending.rn
    FROM pending, clock
    WHERE change_log.id = pending.id
    """
)
_NUMBER_SQLITE = text(
    """
    UPDATE change_log SET seq = :first - 1 + pending.rn
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM change_log WHERE seq IS NULL) AS pending
    WHERE change_log.id = pending.id
    """
)


def _number_pending_changes(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT release: number once, at the outermost commit (keep the pending flag)
    if not session.info.pop(_PENDING, False):
        return
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NUMBER_PG)
        return
    count = session.execute(select(func.count(ChangeLogEntry.id)).where(ChangeLogEntry.seq.is_(None))).scalar_one()
    if not count:
        return
    top = session.execute(
        update(SyncClock).where(SyncClock.id == 1).values(seq=SyncClock.seq + count).returning(SyncClock.seq)
    ).scalar_one()
    session.execute(_NUMBER_SQLITE, {"first": top - count + 1})


def _log_publications(session: Session, _context: Any, _instances: Any) -> None:
    """A form version becoming published is a pull change, and declares its entity lists.

    Done at flush so that every way the forms area publishes is seen, in the publishing transaction.
    """
    from server.db.models.forms import Form, FormVersion

    for obj in [*session.new, *session.dirty]:
        if not isinstance(obj, FormVersion) or obj.status != "published":
            continue
        if obj not in session.new and not inspect(obj).attrs.status.history.has_changes():
            continue
        with session.no_autoflush:
            form = session.get(Form, obj.form_id)
            if form is None:
                continue
            log_change(
                session,
                form.project_id,
                "form_version",
                f"{form.xml_form_id}@{obj.version}",
                "upsert",
                {
                    "form_id": form.xml_form_id,
                    "version": obj.version,
                    "hash": f"md5:{obj.xform_md5}",
                    "sha256": obj.xform_sha256,
                },
            )
            _declare_lists(session, form.project_id, obj.schema_json)


def _declare_lists(session: Session, project_id: int, schema_json: Any) -> None:
    from forms.schema import FormSchema
    from server.db.queries.entities import ensure_list

    try:
        schema = FormSchema.from_json(schema_json or {})
    except (KeyError, TypeError, ValueError):
        return  # a schema the forms area could not describe declares nothing
    for declaration in schema.entities:
        ensure_list(session, project_id, declaration.list_name, list(declaration.properties))


def install_change_log_clock() -> None:
    """Number pending change-log rows as the last statement of every committing session, and log
    form publications (idempotent)."""
    if not event.contains(Session, "before_commit", _number_pending_changes):
        event.listen(Session, "before_commit", _number_pending_changes)
    if not event.contains(Session, "before_flush", _log_publications):
        event.listen(Session, "before_flush", _log_publications)


def changes_since(
    session: Session, project_id: int, after_seq: int, audience: str, limit: int
) -> Sequence[ChangeLogEntry]:
    """Committed changes of a project after ``after_seq`` visible to ``audience``, in seq order."""
    stmt = (
        select(ChangeLogEntry)
        .where(
            ChangeLogEntry.project_id == project_id,
            ChangeLogEntry.seq > after_seq,
            or_(ChangeLogEntry.audience.is_(None), ChangeLogEntry.audience == audience),
        )
        .order_by(ChangeLogEntry.seq)
        .limit(limit)
    )
    return session.scalars(stmt).all()


def clock_now(session: Session) -> int:
    """The highest seq handed out so far."""
    return int(session.execute(select(SyncClock.seq).where(SyncClock.id == 1)).scalar_one())


# ---------------------------------------------------------------------------------------------------
# Push batches


def claim_batch(session: Session, project_id: int, key: str, body_sha256: str, actor: str, now: datetime) -> bool:
    """Insert the batch row as in progress; False when a row with this key already exists."""
    inserted = insert_ignore(
        session,
        cast(Table, PushBatch.__table__),
        {
            "project_id": project_id,
            "batch_key": key,
            "body_sha256": body_sha256,
            "state": "in_progress",
            "actor": actor,
            "claimed_at": now,
            "created_at": now,
        },
        ["project_id", "batch_key"],
        returning="id",
    )
    return inserted is not None


def get_batch(session: Session, project_id: int, key: str) -> PushBatch | None:
    """The stored batch under a key."""
    return session.scalars(
        select(PushBatch).where(PushBatch.project_id == project_id, PushBatch.batch_key == key)
    ).one_or_none()


def take_over_stale_batch(session: Session, batch_id: int, stale_before: datetime, now: datetime) -> bool:
    """Compare-and-set: re-claim an in-progress batch whose worker died (claimed before ``stale_before``)."""
    result = session.execute(
        update(PushBatch)
        .where(PushBatch.id == batch_id, PushBatch.state == "in_progress", PushBatch.claimed_at < stale_before)
        .values(claimed_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_batch(session: Session, project_id: int, key: str, response: bytes) -> None:
    """Store the response bytes of a processed batch (replays return them verbatim)."""
    session.execute(
        update(PushBatch)
        .where(PushBatch.project_id == project_id, PushBatch.batch_key == key)
        .values(state="done", response=response)
    )


def release_batch(session: Session, project_id: int, key: str) -> None:
    """Forget an in-progress batch whose processing failed, so that a retry processes it again."""
    session.execute(
        cast(Table, PushBatch.__table__)
        .delete()
        .where(PushBatch.project_id == project_id, PushBatch.batch_key == key, PushBatch.state == "in_progress")
    )


# ---------------------------------------------------------------------------------------------------
# Held items (quarantined or refused payloads)


def hold_item(session: Session, values: dict[str, Any]) -> None:
    """Keep a raw item once per (project, fingerprint): a resent held item is not stored twice."""
    insert_ignore(session, cast(Table, HeldItem.__table__), values, ["project_id", "fingerprint"])


def get_held_item(session: Session, project_id: int, item_id: int) -> HeldItem | None:
    """One held item of a project."""
    row = session.get(HeldItem, item_id)
    return row if row is not None and row.project_id == project_id else None


def list_held_items(
    session: Session, project_id: int, status: str | None, outcome: str | None, limit: int, after_id: int
) -> Sequence[HeldItem]:
    """Held items of a project, oldest first, optionally filtered."""
    stmt = select(HeldItem).where(HeldItem.project_id == project_id, HeldItem.id > after_id)
    if status is not None:
        stmt = stmt.where(HeldItem.status == status)
    if outcome is not None:
        stmt = stmt.where(HeldItem.outcome == outcome)
    return session.scalars(stmt.order_by(HeldItem.id).limit(limit)).all()


def count_held_items(session: Session, project_id: int, status: str | None, outcome: str | None) -> int:
    """How many held items of a project the filters keep."""
    stmt = select(func.count()).select_from(HeldItem).where(HeldItem.project_id == project_id)
    if status is not None:
        stmt = stmt.where(HeldItem.status == status)
    if outcome is not None:
        stmt = stmt.where(HeldItem.outcome == outcome)
    return int(session.scalar(stmt) or 0)


# ---------------------------------------------------------------------------------------------------
# Blobs and uploads


def present_blobs(session: Session, project_id: int, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` the project delivered (another project's blob counts as missing)."""
    return project_blobs(session, project_id, hashes)


def get_upload(session: Session, upload_id: str) -> Upload | None:
    """One upload by id."""
    return session.get(Upload, upload_id)


def extend_upload(session: Session, upload_id: str, start: int, end: int) -> bool:
    """Move an open upload's offset forward to ``end`` for bytes written contiguously from ``start``.

    Applies when the offset is within ``[start, end)``: everything before the offset is on disk and so
    is ``[start, end)``, hence all of ``[0, end)``. False when another writer is at ``end`` or beyond.
    """
    result = session.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.state == "open", Upload.offset >= start, Upload.offset < end)
        .values(offset=end)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_upload_state(
    session: Session, upload_id: str, state: str, *, from_state: str = "open", completed_at: datetime | None = None
) -> bool:
    """Compare-and-set an upload's state."""
    result = session.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.state == from_state)
        .values(state=state, completed_at=completed_at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def expired_uploads(session: Session, now: datetime, limit: int = 500) -> Sequence[Upload]:
    """Open uploads past their expiry."""
    return session.scalars(
        select(Upload).where(Upload.state == "open", Upload.expires_at < now).order_by(Upload.expires_at).limit(limit)
    ).all()


_LOCK_ONE = text(f"SELECT pg_advisory_xact_lock(CAST(:k AS bigint) # {STORE_SALT_SQL})")


def lock_keys(session: Session, keys: Iterable[str]) -> None:
    """Take transaction-scoped advisory locks on ``keys`` in sorted order (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    import hashlib

    for key in sorted(set(keys)):
        number = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big", signed=True)
        session.execute(_LOCK_ONE, {"k": number})


# Every session of the app numbers its pending change-log rows at commit (see the module docstring).
install_change_log_clock()
