"""Entity use cases: declare lists, apply changes (from submissions and from pushed entity items),
materialise an entity from its ops, review and resolve conflicts, delete and restore, and serve a
list as CSV.

The server only stores ops and re-materialises: every decision is ``sync.entities`` (the merge is a
pure function of the set of ops, so the order in which they arrive never matters). Each entity is
materialised under a per-entity lock (a PostgreSQL advisory lock, taken in sorted order by the push
service; SQLite has one writer), from the **full** op set of that entity, never incrementally.

Deletion (ODK Central's entity delete and restore) is an op too, writing ``__deleted`` (see
``sync.entities``): the history stays, a deleted entity leaves the entity-list CSV and the default
list view, and its change-log row for pull says ``op: "delete"`` (a restore logs ``upsert`` again).
Only reviewers write ``__deleted``: a device or submission naming it is quarantined (unknown property).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.sync import Entity, EntityList
from server.db.queries import audit
from server.db.queries import entities as q
from server.db.queries.sync import lock_keys, log_change
from server.db.transaction import transaction
from server.errors import ApiError, not_found
from server.services.outbox import record_event
from sync.entities import (
    DELETED_FIELD,
    EMPTY_CONTEXT,
    LABEL_FIELD,
    EntityOp,
    EntityState,
    RelayedBase,
    Resolver,
    StaleBase,
    decide_entity_op,
    deletion_op,
    deletion_settled,
    entity_op_fingerprint,
    entity_op_from_odk,
    merge_entity_updates,
    resolve,
)
from sync.outcomes import Conflict, Created, Duplicate, Quarantined, Rejected, Updated

UNKNOWN_ENTITY_LIST = "unknown_entity_list"
UNKNOWN_PROPERTY = "unknown_property"

CSV_SYSTEM_COLUMNS = ("name", "label", "__version", "__trunkVersion", "__branchId")

EntityOutcome = Created | Updated | Duplicate | Conflict | Rejected | Quarantined


@dataclass(frozen=True)
class AppliedOp:
    """The outcome of one entity op and the entity as materialised after it."""

    outcome: EntityOutcome
    entity: Entity | None = None


def entity_lock_key(list_id: int, entity_id: str) -> str:
    """The advisory-lock key of one entity."""
    return f"entity:{list_id}:{entity_id}"


def declare_entity_lists(session: Session, project_id: int, declarations: Iterable[Any]) -> list[EntityList]:
    """Create (or extend) the project's entity lists from forms' ``EntityDeclaration``s (caller's transaction)."""
    return [
        q.ensure_list(session, project_id, d.list_name, list(getattr(d, "properties", {}) or {})) for d in declarations
    ]


def entity_json(list_name: str, row: Entity) -> dict[str, Any]:
    """The wire form of an entity's materialised state (pull, review API)."""
    return {
        "list": list_name,
        "id": row.entity_id,
        "label": row.label,
        "properties": dict(row.properties),
        "version": row.version,
        "rev": row.rev,
        "conflict": row.conflict,
        "conflict_fields": list(row.conflict_fields),
        "deleted": row.deleted,
    }


def _conflict_json(state: EntityState) -> list[dict[str, Any]]:
    if state.conflict == "hard":
        return [
            {
                "field": c.field,
                "candidates": [
                    {
                        "value": cand.value,
                        "writer": cand.dot.writer,
                        "seq": cand.dot.seq,
                        "op_id": cand.op_id,
                        "hlc": cand.hlc,
                    }
                    for cand in c.candidates
                ],
            }
            for c in state.conflict_fields
        ]
    return [{"field": name} for name in state.concurrent_fields]


def materialize(session: Session, entity_list: EntityList, entity_id: str) -> tuple[Entity, EntityState]:
    """Recompute an entity from all its stored ops, update its row, record the revision, log the change."""
    ops = [q.op_from_row(r) for r in q.op_rows(session, entity_list.id, entity_id)]
    state = merge_entity_updates(ops)
    row = q.ensure_entity_row(session, entity_list.id, entity_id)
    q.record_revision(session, entity_list.id, entity_id, state.version, state.rev, state.seen.to_json_obj())
    if row.rev == state.rev and row.version == state.version:
        return row, state  # nothing new: the same set materialises the same row
    row.label = state.label
    row.properties = dict(state.properties)
    row.version = state.version
    row.rev = state.rev
    row.conflict = state.conflict
    row.conflict_fields = _conflict_json(state)
    row.deleted = state.deleted
    row.updated_at = utcnow()
    session.flush()
    log_change(
        session,
        entity_list.project_id,
        "entity",
        f"{entity_list.name}/{entity_id}",
        # A device drops a deleted entity; any later change of it while still deleted says so again.
        "delete" if state.deleted else "upsert",
        entity_json(entity_list.name, row),
    )
    return row, state


def apply_op(
    session: Session,
    entity_list: EntityList,
    entity_id: str,
    op: EntityOp,
    *,
    actor: str,
    submission_version_id: int | None = None,
    reviewer: bool = False,
    form_id: str | None = None,
) -> AppliedOp:
    """Store one op (idempotently) and re-materialise its entity; the caller holds the entity lock.

    Only a ``reviewer`` op (resolve, delete, restore) may write ``__deleted``; a reviewer's caller
    records its own event (``entity.resolved``...), the others get ``entity.created/updated/conflicted``
    here. ``form_id`` is the XForm id of the submission the op came from, if any.
    """
    allowed = (set(entity_list.properties) - {DELETED_FIELD}) | {LABEL_FIELD}
    if reviewer:
        allowed.add(DELETED_FIELD)
    unknown = sorted(set(op.fields) - allowed)
    if unknown:
        return AppliedOp(Quarantined(UNKNOWN_PROPERTY, f"not properties of {entity_list.name}: {', '.join(unknown)}"))
    stored = [q.op_from_row(r) for r in q.op_rows(session, entity_list.id, entity_id)]
    outcome = decide_entity_op(stored, op)
    if isinstance(outcome, Rejected):
        return AppliedOp(outcome)
    if isinstance(outcome, Duplicate):
        return AppliedOp(outcome, q.get_entity(session, entity_list.id, entity_id))
    q.insert_op(
        session,
        entity_list.id,
        entity_id,
        op,
        entity_op_fingerprint(op),
        {"actor": actor, "submission_version_id": submission_version_id},
    )
    row, _ = materialize(session, entity_list, entity_id)
    if not reviewer:
        kind = (
            "entity.created"
            if isinstance(outcome, Created)
            else "entity.conflicted"
            if isinstance(outcome, Conflict)
            else "entity.updated"
        )
        _record_entity_event(session, entity_list, row, kind, actor, form_id, submission_version_id)
    return AppliedOp(outcome, row)


def _record_entity_event(
    session: Session,
    entity_list: EntityList,
    row: Entity,
    kind: str,
    actor: str,
    form_id: str | None = None,
    submission_version_id: int | None = None,
) -> None:
    """The outbox event of an entity change: a snapshot of the entity as this change left it."""
    record_event(
        session,
        entity_list.project_id,
        kind,
        f"entity:{entity_list.name}/{row.entity_id}",
        {"entity": entity_json(entity_list.name, row), "actor": actor, "submission_version_id": submission_version_id},
        form_id=form_id,
    )


def context_for_base_rev(session: Session, list_id: int, entity_id: str, base_rev: str | None) -> tuple[Any, bool]:
    """The causal context of a pushed op from its ``base_rev``: (context, unknown_base)."""
    if base_rev is None:
        return EMPTY_CONTEXT, False
    seen = q.revision_by_rev(session, list_id, entity_id, base_rev)
    if seen is None:
        # Never served here (e.g. a restored backup): concurrent with everything, conflicts surface.
        return EMPTY_CONTEXT, True
    return seen, False


def _capture_ms(record: Any) -> int:
    """The capture time of a submission in ms (its ``end`` or ``start`` field), 0 when absent."""
    values = getattr(record, "values", {}) or {}
    for name in ("end", "endtime", "start"):
        raw = values.get(name) if isinstance(values, Mapping) else None
        if isinstance(raw, str) and raw:
            try:
                return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                continue
    return 0


def apply_entity_changes(
    session: Session,
    project_id: int,
    record: Any,
    submission_version_id: int,
    actor: str,
    relayed: Mapping[str, RelayedBase] | None = None,
) -> list[AppliedOp]:
    """Apply the entity blocks of a stored submission version inside the caller's transaction.

    ``relayed`` (a relay's push only) names, per op id, the context the office computed for the op: it
    replaces the one ``baseVersion`` would give here, since the office's version numbers are its own.
    """
    changes = list(getattr(record, "entities", ()) or ())
    if not changes:
        return []
    lists = {c.list_name: q.ensure_list(session, project_id, c.list_name, list(c.properties)) for c in changes}
    lock_keys(session, [entity_lock_key(lists[c.list_name].id, c.entity_id) for c in changes])
    results: list[AppliedOp] = []
    hlc = _capture_ms(record)
    for change in changes:
        entity_list = lists[change.list_name]
        # One op per (submission instance, entity): a re-ingested submission yields the same op id.
        op_id = f"{record.instance_id}:{change.list_name}:{change.entity_id}"
        op = entity_op_from_odk(
            change,
            op_id=op_id,
            hlc=hlc,
            served_versions=q.served_versions(session, entity_list.id, change.entity_id),
            source=str(record.instance_id),
        )
        base = (relayed or {}).get(op_id)
        if base is not None:
            op = replace(op, context=base.context, unknown_base=base.unknown_base)
        with session.begin_nested():
            results.append(
                apply_op(
                    session,
                    entity_list,
                    change.entity_id,
                    op,
                    actor=actor,
                    submission_version_id=submission_version_id,
                    form_id=getattr(record, "form_id", None),
                )
            )
    return results


# ---------------------------------------------------------------------------------------------------
# Review


def _list_or_404(session: Session, project_id: int, list_name: str) -> EntityList:
    entity_list = q.get_list(session, project_id, list_name)
    if entity_list is None:
        raise not_found("entity list", list=list_name)
    return entity_list


def list_entities(
    session: Session,
    project_id: int,
    list_name: str,
    conflict: str | None,
    limit: int,
    after: str,
    deleted: bool = False,
) -> list[dict[str, Any]]:
    """The live entities of a list, or with ``deleted`` only the deleted ones (optionally only conflicts)."""
    entity_list = _list_or_404(session, project_id, list_name)
    rows = q.entities_of_list(session, entity_list.id, conflict, limit, after, deleted=deleted)
    return [entity_json(list_name, r) for r in rows]


def entity_detail(session: Session, project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """An entity's state and its full history: every op, with every competing value of a conflict."""
    entity_list = _list_or_404(session, project_id, list_name)
    row = q.get_entity(session, entity_list.id, entity_id)
    if row is None or row.version == 0:
        raise not_found("entity", list=list_name, id=entity_id)
    # The version an op was based on: the served version whose causal context is the op's (None when the
    # phone's base was never served here, e.g. a restored backup).
    bases: dict[Any, int] = {}
    for version, seen in sorted(q.served_versions(session, entity_list.id, entity_id).items()):
        bases.setdefault(seen, version)
    history = [
        {
            "op_id": r.op_id,
            "base_version": None if r.unknown_base else bases.get(q.op_from_row(r).context),
            "writer": r.writer,
            "seq": r.seq,
            "context": r.context,
            "fields": dict(r.fields),
            "hlc": r.hlc,
            "source": r.source,
            "unknown_base": r.unknown_base,
            "actor": r.actor,
            "received_at": r.received_at.isoformat(),
        }
        for r in q.op_rows(session, entity_list.id, entity_id)
    ]
    return {**entity_json(list_name, row), "history": history}


def list_conflicts(
    session: Session, project_id: int, *, deleted: bool = False, limit: int = 1000
) -> list[dict[str, Any]]:
    """Every live (or, with ``deleted``, every deleted) entity of a project with a conflict, hard first."""
    return [entity_json(name, row) for row, name in q.conflicted_entities(session, project_id, deleted, limit)]


def resolve_entity(
    session: Session,
    project_id: int,
    list_name: str,
    entity_id: str,
    *,
    base_version: int | None,
    base_rev: str | None,
    fields: Mapping[str, str],
    label: str | None,
    actor: str,
) -> dict[str, Any]:
    """A reviewer's resolution: an op covering every competing write (``409`` when the base is stale)."""
    with transaction(session):
        entity_list, _, state = _locked_state(session, project_id, list_name, entity_id, base_version)
        unknown = sorted(set(fields) - (set(entity_list.properties) - {DELETED_FIELD}))
        if unknown:
            raise ApiError(400, UNKNOWN_PROPERTY, "These are not properties of the list", {"fields": unknown})
        chosen = dict(fields)
        if label is not None:
            chosen[LABEL_FIELD] = label
        op = resolve(
            state,
            base_rev if base_rev is not None else state.rev,
            chosen,
            _reviewer(session, entity_list.id, entity_id, actor),
        )
        if isinstance(op, StaleBase):
            raise _stale(op.current_rev, op.current_version)
        applied = apply_op(session, entity_list, entity_id, op, actor=actor, reviewer=True)
        assert applied.entity is not None
        _record_entity_event(session, entity_list, applied.entity, "entity.resolved", actor)
        audit.record(
            session,
            actor,
            "entity.resolve",
            project_id,
            f"{list_name}/{entity_id}",
            {"op_id": op.op_id, "fields": dict(op.fields), "base_rev": state.rev},
        )
        assert applied.entity is not None
        return entity_json(list_name, applied.entity)


def set_entity_deleted(
    session: Session,
    project_id: int,
    list_name: str,
    entity_id: str,
    *,
    deleted: bool,
    base_version: int | None,
    base_rev: str | None,
    actor: str,
) -> dict[str, Any]:
    """Delete (or restore) an entity: a reviewer op writing ``__deleted``, based on the current state.

    ``409`` when ``base_version``/``base_rev`` is given and stale. An entity already deleted (restored)
    with no competing ``__deleted`` value is answered as it is: no op, no version, no audit row.
    """
    with transaction(session):
        entity_list, row, state = _locked_state(session, project_id, list_name, entity_id, base_version)
        if base_rev is not None and base_rev != state.rev:
            raise _stale(state.rev, state.version)
        if deletion_settled(state, deleted=deleted):
            return entity_json(list_name, row)
        op = deletion_op(state, state.rev, _reviewer(session, entity_list.id, entity_id, actor), deleted=deleted)
        assert not isinstance(op, StaleBase)  # based on the state just read, under the entity's lock
        applied = apply_op(session, entity_list, entity_id, op, actor=actor, reviewer=True)
        assert applied.entity is not None
        _record_entity_event(
            session, entity_list, applied.entity, "entity.deleted" if deleted else "entity.restored", actor
        )
        audit.record(
            session,
            actor,
            "entity.delete" if deleted else "entity.restore",
            project_id,
            f"{list_name}/{entity_id}",
            {"op_id": op.op_id, "base_rev": state.rev, "version": applied.entity.version},
        )
        return entity_json(list_name, applied.entity)


def _locked_state(
    session: Session, project_id: int, list_name: str, entity_id: str, base_version: int | None
) -> tuple[EntityList, Entity, EntityState]:
    """Lock an entity, read its state (``404`` if unknown) and check ``base_version`` (``409`` if stale)."""
    entity_list = _list_or_404(session, project_id, list_name)
    lock_keys(session, [entity_lock_key(entity_list.id, entity_id)])
    row = q.get_entity(session, entity_list.id, entity_id)
    if row is None or row.version == 0:
        raise not_found("entity", list=list_name, id=entity_id)
    state = merge_entity_updates(q.op_from_row(r) for r in q.op_rows(session, entity_list.id, entity_id))
    if base_version is not None and base_version != state.version:
        raise _stale(state.rev, state.version)
    return entity_list, row, state


def _reviewer(session: Session, list_id: int, entity_id: str, actor: str) -> Resolver:
    """The next op identity of a reviewer (writer ``srv:<actor>``) on an entity."""
    writer = f"srv:{actor}"
    return Resolver(
        writer=writer,
        seq=q.next_server_seq(session, list_id, entity_id, writer),
        op_id=str(uuid.uuid4()),
        hlc=int(utcnow().timestamp() * 1000),
    )


def _stale(rev: str, version: int) -> ApiError:
    return ApiError(
        409, "stale_base", "The entity changed since you loaded it", {"current_rev": rev, "current_version": version}
    )


def entity_list_csv(session: Session, project_id: int, list_name: str, properties: Sequence[str]) -> bytes:
    """The entity list as ODK Collect reads it: ``name,label,__version,__trunkVersion,__branchId,<properties>``.

    Deleted entities are left out: Collect drops an entity missing from a newer list.

    ``__trunkVersion`` and ``__branchId`` are empty: they are set by Collect on offline updates only.
    """
    entity_list = q.get_list(session, project_id, list_name)
    properties = [p for p in properties if p not in CSV_SYSTEM_COLUMNS and p != DELETED_FIELD]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_SYSTEM_COLUMNS, *properties])
    if entity_list is not None:
        after = ""
        while True:
            rows = q.entities_of_list(session, entity_list.id, None, 1000, after, deleted=False)
            for row in rows:
                writer.writerow(
                    [
                        row.entity_id,
                        row.label or "",
                        row.version,
                        "",
                        "",
                        *(row.properties.get(p, "") for p in properties),
                    ]
                )
            if len(rows) < 1000:
                break
            after = rows[-1].entity_id
    return out.getvalue().encode("utf-8")


def entity_integrity(session: Session, project_id: int, list_name: str, ids: Iterable[str]) -> list[tuple[str, bool]]:
    """(entity id, deleted) for the ids a device asks about; an id the server never had counts as deleted."""
    entity_list = q.get_list(session, project_id, list_name)
    result: list[tuple[str, bool]] = []
    for entity_id in ids:
        row = None if entity_list is None else q.get_entity(session, entity_list.id, entity_id)
        result.append((entity_id, row is None or row.version == 0 or row.deleted))
    return result
