"""Queries of office relays (both sides): credentials, their projects, relayed submissions, the office's
links, outbox and uploads. The session comes first; nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.db.models.relays import Relay, RelayedSubmission, RelayLink, RelayOutboxRow, RelayProject, RelayUpload
from server.db.models.submissions import SubmissionAttachment, SubmissionVersion
from server.db.models.sync import EntityList, EntityOpRow
from server.db.upsert import insert_ignore

_OUTBOX = cast(Table, RelayOutboxRow.__table__)
_VERSIONS = cast(Table, SubmissionVersion.__table__)
_LINKS = cast(Table, RelayLink.__table__)
_ATTACHMENTS = cast(Table, SubmissionAttachment.__table__)
_OPS = cast(Table, EntityOpRow.__table__)
_LISTS = cast(Table, EntityList.__table__)


def get_relay_by_hash(session: Session, token_hash: str) -> Relay | None:
    """The relay whose token has this sha256."""
    return session.scalars(select(Relay).where(Relay.token_hash == token_hash)).first()


def touch_relay(session: Session, relay_id: int, now: datetime, older_than: datetime) -> bool:
    """Set a relay's ``last_used_at`` to ``now`` unless it is already later than ``older_than``."""
    result = session.execute(
        update(Relay)
        .where(Relay.id == relay_id, or_(Relay.last_used_at.is_(None), Relay.last_used_at < older_than))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def relay_project_ids(session: Session, relay_id: int) -> tuple[int, ...]:
    """The projects a relay was issued for, in id order."""
    rows = session.scalars(
        select(RelayProject.project_id).where(RelayProject.relay_id == relay_id).order_by(RelayProject.project_id)
    )
    return tuple(rows)


def list_relays(session: Session) -> Sequence[tuple[Relay, tuple[int, ...]]]:
    """Every relay with its projects, by name."""
    relays = session.scalars(select(Relay).order_by(Relay.name)).all()
    return [(relay, relay_project_ids(session, relay.id)) for relay in relays]


def get_relay_by_name(session: Session, name: str) -> Relay | None:
    """The relay called ``name``."""
    return session.scalars(select(Relay).where(Relay.name == name)).first()


def record_relayed(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Note which relay carried each submission instance (the first relay to carry it stays)."""
    for row in rows:
        insert_ignore(
            session,
            cast(Table, RelayedSubmission.__table__),
            row,
            ["project_id", "xml_form_id", "instance_id"],
        )


# ---------------------------------------------------------------------------------------------------
# Office side

REFUSED_STATUSES = ("rejected", "quarantined")  # the upstream kept the item aside (held), not stored


def enqueue_version(session: Session, project_id: int, version_id: int, now: datetime) -> None:
    """Add a stored submission version to the relay outbox, if its project is relayed (one statement)."""
    relayed = select(_LINKS.c.project_id).where(_LINKS.c.project_id == project_id).exists()
    source = select(
        _VERSIONS.c.project_id,
        _VERSIONS.c.id,
        literal("submission", _OUTBOX.c.kind.type),
        literal(now, _OUTBOX.c.created_at.type),
    ).where(_VERSIONS.c.id == version_id, relayed)
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = (
        module.insert(_OUTBOX)
        .from_select(["project_id", "version_id", "kind", "created_at"], source)
        .on_conflict_do_nothing(index_elements=["version_id"])
    )
    session.execute(stmt)


def backfill_outbox(session: Session, project_id: int, now: datetime) -> int:
    """Enqueue every version of a relayed project that has no outbox row yet (stored before the link)."""
    missing = select(_OUTBOX.c.id).where(_OUTBOX.c.version_id == _VERSIONS.c.id).exists()
    ids = session.scalars(
        select(_VERSIONS.c.id).where(_VERSIONS.c.project_id == project_id, ~missing).order_by(_VERSIONS.c.id)
    ).all()
    for version_id in ids:
        insert_ignore(
            session,
            _OUTBOX,
            {"project_id": project_id, "version_id": version_id, "kind": "submission", "created_at": now},
            ["version_id"],
        )
    return len(ids)


def backfill_entity_outbox(session: Session, project_id: int, now: datetime) -> int:
    """Enqueue every entity op a device pushed to the office as a JSON item that has no outbox row yet.

    Those are the ops of no submission (a submission's ops go up inside it), written by no reviewer
    (``srv:`` writers, not relayed yet) and not brought down from the upstream (actor ``relay``). Ops are
    immutable and never deleted, so an op stored by a push that crashed before this runs is found later.
    """
    queued = select(_OUTBOX.c.id).where(_OUTBOX.c.entity_op_id == _OPS.c.id).exists()
    ids = session.scalars(
        select(_OPS.c.id)
        .join(_LISTS, _LISTS.c.id == _OPS.c.list_id)
        .where(
            _LISTS.c.project_id == project_id,
            _OPS.c.submission_version_id.is_(None),
            _OPS.c.actor != "relay",
            ~_OPS.c.writer.startswith("srv:"),
            ~queued,
        )
        .order_by(_OPS.c.id)
    ).all()
    for op_row_id in ids:
        insert_ignore(
            session,
            _OUTBOX,
            {"project_id": project_id, "entity_op_id": op_row_id, "kind": "entity", "created_at": now},
            ["entity_op_id"],
        )
    return len(ids)


def get_link(session: Session, project_id: int) -> RelayLink | None:
    """The relay link of a local project."""
    return session.get(RelayLink, project_id)


def list_links(session: Session) -> Sequence[RelayLink]:
    """Every relayed local project."""
    return session.scalars(select(RelayLink).order_by(RelayLink.project_id)).all()


def pending_count(session: Session, project_id: int | None = None) -> int:
    """Outbox rows not yet answered by the upstream server."""
    stmt = select(func.count()).select_from(_OUTBOX).where(_OUTBOX.c.sent_at.is_(None))
    if project_id is not None:
        stmt = stmt.where(_OUTBOX.c.project_id == project_id)
    return int(session.execute(stmt).scalar_one())


def refused_counts(session: Session, project_id: int) -> dict[str, int]:
    """How many sent rows the upstream answered ``rejected`` or ``quarantined``, by that status."""
    rows = session.execute(
        select(_OUTBOX.c.status, func.count())
        .where(_OUTBOX.c.project_id == project_id, _OUTBOX.c.status.in_(REFUSED_STATUSES))
        .group_by(_OUTBOX.c.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


def open_batch_keys(session: Session, project_id: int) -> list[str]:
    """Batch keys given to rows but not answered yet (sent, maybe, before a crash), oldest first."""
    rows = session.execute(
        select(_OUTBOX.c.batch_key, func.min(_OUTBOX.c.id))
        .where(_OUTBOX.c.project_id == project_id, _OUTBOX.c.sent_at.is_(None), _OUTBOX.c.batch_key.is_not(None))
        .group_by(_OUTBOX.c.batch_key)
        .order_by(func.min(_OUTBOX.c.id))
    ).all()
    return [str(row[0]) for row in rows]


def unbatched(session: Session, project_id: int, limit: int) -> list[tuple[int, int | None, int | None]]:
    """(outbox id, version id, entity op id) of rows without a batch yet, oldest first."""
    # A version still waiting for some of its files (Collect's split POSTs) waits here too: it goes up
    # once complete, so its photos are declared in the same item.
    lacking = (
        select(_ATTACHMENTS.c.id)
        .where(_ATTACHMENTS.c.version_id == _OUTBOX.c.version_id, _ATTACHMENTS.c.blob_sha256.is_(None))
        .exists()
    )
    rows = session.execute(
        select(_OUTBOX.c.id, _OUTBOX.c.version_id, _OUTBOX.c.entity_op_id)
        .where(
            _OUTBOX.c.project_id == project_id,
            _OUTBOX.c.sent_at.is_(None),
            _OUTBOX.c.batch_key.is_(None),
            ~lacking,
        )
        .order_by(_OUTBOX.c.id)
        .limit(limit)
    ).all()
    return [(int(r[0]), _int(r[1]), _int(r[2])) for r in rows]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def assign_batch(session: Session, outbox_ids: Sequence[int], key: str) -> int:
    """Give rows a batch key (compare-and-set: only rows still without one)."""
    result = session.execute(
        update(_OUTBOX).where(_OUTBOX.c.id.in_(list(outbox_ids)), _OUTBOX.c.batch_key.is_(None)).values(batch_key=key)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def batch_rows(session: Session, key: str) -> list[tuple[int, int | None, int | None]]:
    """(outbox id, version id, entity op id) of a batch, in id order (a resend builds the same body)."""
    rows = session.execute(
        select(_OUTBOX.c.id, _OUTBOX.c.version_id, _OUTBOX.c.entity_op_id)
        .where(_OUTBOX.c.batch_key == key)
        .order_by(_OUTBOX.c.id)
    ).all()
    return [(int(r[0]), _int(r[1]), _int(r[2])) for r in rows]


def mark_sent(session: Session, outbox_id: int, status: str, now: datetime) -> None:
    """Record the upstream's answer to one row."""
    session.execute(update(_OUTBOX).where(_OUTBOX.c.id == outbox_id).values(sent_at=now, status=status[:30]))


def get_upload(session: Session, project_id: int, sha256: str) -> RelayUpload | None:
    """The upstream upload of a blob, if one was started."""
    return session.get(RelayUpload, (project_id, sha256))
