"""Entity lists as ODK Central's datasets: list, create, properties; entities listed, read, created (one
or many), updated, deleted and restored; and the ``.svc/Entities`` OData feed.

Every write goes through Fieldsync's order-independent merge (``server.services.entities.apply_op``):
- a create is the entity's create op (``create:<uuid>``); a uuid already used is ``409``;
- an update ``?baseVersion=n`` is based on what version *n* had seen, as a Collect update is: a
  ``baseVersion`` older than the current version is merged as concurrent with what it did not see, and
  the entity reports ``conflict: soft|hard`` with its ``conflictingProperties`` (Central would refuse
  it with 409; Fieldsync keeps both writes and lets a reviewer choose). A ``baseVersion`` never served is
  ``409``; ``?force=true`` is based on the current version. The op id is a hash of the request, so a
  retried update is answered with the entity as it is, not applied twice;
- delete and restore are the reviewer ops of ``set_entity_deleted``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.sync import Entity, EntityList
from server.db.queries import audit
from server.db.queries import datasets as dq
from server.db.queries import entities as q
from server.db.queries.sync import lock_keys
from server.db.transaction import transaction
from server.errors import ApiError, bad_request, conflict, not_found
from server.services import entities as entity_svc
from sync.entities import DELETED_FIELD, EMPTY_CONTEXT, LABEL_FIELD, Dot, EntityOp, create_dot
from sync.outcomes import Quarantined, Rejected

NAME = re.compile(r"^[A-Za-z_][\w.-]{0,199}$", re.UNICODE)
PROPERTY = re.compile(r"^[A-Za-z_][\w.-]{0,199}$", re.UNICODE)
RESERVED_PROPERTIES = frozenset({"name", "label", "__version", "__trunkVersion", "__branchId", DELETED_FIELD})


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _actor_id(actor: str) -> int:
    """Central's numeric ``creatorId`` from an audit actor (``user:3`` → 3; a device or import → 0)."""
    kind, _, number = actor.partition(":")
    return int(number) if kind in ("user", "device") and number.isdigit() else 0


def _list_or_404(session: Session, project_id: int, name: str) -> EntityList:
    found = q.get_list(session, project_id, name)
    if found is None:
        raise not_found("Dataset", project_id=project_id, dataset=name)
    return found


def _properties(entity_list: EntityList) -> list[str]:
    return [p for p in entity_list.properties if p != DELETED_FIELD]


def dataset_json(entity_list: EntityList, entities: int | None = None, detail: bool = False) -> dict[str, Any]:
    """Central's dataset: name, project, creation, ``approvalRequired`` (always false here), properties."""
    out: dict[str, Any] = {
        "name": entity_list.name,
        "projectId": entity_list.project_id,
        "createdAt": _iso(entity_list.created_at),
        "approvalRequired": False,
        "ownerOnly": False,
    }
    if entities is not None:
        out["entities"] = entities
    if detail:
        out["properties"] = [
            {"name": p, "odataName": p, "publishedAt": _iso(entity_list.created_at), "forms": []}
            for p in _properties(entity_list)
        ]
        out["sourceForms"] = []
        out["linkedForms"] = []
    return out


def list_datasets(session: Session, project_id: int) -> list[dict[str, Any]]:
    """The project's entity lists, with their live entity counts."""
    lists = q.lists_of_project(session, project_id)
    counts = dq.entity_counts(session, [e.id for e in lists])
    return [dataset_json(e, counts.get(e.id, 0)) for e in lists]


def create_dataset(session: Session, project_id: int, name: str, actor: str) -> dict[str, Any]:
    """Create an empty entity list (``409`` when the name is taken)."""
    if not NAME.match(name) or name.startswith("__"):
        raise bad_request("invalid_input", f"{name!r} is not a valid dataset name", field="name")
    with transaction(session):
        if q.get_list(session, project_id, name) is not None:
            raise conflict("dataset_exists", f"A dataset named {name!r} already exists", dataset=name)
        created = q.ensure_list(session, project_id, name, [])
        audit.record(session, actor, "dataset.create", project_id, f"dataset:{name}", {})
        return dataset_json(created, 0, detail=True)


def dataset_detail(session: Session, project_id: int, name: str) -> dict[str, Any]:
    """One entity list with its properties."""
    entity_list = _list_or_404(session, project_id, name)
    counts = dq.entity_counts(session, [entity_list.id])
    return dataset_json(entity_list, counts.get(entity_list.id, 0), detail=True)


