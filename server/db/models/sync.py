"""Tables of the sync area: entity lists, entities and their immutable ops, push batches, resumable
uploads, held (quarantined or refused) items, and the commit-ordered change log with its clock.

Entities are materialised from their ops by ``sync.entities.merge_entity_updates``; ``entities`` is a
cache of that pure function (invariant 7: rebuilding from ``entity_ops`` gives the same row).
``change_log.seq`` is allocated from the one ``sync_clock`` row as the last statement of every writing
transaction (see ``server.db.queries.sync``), so seq order is commit order on both stores.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class EntityList(Base):
    """An entity list of a project (declared by a form's ``entities`` sheet), with its properties."""

    __tablename__ = "entity_lists"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    properties: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Entity(Base):
    """The materialised state of one entity (a pure function of its ops)."""

    __tablename__ = "entities"
    __table_args__ = (
        UniqueConstraint("list_id", "entity_id"),
        CheckConstraint("conflict IN ('soft', 'hard')", name="conflict"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    list_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entity_lists.id", ondelete="CASCADE"), index=True)
    entity_id: Mapped[str] = mapped_column(String(200))
    label: Mapped[str | None] = mapped_column(Text)
    properties: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)
    rev: Mapped[str] = mapped_column(String(32), default="")
    conflict: Mapped[str | None] = mapped_column(String(10))
    conflict_fields: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EntityOpRow(Base):
    """One immutable update of an entity: its dot, the causal context it saw, the fields it sets."""

    __tablename__ = "entity_ops"
    __table_args__ = (
        UniqueConstraint("list_id", "op_id"),
        UniqueConstraint("list_id", "entity_id", "writer", "seq"),
        Index("ix_entity_ops_list_id_entity_id", "list_id", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    list_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entity_lists.id", ondelete="CASCADE"))
    entity_id: Mapped[str] = mapped_column(String(200))
    op_id: Mapped[str] = mapped_column(String(200))
    writer: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(BigInteger)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    fields: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    hlc: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(300), default="")
    unknown_base: Mapped[bool] = mapped_column(Boolean, default=False)
    fingerprint: Mapped[str] = mapped_column(String(64))
    submission_version_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EntityRevision(Base):
    """What version ``version`` (and rev ``rev``) of an entity had seen; immutable once written."""

    __tablename__ = "entity_revisions"
    __table_args__ = (
        UniqueConstraint("list_id", "entity_id", "version"),
        Index("ix_entity_revisions_list_id_entity_id_rev", "list_id", "entity_id", "rev"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    list_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entity_lists.id", ondelete="CASCADE"))
    entity_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    rev: Mapped[str] = mapped_column(String(32))
    seen: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class PushBatch(Base):
    """A push request under its ``Idempotency-Key``: body fingerprint, state and the exact response bytes."""

    __tablename__ = "push_batches"
    __table_args__ = (
        UniqueConstraint("project_id", "batch_key"),
        CheckConstraint("state IN ('in_progress', 'done')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"))
    batch_key: Mapped[str] = mapped_column(String(200))
    body_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="in_progress")
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    actor: Mapped[str] = mapped_column(String(200), default="")
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Upload(Base):
    """A tus resumable upload of one blob; the partial bytes live under ``<storage>/uploads/<id>``."""

    __tablename__ = "uploads"
    __table_args__ = (CheckConstraint("state IN ('open', 'done', 'failed', 'expired')", name="state"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(20), default="open")
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HeldItem(Base):
    """A pushed item kept raw: quarantined (usable later, releasable) or rejected (kept for review)."""

    __tablename__ = "held_items"
    __table_args__ = (
        UniqueConstraint("project_id", "fingerprint"),
        CheckConstraint("outcome IN ('quarantined', 'rejected')", name="outcome"),
        CheckConstraint("status IN ('open', 'released', 'discarded')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))  # submission | entity | unknown
    item_key: Mapped[str] = mapped_column(String(200), default="")
    raw: Mapped[Any] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="open")
    device_id: Mapped[str] = mapped_column(String(200), default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ChangeLogEntry(Base):
    """One change served by pull; ``seq`` is given at commit time from ``sync_clock`` (commit order)."""

    __tablename__ = "change_log"
    __table_args__ = (
        UniqueConstraint("seq"),
        Index("ix_change_log_project_id_seq", "project_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"))
    collection: Mapped[str] = mapped_column(String(50))
    key: Mapped[str] = mapped_column(String(300))
    op: Mapped[str] = mapped_column(String(20))
    data: Mapped[Any] = mapped_column(JSONType)
    audience: Mapped[str | None] = mapped_column(String(200))  # an actor for device outcomes, else everyone


class SyncClock(Base):
    """The single row whose update, last in each writing transaction, orders change-log seqs by commit."""

    __tablename__ = "sync_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
