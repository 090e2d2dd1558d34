"""The order-independent merge of an entity's updates (SYNC.md "Shared records", research §8.6).

This module owns what a shared record (an entity: a cooperative, an entrepreneur) looks like given
the **set** of updates the server has received for it, whatever their arrival order.

Ops, dots and causal contexts
    Every update is an :class:`EntityOp` with a unique ``op_id`` (the idempotency key), a ``dot`` =
    ``(writer, seq)`` (writer = device id, ``srv:<user>`` for reviewers), the :class:`CausalContext` it
    was based on (the dots its writer had seen), the fields it changes (only those; the label is the
    field ``__label``) and ``hlc``, a capture time in ms used **only** to break ties among concurrent
    writes. Op B *saw* op A iff B's context covers A's dot, or A is an earlier op of B's own writer
    (a device has applied all its own earlier ops), closed transitively over the set of ops.
    Concurrent = neither saw the other.

Materialisation (``merge_entity_updates``) is a pure function of the set of ops (duplicates by
``op_id`` count once). For each field, the *frontier* is the writes of that field no other write of it
saw. The winning value is the frontier write with the greatest ``(hlc, writer, seq)`` — causality
first, so a later op that saw an earlier one always wins, whatever the clocks say.
* **hard** conflict: some field's frontier holds different values; every competing value is kept with
  its dot (``conflict_fields``), the winner above is provisional.
* **soft** conflict: more than one head (ops nobody saw yet) and no hard field: merged field by field.
* A hard conflict clears only when an op writes the field with a context covering every competing
  write (``resolve``, or a coach re-entering the value after pulling the flagged record).

Versions (the choice, and why)
    ODK's versions are assigned by arrival order; ours must be a function of the set. So:
    * ``version`` = the number of distinct ops applied (``len(S)``). The store only ever adds ops to
      ``S``, so on one server each version number names exactly one set it materialised. It is what
      the server writes in the entity-list CSV ``__version`` column for ODK Collect.
    * ``rev`` = the first 16 hex digits of sha256 of the canonical JSON of the seen dots (the
      compressed :class:`CausalContext` of ``S``). It is content-derived: two servers that received the
      same ops in any order have the same ``rev``; our JSON clients send it back as ``base_rev``.
    * After each materialisation the server records ``version -> (rev, seen)`` in an immutable
      revisions table. A later op based on version ``N`` (ODK ``baseVersion``/``trunkVersion``) or on
      ``rev`` saw exactly the dots of that row: :func:`entity_op_from_odk` takes that table
      (``served_versions: Mapping[int, CausalContext]``) and computes the op's context once, at intake;
      the context is then stored with the op and never changes, so later arrivals cannot change what
      an op saw. We do not use "the first N ops of the canonical order": a late op that sorts early
      would shift those positions and change the meaning of an old ``baseVersion``.
    * An unknown base (never served, e.g. a restored backup) gives an empty context and
      ``unknown_base=True``: the op is concurrent with everything, so conflicts surface instead of
      silent overwrites.

Deletion and restore (``deletion_op``)
    A deletion is an ordinary op writing the reserved field ``__deleted`` = ``"1"``; a restore writes
    ``"0"``. So the entity stays a pure function of the SET of its ops, its history is kept, and the
    merge rules above apply unchanged: a delete that saw the last update wins; a delete concurrent
    with an update of other fields is a soft conflict (the entity is deleted, the update's values are
    kept in its properties for a restore); a delete concurrent with a restore is a hard conflict on
    ``__deleted`` with the usual provisional winner, settled by ``resolve`` or by a later delete or
    restore that saw both. ``EntityState.deleted`` is the winning value; like ``__label``, the field
    never appears in ``properties``. An entity nobody deleted has no ``__deleted`` write at all.

ODK Collect mapping (``entity_op_from_odk``): an offline branch (``branchId``) is one writer
``branch:<branchId>`` whose seq is the op's position in the branch (``baseVersion - trunkVersion + 1``),
so inside a branch ops are ordered by ``baseVersion`` through the own-chain rule even when they arrive
3-1-2; the branch's context is the served version ``trunkVersion`` (for a branch on an entity created
offline, ``trunkVersion`` is empty and the context is the create's dot). An online update (no branch) is
a one-op writer ``odk:<op_id>`` whose context is the served version ``baseVersion``. A create is the dot
``(create:<entity_id>, 1)``: an entity is created once, and an offline update can name its create
without having seen the create's op id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forms.record import EntityChange
from sync.outcomes import (
    DOT_CONFLICT,
    ID_CONFLICT,
    Conflict,
    ConflictKind,
    Created,
    Duplicate,
    Rejected,
    Updated,
)

LABEL_FIELD = "__label"
"""The field name under which an op changes the entity's label."""