def add_property(session: Session, project_id: int, name: str, prop: str, actor: str) -> None:
    """Add a property to a list (``409`` when it has it already)."""
    if not PROPERTY.match(prop) or prop in RESERVED_PROPERTIES or prop.startswith("__"):
        raise bad_request("invalid_input", f"{prop!r} is not a valid property name", field="name")
    with transaction(session):
        entity_list = _list_or_404(session, project_id, name)
        if prop in entity_list.properties:
            raise conflict("property_exists", f"The dataset already has a property {prop!r}", property=prop)
        q.ensure_list(session, project_id, name, [prop])
        audit.record(session, actor, "dataset.property.create", project_id, f"dataset:{name}", {"property": prop})


# --- entities -------------------------------------------------------------------------------------


def entity_json(row: Entity, first: tuple[datetime, str] | None, with_data: bool = True) -> dict[str, Any]:
    """Central's entity: uuid, creator and times, ``conflict``, and its current version."""
    created_at, actor = first if first is not None else (row.updated_at, "")
    conflicting = [c["field"] for c in row.conflict_fields if isinstance(c, Mapping) and "field" in c]
    version: dict[str, Any] = {
        "label": row.label or "",
        "current": True,
        "createdAt": _iso(row.updated_at),
        "creatorId": _actor_id(actor),
        "userAgent": "",
        "version": row.version,
        "baseVersion": row.version - 1 if row.version > 1 else None,
        "conflictingProperties": conflicting or None,
    }
    if with_data:
        version["data"] = dict(row.properties)
    return {
        "uuid": row.entity_id,
        "creatorId": _actor_id(actor),
        "createdAt": _iso(created_at),
        "updatedAt": _iso(row.updated_at) if row.version > 1 else None,
        "deletedAt": _iso(row.updated_at) if row.deleted else None,
        "conflict": row.conflict,
        "currentVersion": version,
    }


def list_entities(session: Session, project_id: int, name: str, deleted: bool = False) -> list[dict[str, Any]]:
    """The list's entities (``deleted``: the deleted ones), each with its current version's data."""
    entity_list = _list_or_404(session, project_id, name)
    out: list[dict[str, Any]] = []
    for page in dq.iter_entities(session, entity_list.id, deleted):
        firsts = dq.first_ops(session, entity_list.id, [r.entity_id for r in page])
        out += [entity_json(r, firsts.get(r.entity_id)) for r in page]
    return out


def get_entity(session: Session, project_id: int, name: str, uuid: str) -> dict[str, Any]:
    """One entity (a deleted one too, with its ``deletedAt``)."""
    entity_list = _list_or_404(session, project_id, name)
    row = q.get_entity(session, entity_list.id, uuid)
    if row is None or row.version == 0:
        raise not_found("Entity", dataset=name, uuid=uuid)
    return entity_json(row, dq.first_ops(session, entity_list.id, [uuid]).get(uuid))


def _fields(entity_list: EntityList, label: str | None, data: Mapping[str, Any]) -> dict[str, str]:
    unknown = sorted(set(data) - set(_properties(entity_list)))
    if unknown:
        raise ApiError(
            400, "unknown_property", f"These are not properties of {entity_list.name}: {', '.join(unknown)}",
            {"fields": unknown},
        )  # fmt: skip
    bad = sorted(k for k, v in data.items() if not isinstance(v, str))
    if bad:
        raise bad_request("invalid_input", f"Entity data values are text: {', '.join(bad)}", fields=bad)
    fields = dict(data)
    if label is not None:
        if not label.strip():
            raise bad_request("invalid_input", "An entity's label cannot be empty", field="label")
        fields[LABEL_FIELD] = label
    return fields


def _checked(applied: entity_svc.AppliedOp, entity_list: EntityList) -> Entity:
    outcome = applied.outcome
    if isinstance(outcome, Quarantined):
        raise bad_request("unknown_property", outcome.detail or outcome.reason)
    if isinstance(outcome, Rejected):
        raise conflict("entity_op_rejected", outcome.detail or outcome.reason, dataset=entity_list.name)
    assert applied.entity is not None
    return applied.entity


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


def _create(session: Session, entity_list: EntityList, uuid: str, fields: dict[str, str], actor: str) -> Entity:
    existing = q.get_entity(session, entity_list.id, uuid)
    if existing is not None and existing.version > 0:
        raise conflict("entity_uuid_taken", f"An entity with uuid {uuid!r} already exists", uuid=uuid)
    op = EntityOp(
        op_id=f"api-create:{uuid}",
        dot=create_dot(uuid),
        context=EMPTY_CONTEXT,
        fields=fields,
        hlc=_now_ms(),
        source=f"api:{actor}",
    )
    return _checked(entity_svc.apply_op(session, entity_list, uuid, op, actor=actor), entity_list)


