"""Queries of entity lists, entities, their immutable ops and their served revisions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.sync import Entity, EntityList, EntityOpRow, EntityRevision
from server.db.upsert import insert_ignore
from sync.entities import CausalContext, Dot, EntityOp


def get_list(session: Session, project_id: int, name: str) -> EntityList | None:
    """An entity list of a project by name."""
    return session.scalars(
        select(EntityList).where(EntityList.project_id == project_id, EntityList.name == name)
    ).one_or_none()


def ensure_list(session: Session, project_id: int, name: str, properties: Sequence[str]) -> EntityList:
    """Create the list if needed (race-free) and add any newly declared properties."""
    insert_ignore(
        session,
        cast(Table, EntityList.__table__),
        {"project_id": project_id, "name": name, "properties": sorted(set(properties)), "created_at": utcnow()},
        ["project_id", "name"],
    )
    row = get_list(session, project_id, name)
    assert row is not None  # inserted above or by a concurrent transaction
    merged = sorted(set(row.properties) | set(properties))
    if merged != list(row.properties):
        row.properties = merged
    return row


def lists_of_project(session: Session, project_id: int) -> Sequence[EntityList]:
    """Every entity list of a project."""
    return session.scalars(
        select(EntityList).where(EntityList.project_id == project_id).order_by(EntityList.name)
    ).all()


def get_entity(session: Session, list_id: int, entity_id: str) -> Entity | None:
    """The materialised row of one entity."""
    return session.scalars(select(Entity).where(Entity.list_id == list_id, Entity.entity_id == entity_id)).one_or_none()


def entities_of_list(
    session: Session,
    list_id: int,
    conflict: str | None = None,
    limit: int = 1000,
    after: str = "",
    *,
    deleted: bool | None = None,
) -> Sequence[Entity]:
    """Entities of a list by id (keyset-paginated), optionally only a conflict kind or a deleted state."""
    stmt = select(Entity).where(Entity.list_id == list_id, Entity.entity_id > after, Entity.version > 0)
    if deleted is not None:
        stmt = stmt.where(Entity.deleted == deleted)
    if conflict is not None:
        stmt = stmt.where(Entity.conflict == conflict)
    return session.scalars(stmt.order_by(Entity.entity_id).limit(limit)).all()


def conflicted_entities(
    session: Session, project_id: int, deleted: bool = False, limit: int = 1000
) -> Sequence[tuple[Entity, str]]:
    """Live (or deleted) entities of a project with a conflict, with their list name (hard first)."""
    stmt = (
        select(Entity, EntityList.name)
        .join(EntityList, EntityList.id == Entity.list_id)
        .where(EntityList.project_id == project_id, Entity.conflict.is_not(None), Entity.deleted == deleted)
        .order_by(Entity.conflict, EntityList.name, Entity.entity_id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in session.execute(stmt).all()]


def op_from_row(row: EntityOpRow) -> EntityOp:
    """The pure op stored in a row."""
    return EntityOp(
        op_id=row.op_id,
        dot=Dot(row.writer, row.seq),
        context=CausalContext.from_json_obj(row.context),
        fields=dict(row.fields),
        hlc=row.hlc,
        source=row.source,
        unknown_base=row.unknown_base,
    )


def op_rows(session: Session, list_id: int, entity_id: str) -> Sequence[EntityOpRow]:
    """Every stored op of one entity."""
    return session.scalars(
        select(EntityOpRow)
        .where(EntityOpRow.list_id == list_id, EntityOpRow.entity_id == entity_id)
        .order_by(EntityOpRow.hlc, EntityOpRow.writer, EntityOpRow.seq)
    ).all()


def insert_op(
    session: Session, list_id: int, entity_id: str, op: EntityOp, fingerprint: str, extra: dict[str, Any]
) -> bool:
    """Store an op once (unique per list by op_id and per entity by dot); False when it already existed."""
    values = {
        "list_id": list_id,
        "entity_id": entity_id,
        "op_id": op.op_id,
        "writer": op.dot.writer,
        "seq": op.dot.seq,
        "context": op.context.to_json_obj(),
        "fields": dict(op.fields),
        "hlc": op.hlc,
        "source": op.source[:300],
        "unknown_base": op.unknown_base,
        "fingerprint": fingerprint,
        "received_at": utcnow(),
        "submission_version_id": extra.get("submission_version_id"),
        "actor": extra.get("actor", ""),
    }
    return (
        insert_ignore(session, cast(Table, EntityOpRow.__table__), values, ["list_id", "op_id"], returning="id")
        is not None
    )


def served_versions(session: Session, list_id: int, entity_id: str) -> dict[int, CausalContext]:
    """Version number → what that version had seen, for every version ever materialised."""
    rows = session.scalars(
        select(EntityRevision).where(EntityRevision.list_id == list_id, EntityRevision.entity_id == entity_id)
    ).all()
    return {row.version: CausalContext.from_json_obj(row.seen) for row in rows}


def revision_by_rev(session: Session, list_id: int, entity_id: str, rev: str) -> CausalContext | None:
    """What the materialisation with content-derived ``rev`` had seen."""
    row = session.scalars(
        select(EntityRevision).where(
            EntityRevision.list_id == list_id, EntityRevision.entity_id == entity_id, EntityRevision.rev == rev
        )
    ).first()
    return None if row is None else CausalContext.from_json_obj(row.seen)


def record_revision(
    session: Session, list_id: int, entity_id: str, version: int, rev: str, seen: dict[str, Any]
) -> None:
    """Record ``version -> (rev, seen)`` once; it never changes afterwards."""
    insert_ignore(
        session,
        cast(Table, EntityRevision.__table__),
        {"list_id": list_id, "entity_id": entity_id, "version": version, "rev": rev, "seen": seen},
        ["list_id", "entity_id", "version"],
    )


def ensure_entity_row(session: Session, list_id: int, entity_id: str) -> Entity:
    """The entity's row, created empty (version 0) if needed, race-free."""
    insert_ignore(
        session,
        cast(Table, Entity.__table__),
        {
            "list_id": list_id,
            "entity_id": entity_id,
            "properties": {},
            "version": 0,
            "rev": "",
            "conflict_fields": [],
            "deleted": False,
            "updated_at": utcnow(),
        },
        ["list_id", "entity_id"],
    )
    row = get_entity(session, list_id, entity_id)
    assert row is not None
    return row


def next_server_seq(session: Session, list_id: int, entity_id: str, writer: str) -> int:
    """The next seq of a server writer (a reviewer) on one entity."""
    top = session.execute(
        select(func.max(EntityOpRow.seq)).where(
            EntityOpRow.list_id == list_id, EntityOpRow.entity_id == entity_id, EntityOpRow.writer == writer
        )
    ).scalar_one_or_none()
    return int(top or 0) + 1