DELETED_FIELD = "__deleted"
"""The reserved field a deletion (``"1"``) or a restore (``"0"``) writes; never a property."""

DELETED = "1"
RESTORED = "0"

RESERVED_FIELDS = frozenset({LABEL_FIELD, DELETED_FIELD})
"""Field names that are not properties: they never show in ``EntityState.properties``."""


@dataclass(frozen=True, slots=True, order=True)
class Dot:
    """One op's identity in causal terms: the ``seq``-th op of ``writer`` (seq starts at 1)."""

    writer: str
    seq: int


@dataclass(frozen=True, slots=True)
class CausalContext:
    """A set of dots, compressed per writer as ``1..max_contig`` plus ``extra`` dots (canonical form).

    Build it with :meth:`from_dots` so two equal sets are equal values (and hash to the same rev).
    """

    max_contig: tuple[tuple[str, int], ...] = ()
    extra: tuple[Dot, ...] = ()

    @classmethod
    def from_dots(cls, dots: Iterable[Dot]) -> CausalContext:
        """The canonical context of a set of dots."""
        by_writer: dict[str, set[int]] = {}
        for dot in dots:
            by_writer.setdefault(dot.writer, set()).add(dot.seq)
        contig: list[tuple[str, int]] = []
        extra: list[Dot] = []
        for writer in sorted(by_writer):
            seqs = by_writer[writer]
            top = 0
            while top + 1 in seqs:
                top += 1
            if top:
                contig.append((writer, top))
            extra.extend(Dot(writer, s) for s in sorted(seqs) if s > top)
        return cls(max_contig=tuple(contig), extra=tuple(extra))

    def covers(self, dot: Dot) -> bool:
        """Whether this context includes ``dot``."""
        for writer, top in self.max_contig:
            if writer == dot.writer:
                if 1 <= dot.seq <= top:
                    return True
                break
        return dot in self.extra

    def dots(self) -> Iterator[Dot]:
        """Every dot of the context, in canonical order."""
        yield from sorted([Dot(w, s) for w, top in self.max_contig for s in range(1, top + 1)] + list(self.extra))

    def union(self, other: CausalContext) -> CausalContext:
        """The context holding the dots of both."""
        return CausalContext.from_dots([*self.dots(), *other.dots()])

    def to_json_obj(self) -> dict[str, Any]:
        """A JSON-ready form ``{"max": {writer: n}, "extra": [[writer, seq], ...]}`` for storage."""
        return {"max": dict(self.max_contig), "extra": [[d.writer, d.seq] for d in self.extra]}

    @classmethod
    def from_json_obj(cls, obj: Mapping[str, Any]) -> CausalContext:
        """The context stored by :meth:`to_json_obj`."""
        maxima: Mapping[str, int] = obj.get("max", {})
        dots = [Dot(w, s) for w, top in maxima.items() for s in range(1, int(top) + 1)]
        dots += [Dot(str(w), int(s)) for w, s in obj.get("extra", [])]
        return cls.from_dots(dots)

    def rev(self) -> str:
        """The content-derived revision id of a materialisation that has seen exactly these dots."""
        canonical = json.dumps(self.to_json_obj(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


EMPTY_CONTEXT = CausalContext()


@dataclass(frozen=True, slots=True)
class EntityOp:
    """One update of one entity: only the fields it changes (label as ``__label``)."""

    op_id: str
    dot: Dot
    context: CausalContext
    fields: Mapping[str, str]
    hlc: int
    source: str = ""  # the submission instance id (or "resolve:<user>") that produced the op
    unknown_base: bool = False

    def tie_break_key(self) -> tuple[int, str, int, str]:
        """Order among concurrent writes: latest capture time, then writer (device id), then seq."""
        return (self.hlc, self.dot.writer, self.dot.seq, self.op_id)


def entity_op_fingerprint(op: EntityOp) -> str:
    """A sha256 of the op's content: same ``op_id`` with another fingerprint is an id conflict."""
    canonical = json.dumps(
        {
            "op_id": op.op_id,
            "dot": [op.dot.writer, op.dot.seq],
            "ctx": op.context.to_json_obj(),
            "fields": dict(sorted(op.fields.items())),
            "hlc": op.hlc,
            "source": op.source,
            "unknown_base": op.unknown_base,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def saw(later: EntityOp, earlier: EntityOp) -> bool:
    """Whether ``later`` directly saw ``earlier`` (its context covers it, or it is an own earlier op)."""
    if later.op_id == earlier.op_id:
        return False
    if later.dot.writer == earlier.dot.writer and earlier.dot.seq < later.dot.seq:
        return True
    return later.context.covers(earlier.dot)


@dataclass(frozen=True, slots=True)
class FieldCandidate:
    """One competing write of a field in a hard conflict."""

    value: str
    dot: Dot
    op_id: str
    hlc: int


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """A hard-conflicting field: ``candidates`` are every competing write, the provisional winner first."""

    field: str
    candidates: tuple[FieldCandidate, ...]

    @property
    def winner(self) -> FieldCandidate:
        """The deterministic provisional winner."""
        return self.candidates[0]


@dataclass(frozen=True, slots=True)
class EntityState:
    """An entity materialised from a set of ops (identical for any order or duplication of that set)."""

    properties: Mapping[str, str]
    label: str | None
    version: int
    rev: str
    seen: CausalContext
    heads: tuple[Dot, ...]
    conflict: ConflictKind | None
    conflict_fields: tuple[FieldConflict, ...] = ()  # hard fields only, sorted by name
    concurrent_fields: tuple[str, ...] = ()  # fields written by the heads when there are several
    deleted: bool = False  # the winning value of ``__deleted`` is ``"1"``

    @property
    def conflict_field_names(self) -> tuple[str, ...]:
        """The fields to show with the conflict flag: the hard ones, else the concurrently written ones."""
        if self.conflict == "hard":
            return tuple(c.field for c in self.conflict_fields)
        if self.conflict == "soft":
            return self.concurrent_fields
        return ()


def _distinct_ops(ops: Iterable[EntityOp]) -> list[EntityOp]:
    # Duplicates by op_id count once. Intake refuses a reused op_id with other content; should such a
    # pair reach us anyway, keep the smallest fingerprint so the result stays order-independent.
    by_id: dict[str, tuple[str, EntityOp]] = {}
    for op in ops:
        fingerprint = entity_op_fingerprint(op)
        kept = by_id.get(op.op_id)
        if kept is None or fingerprint < kept[0]:
            by_id[op.op_id] = (fingerprint, op)
    # Sorting only makes iteration deterministic; the result does not depend on it.
    return sorted((op for _, op in by_id.values()), key=EntityOp.tie_break_key)


def _ancestors(ops: Sequence[EntityOp]) -> list[int]:
    """For each op, a bitset of the ops it saw, directly or transitively."""
    n = len(ops)
    reach = [0] * n
    for i, later in enumerate(ops):
        for j, earlier in enumerate(ops):
            if i != j and saw(later, earlier):
                reach[i] |= 1 << j
    # Transitive closure (Warshall on bitsets): contexts built from served revisions are already
    # closed, but adapters and hand-built ops need not be.
    for k in range(n):
        bit = 1 << k
        for i in range(n):
            if reach[i] & bit:
                reach[i] |= reach[k]
    return reach


def merge_entity_updates(ops: Iterable[EntityOp]) -> EntityState:
    """Materialise an entity from the set of its ops: values, label, version, rev, conflicts, heads."""
    distinct = _distinct_ops(ops)
    reach = _ancestors(distinct)

    def happened_before(a: int, b: int) -> bool:
        # Strict: a cycle (impossible for real ops) makes its members concurrent, not both dominated.
        return bool(reach[b] >> a & 1) and not reach[a] >> b & 1

    writers_of: dict[str, list[int]] = {}
    for i, op in enumerate(distinct):
        for name in op.fields:
            writers_of.setdefault(name, []).append(i)

    values: dict[str, str] = {}
    hard: list[FieldConflict] = []
    for name in sorted(writers_of):
        writes = writers_of[name]
        frontier = [a for a in writes if not any(happened_before(a, b) for b in writes)]
        frontier.sort(key=lambda i: distinct[i].tie_break_key(), reverse=True)
        values[name] = distinct[frontier[0]].fields[name]
        if len({distinct[i].fields[name] for i in frontier}) > 1:
            hard.append(
                FieldConflict(
                    field=name,
                    candidates=tuple(
                        FieldCandidate(
                            value=distinct[i].fields[name],
                            dot=distinct[i].dot,
                            op_id=distinct[i].op_id,
                            hlc=distinct[i].hlc,
                        )
                        for i in frontier
                    ),
                )
            )

    head_ops = [op for a, op in enumerate(distinct) if not any(happened_before(a, b) for b in range(len(distinct)))]
    concurrent_fields: tuple[str, ...] = ()
    if len(head_ops) > 1:
        concurrent_fields = tuple(sorted({name for op in head_ops for name in op.fields}))
    conflict: ConflictKind | None = "hard" if hard else ("soft" if len(head_ops) > 1 else None)
    seen = CausalContext.from_dots(op.dot for op in distinct)
    label = values.pop(LABEL_FIELD, None)
    deleted = values.pop(DELETED_FIELD, RESTORED) == DELETED
    return EntityState(
        properties=values,
        label=label,
        version=len(distinct),
        rev=seen.rev(),
        seen=seen,
        heads=tuple(sorted(op.dot for op in head_ops)),
        conflict=conflict,
        conflict_fields=tuple(hard),
        concurrent_fields=concurrent_fields,
        deleted=deleted,
    )


# ---------------------------------------------------------------------------------------------------
# Intake outcome of one op


def decide_entity_op(
    stored: Iterable[EntityOp], incoming: EntityOp
) -> Created | Updated | Duplicate | Conflict | Rejected:
    """The push outcome of ``incoming`` given the entity's stored ops (the merge itself is order-free).

    Same ``op_id`` and content: ``Duplicate``; same ``op_id`` or dot with other content: ``Rejected``.
    Otherwise ``Conflict`` when the merged entity has a conflict this op takes part in (a hard field it
    competes on, or it is one of several heads), else ``Created`` (first op) / ``Updated``.
    """
    stored_ops = list(stored)
    fingerprint = entity_op_fingerprint(incoming)
    for op in stored_ops:
        if op.op_id == incoming.op_id:
            if entity_op_fingerprint(op) == fingerprint:
                return Duplicate()
            return Rejected(ID_CONFLICT, f"op {incoming.op_id} was already received with other content")
        if op.dot == incoming.dot:
            return Rejected(DOT_CONFLICT, f"dot {incoming.dot.writer}:{incoming.dot.seq} is used by {op.op_id}")
    state = merge_entity_updates([*stored_ops, incoming])
    hard_fields = tuple(
        c.field for c in state.conflict_fields if any(cand.op_id == incoming.op_id for cand in c.candidates)
    )
    if hard_fields:
        return Conflict("hard", hard_fields)
    if len(state.heads) > 1 and incoming.dot in state.heads:
        return Conflict("soft", tuple(sorted(incoming.fields)))
    if not stored_ops:
        return Created()
    return Updated()


# ---------------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True, slots=True)
class Resolver:
    """Who resolves: a server writer (``srv:<user>``) with the next seq the server allocated for it."""

    writer: str
    seq: int
    op_id: str
    hlc: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class StaleBase:
    """The resolution was based on a rev that is no longer current (HTTP ``409``, with the current one)."""

    current_rev: str
    current_version: int
    http_status: int = 409
    code: str = "stale_base"


def resolve(
    state: EntityState,
    base_rev: str,
    fields: Mapping[str, str],
    resolver: Resolver,
    *,
    accept_current: Iterable[str] = (),
) -> EntityOp | StaleBase:
    """A reviewer's resolution op: its context covers every head, so every field it writes is settled.

    ``fields`` are the chosen values; hard fields not listed are re-written with their provisional
    winner (and so are ``accept_current`` fields), so no hard conflict survives the resolution.
    """
    if base_rev != state.rev:
        return StaleBase(current_rev=state.rev, current_version=state.version)
    current = dict(state.properties)
    if state.label is not None:
        current[LABEL_FIELD] = state.label
    if state.deleted:
        current[DELETED_FIELD] = DELETED
    written: dict[str, str] = {c.field: c.winner.value for c in state.conflict_fields}
    for name in accept_current:
        if name in current:
            written[name] = current[name]
    written.update(fields)
    return EntityOp(
        op_id=resolver.op_id,
        dot=Dot(resolver.writer, resolver.seq),
        context=state.seen,  # covers every op of the state, hence every head and competing write
        fields=written,
        hlc=resolver.hlc,
        source=f"resolve:{resolver.writer}",
    )


def deletion_settled(state: EntityState, *, deleted: bool) -> bool:
    """Whether the entity already is deleted (or restored) with no competing ``__deleted`` value.

    A delete (restore) of such an entity would add nothing but a version: the server writes no op.
    """
    contested = any(c.field == DELETED_FIELD for c in state.conflict_fields)
    return state.deleted == deleted and not contested


def deletion_op(state: EntityState, base_rev: str, resolver: Resolver, *, deleted: bool = True) -> EntityOp | StaleBase:
    """A reviewer's delete (``deleted=True``) or restore op, based on the whole current state.

    It writes only ``__deleted``; its context covers every op of ``state``, so it wins over every
    write of ``__deleted`` it saw and settles a hard conflict on that field. Updates it did not see
    stay concurrent with it (soft conflict: the entity stays deleted, their values are kept).
    """
    if base_rev != state.rev:
        return StaleBase(current_rev=state.rev, current_version=state.version)
    return EntityOp(
        op_id=resolver.op_id,
        dot=Dot(resolver.writer, resolver.seq),
        context=state.seen,
        fields={DELETED_FIELD: DELETED if deleted else RESTORED},
        hlc=resolver.hlc,
        source=f"{'delete' if deleted else 'restore'}:{resolver.writer}",
    )


# ---------------------------------------------------------------------------------------------------
# ODK Collect adapter


def create_dot(entity_id: str) -> Dot:
    """The dot of an entity's create op (an entity is created once)."""
    return Dot(f"create:{entity_id}", 1)


@dataclass(frozen=True, slots=True)
class OdkOpPlan:
    """Where an ODK entity change sits causally: its dot and the context it was based on."""

    dot: Dot
    context: CausalContext
    unknown_base: bool


def plan_odk_change(change: EntityChange, *, op_id: str, served_versions: Mapping[int, CausalContext]) -> OdkOpPlan:
    """The dot and context of an ODK entity change (see the module docstring for the mapping)."""
    if change.create and change.base_version is None:
        return OdkOpPlan(dot=create_dot(change.entity_id), context=EMPTY_CONTEXT, unknown_base=False)
    base = change.base_version if change.base_version is not None else 1
    if change.branch_id:
        trunk = change.trunk_version
        if trunk is None:
            # A branch on an entity created offline: local versions start at the create (version 1).
            dot = Dot(f"branch:{change.branch_id}", max(base, 1))
            return OdkOpPlan(
                dot=dot, context=CausalContext.from_dots([create_dot(change.entity_id)]), unknown_base=False
            )
        dot = Dot(f"branch:{change.branch_id}", max(base - trunk + 1, 1))
        known = served_versions.get(trunk)
    else:
        dot = Dot(f"odk:{op_id}", 1)
        known = served_versions.get(base)
    if known is None:
        return OdkOpPlan(dot=dot, context=EMPTY_CONTEXT, unknown_base=True)
    return OdkOpPlan(dot=dot, context=known, unknown_base=False)


def entity_op_from_odk(
    change: EntityChange,
    *,
    op_id: str,
    hlc: int,
    served_versions: Mapping[int, CausalContext],
    source: str = "",
) -> EntityOp:
    """Turn a submission's ``meta/entity`` block into an op (the label becomes the field ``__label``)."""
    plan = plan_odk_change(change, op_id=op_id, served_versions=served_versions)
    fields = dict(change.properties)
    if change.label is not None:
        fields[LABEL_FIELD] = change.label
    return EntityOp(
        op_id=op_id,
        dot=plan.dot,
        context=plan.context,
        fields=fields,
        hlc=hlc,
        source=source or op_id,
        unknown_base=plan.unknown_base,
    )


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """A row of the revisions table: what version ``version`` / ``rev`` had seen."""

    version: int
    rev: str
    seen: CausalContext = field(default=EMPTY_CONTEXT)


def served_version(state: EntityState) -> ServedVersion:
    """The revisions-table row to record after materialising ``state`` (immutable once written)."""
    return ServedVersion(version=state.version, rev=state.rev, seen=state.seen)


# ---------------------------------------------------------------------------------------------------
# Office relays


@dataclass(frozen=True, slots=True)
class RelayedBase:
    """What an office's op had seen, as the office computed it at intake (its context, in dots).

    An office serves its own version numbers: a phone there bases an update on a version that may
    hold office updates the national server has not received yet, so the number means another set
    (or nothing) nationally. Dots mean the same everywhere (an op's dot and op id derive from its
    submission), so the relay sends the office's context with the submission and the national server
    stores the op with it instead of reading ``baseVersion`` against its own versions.
    """

    context: CausalContext
    unknown_base: bool = False


MAX_RELAYED_SEQ = 100_000
MAX_RELAYED_DOTS = 100_000


def relayed_bases(raw: object) -> dict[str, RelayedBase] | None:
    """The ``entityOps`` a relay sends with a submission: ``opId -> RelayedBase``; ``None`` if malformed.

    The wire form is ``[{"opId": str, "context": {"max": {writer: n}, "extra": [[writer, seq]]},
    "unknownBase": bool}, ...]`` (the context as :meth:`CausalContext.to_json_obj` writes it).
    """
    if not isinstance(raw, list):
        return None
    bases: dict[str, RelayedBase] = {}
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("opId"), str):
            return None
        context = entry.get("context")
        if not isinstance(context, dict) or not isinstance(entry.get("unknownBase", False), bool):
            return None
        maxima, extra = context.get("max", {}), context.get("extra", [])
        if not isinstance(maxima, dict) or not isinstance(extra, list):
            return None
        if not all(
            isinstance(w, str) and isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_RELAYED_SEQ
            for w, n in maxima.items()
        ):
            return None
        if sum(maxima.values()) + len(extra) > MAX_RELAYED_DOTS:
            return None  # a context is expanded dot by dot: bound the work a relay can ask for
        if not all(
            isinstance(d, list)
            and len(d) == 2
            and isinstance(d[0], str)
            and isinstance(d[1], int)
            and not isinstance(d[1], bool)
            and 1 <= d[1] <= MAX_RELAYED_SEQ
            for d in extra
        ):
            return None
        bases[entry["opId"]] = RelayedBase(CausalContext.from_json_obj(context), bool(entry.get("unknownBase", False)))
    return bases