def create_entity(
    session: Session, project_id: int, name: str, uuid: str, label: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Create one entity (``409`` when its uuid is taken)."""
    with transaction(session):
        entity_list = _list_or_404(session, project_id, name)
        fields = _fields(entity_list, label, data)
        lock_keys(session, [entity_svc.entity_lock_key(entity_list.id, uuid)])
        row = _create(session, entity_list, uuid, fields, actor)
        return entity_json(row, dq.first_ops(session, entity_list.id, [uuid]).get(uuid))


def create_entities(
    session: Session, project_id: int, name: str, items: Sequence[tuple[str, str, Mapping[str, Any]]], actor: str
) -> int:
    """Create many entities in one transaction: all or none (any bad one or taken uuid fails them all)."""
    with transaction(session):
        entity_list = _list_or_404(session, project_id, name)
        checked = [(uuid, _fields(entity_list, label, data)) for uuid, label, data in items]
        uuids = [u for u, _ in checked]
        if len(set(uuids)) != len(uuids):
            raise bad_request("invalid_input", "The same uuid is given twice", field="entities")
        lock_keys(session, [entity_svc.entity_lock_key(entity_list.id, u) for u in uuids])
        for uuid, fields in checked:
            _create(session, entity_list, uuid, fields, actor)
        return len(checked)


def _update_op_id(uuid: str, base: int, fields: Mapping[str, str], actor: str) -> str:
    canonical = json.dumps([uuid, base, dict(sorted(fields.items())), actor], separators=(",", ":"))
    return "api:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def update_entity(
    session: Session,
    project_id: int,
    name: str,
    uuid: str,
    *,
    label: str | None,
    data: Mapping[str, Any],
    base_version: int | None,
    force: bool,
    actor: str,
) -> dict[str, Any]:
    """Update an entity based on ``base_version`` (a served version) or, with ``force``, on the current one."""
    if base_version is None and not force:
        raise bad_request("invalid_input", "Give baseVersion (the version you read) or force=true", field="baseVersion")
    with transaction(session):
        entity_list = _list_or_404(session, project_id, name)
        fields = _fields(entity_list, label, data)
        if not fields:
            raise bad_request("invalid_input", "Give a label or data to change", field="data")
        lock_keys(session, [entity_svc.entity_lock_key(entity_list.id, uuid)])
        row = q.get_entity(session, entity_list.id, uuid)
        if row is None or row.version == 0:
            raise not_found("Entity", dataset=name, uuid=uuid)
        base = row.version if base_version is None else base_version
        served = q.served_versions(session, entity_list.id, uuid)
        seen = served.get(base)
        if seen is None:
            raise conflict(
                "entity_version_unknown",
                f"Version {base} of this entity was never served (the current version is {row.version})",
                baseVersion=base,
                currentVersion=row.version,
            )
        op_id = _update_op_id(uuid, base, fields, actor)
        if any(r.op_id == op_id for r in q.op_rows(session, entity_list.id, uuid)):
            return get_entity(session, project_id, name, uuid)  # a retry of an update already applied
        op = EntityOp(op_id=op_id, dot=Dot(op_id, 1), context=seen, fields=fields, hlc=_now_ms(), source=f"api:{actor}")
        updated = _checked(entity_svc.apply_op(session, entity_list, uuid, op, actor=actor), entity_list)
        return entity_json(updated, dq.first_ops(session, entity_list.id, [uuid]).get(uuid))


def set_deleted(
    session: Session, project_id: int, name: str, uuid: str, *, deleted: bool, actor: str
) -> dict[str, Any]:
    """Delete or restore an entity (the merge's reviewer op); the entity as it then is."""
    entity_svc.set_entity_deleted(
        session, project_id, name, uuid, deleted=deleted, base_version=None, base_rev=None, actor=actor
    )
    return get_entity(session, project_id, name, uuid)


# --- the OData feed of a list ---------------------------------------------------------------------


def entity_rows(session: Session, list_id: int, props: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Every live entity of the list ``list_id`` as an OData row: ``__id``, ``label``, properties, ``__system``."""
    for page, firsts in dq.iter_feed_pages(session, list_id):
        for r in page:
            created_at, actor = firsts.get(r.entity_id, (r.updated_at, ""))
            row: dict[str, Any] = {"__id": r.entity_id, "label": r.label}
            for p in props:
                row[p] = r.properties.get(p)
            row["__system"] = {
                "createdAt": _iso(created_at),
                "creatorId": str(_actor_id(actor)),
                "creatorName": actor,
                "updates": max(r.version - 1, 0),
                "updatedAt": _iso(r.updated_at) if r.version > 1 else None,
                "version": r.version,
                "conflict": r.conflict,
            }
            yield row


def feed_list(session: Session, project_id: int, name: str) -> tuple[int, list[str]]:
    """The list's id and property names (``404`` for an unknown list), read before a feed streams."""
    entity_list = _list_or_404(session, project_id, name)
    return entity_list.id, _properties(entity_list)


def entity_properties(session: Session, project_id: int, name: str) -> list[str]:
    """The list's property names (the feed's columns)."""
    return _properties(_list_or_404(session, project_id, name))
