"""Queries of entity lists as ODK Central's datasets: who created each entity and when, list sizes, and
the entities of a list in keyset pages (the OData feed)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models.sync import Entity, EntityOpRow

PAGE_SIZE = 1000


def first_ops(session: Session, list_id: int, entity_ids: Sequence[str]) -> dict[str, tuple[datetime, str]]:
    """Per entity, when its first op arrived and who sent it (Central's ``createdAt`` and creator)."""
    if not entity_ids:
        return {}
    first = (
        select(EntityOpRow.entity_id, func.min(EntityOpRow.id).label("first_id"))
        .where(EntityOpRow.list_id == list_id, EntityOpRow.entity_id.in_(list(entity_ids)))
        .group_by(EntityOpRow.entity_id)
        .subquery()
    )
    rows = session.execute(
        select(EntityOpRow.entity_id, EntityOpRow.received_at, EntityOpRow.actor).join(
            first, EntityOpRow.id == first.c.first_id
        )
    ).all()
    return {r.entity_id: (r.received_at, r.actor) for r in rows}


def entity_counts(session: Session, list_ids: Sequence[int]) -> dict[int, int]:
    """The number of live (not deleted) entities of each list."""
    if not list_ids:
        return {}
    rows = session.execute(
        select(Entity.list_id, func.count())
        .where(Entity.list_id.in_(list(list_ids)), Entity.version > 0, Entity.deleted.is_(False))
        .group_by(Entity.list_id)
    ).all()
    return {list_id: n for list_id, n in rows}


def iter_entities(session: Session, list_id: int, deleted: bool = False) -> Iterator[Sequence[Entity]]:
    """The list's entities by id in pages of ``PAGE_SIZE`` (memory stays flat)."""
    after = ""
    while True:
        page = session.scalars(
            select(Entity)
            .where(Entity.list_id == list_id, Entity.entity_id > after, Entity.version > 0, Entity.deleted == deleted)
            .order_by(Entity.entity_id)
            .limit(PAGE_SIZE)
        ).all()
        if page:
            yield page
        if len(page) < PAGE_SIZE:
            return
        after = page[-1].entity_id


def iter_feed_pages(session: Session, list_id: int) -> Iterator[tuple[Sequence[Any], dict[str, tuple[datetime, str]]]]:
    """The live entities of a list as plain rows, page by page, each with its first ops (the OData feed).

    Plain rows, not ORM objects, so the read transaction can end between pages, as the export's reader
    does: on SQLite a transaction holds the one write lock, and a feed is read at the client's pace.
    """
    after = ""
    while True:
        page = session.execute(
            select(
                Entity.entity_id, Entity.label, Entity.properties, Entity.version, Entity.conflict, Entity.updated_at
            )
            .where(Entity.list_id == list_id, Entity.entity_id > after, Entity.version > 0, Entity.deleted.is_(False))
            .order_by(Entity.entity_id)
            .limit(PAGE_SIZE)
        ).all()
        firsts = first_ops(session, list_id, [r.entity_id for r in page])
        session.rollback()
        if page:
            yield page, firsts
        if len(page) < PAGE_SIZE:
            return
        after = page[-1].entity_id
