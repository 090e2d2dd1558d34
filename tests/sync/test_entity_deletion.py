"""Property tests of entity deletion and restore: ops writing the reserved field ``__deleted``.

Histories are those of ``entity_histories`` with deletes ("1") and restores ("0") mixed into the
coaches' edits; the oracles use the exact contexts of those histories, not the module's closure.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.entities import (
    DELETED,
    DELETED_FIELD,
    LABEL_FIELD,
    RESERVED_FIELDS,
    RESTORED,
    CausalContext,
    Dot,
    EntityOp,
    EntityState,
    Resolver,
    StaleBase,
    decide_entity_op,
    deletion_op,
    deletion_settled,
    merge_entity_updates,
    resolve,
)
from sync.outcomes import Conflict
from tests.sync.entity_histories import COACHES, Edit, Sync, build_history, frontier, heads, histories

SETTINGS = settings(deadline=None, max_examples=60)


def _deleted_value(drawn: str) -> str:
    return DELETED if drawn == "A" else RESTORED


_edits_with_deletion = st.builds(
    Edit,
    coach=st.integers(0, len(COACHES) - 1),
    fields=st.dictionaries(
        st.sampled_from(("phone", "members_count", LABEL_FIELD, DELETED_FIELD)),
        st.sampled_from(("A", "B")),
        min_size=1,
    ).map(
        # __deleted only ever holds "1" or "0"; an A/B draw maps onto them.
        lambda d: tuple(sorted((k, _deleted_value(v) if k == DELETED_FIELD else v) for k, v in d.items()))
    ),
    hlc=st.integers(0, 4),
)
_syncs = st.builds(Sync, learner=st.integers(0, len(COACHES) - 1), teacher=st.integers(0, len(COACHES) - 1))
histories_with_deletion = (
    st.lists(st.one_of(_edits_with_deletion, _syncs), min_size=1, max_size=14).map(build_history).filter(bool)
)

REVIEWER = "srv:manager"


def _reviewer(seq: int, hlc: int = 2) -> Resolver:
    return Resolver(writer=REVIEWER, seq=seq, op_id=f"reviewer-{seq}", hlc=hlc)


def _hard_fields(state: EntityState) -> list[str]:
    return [c.field for c in state.conflict_fields]


def _settled(ops: list[EntityOp]) -> list[EntityOp]:
    """The history plus a reviewer's resolution of whatever conflict it left: one head, no conflict."""
    state = merge_entity_updates(ops)
    resolution = resolve(state, state.rev, {}, Resolver("srv:lead", 1, "lead-1", 0))
    assert isinstance(resolution, EntityOp)
    return [*ops, resolution]


@SETTINGS
@given(ops=histories_with_deletion, data=st.data())
def test_deleted_ignores_order_and_duplicates(ops: list[EntityOp], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(ops))
    resent = data.draw(st.lists(st.sampled_from(ops), max_size=len(ops)))
    assert merge_entity_updates(shuffled + resent) == merge_entity_updates(ops)


@SETTINGS
@given(ops=histories_with_deletion)
def test_deleted_is_the_winning_value_and_never_a_property(ops: list[EntityOp]) -> None:
    state = merge_entity_updates(ops)
    candidates = frontier(ops, DELETED_FIELD)
    expected = bool(candidates) and max(candidates, key=EntityOp.tie_break_key).fields[DELETED_FIELD] == DELETED
    assert state.deleted is expected
    assert not RESERVED_FIELDS & set(state.properties)
    hard_on_deleted = len({op.fields[DELETED_FIELD] for op in candidates}) > 1
    assert (DELETED_FIELD in _hard_fields(state)) is hard_on_deleted
    if len(heads(ops)) > 1 and not state.conflict_fields:
        assert state.conflict == "soft"


@SETTINGS
@given(ops=histories, hlc=st.integers(0, 4))
def test_a_delete_that_saw_everything_deletes_and_a_restore_brings_every_value_back(
    ops: list[EntityOp], hlc: int
) -> None:
    state = merge_entity_updates(ops)
    assert not state.deleted and not deletion_settled(state, deleted=True)
    delete = deletion_op(state, state.rev, _reviewer(1, hlc))
    assert isinstance(delete, EntityOp)
    assert dict(delete.fields) == {DELETED_FIELD: DELETED}
    deleted = merge_entity_updates([*ops, delete])
    assert deleted.deleted
    assert deleted.heads == (delete.dot,)
    assert deleted.version == state.version + 1
    assert (deleted.properties, deleted.label) == (state.properties, state.label)
    assert _hard_fields(deleted) == _hard_fields(state)  # deleting settles no other field
    assert deletion_settled(deleted, deleted=True)

    restore = deletion_op(deleted, deleted.rev, _reviewer(2, 0), deleted=False)  # an older clock changes nothing
    assert isinstance(restore, EntityOp)
    restored = merge_entity_updates([*ops, delete, restore])
    assert not restored.deleted
    assert (restored.properties, restored.label) == (state.properties, state.label)
    assert restored.heads == (restore.dot,)


@SETTINGS
@given(ops=histories_with_deletion)
def test_a_stale_base_is_refused(ops: list[EntityOp]) -> None:
    state = merge_entity_updates(ops)
    stale = deletion_op(state, "0" * 16, _reviewer(1))
    assert stale == StaleBase(current_rev=state.rev, current_version=state.version)


@SETTINGS
@given(
    ops=histories,
    late_fields=st.dictionaries(st.sampled_from(["phone", "members_count"]), st.just("Z"), min_size=1),
    hlc=st.integers(0, 4),
)
def test_an_update_concurrent_with_a_delete_is_soft_and_the_entity_stays_deleted(
    ops: list[EntityOp], late_fields: dict[str, str], hlc: int
) -> None:
    ops = _settled(ops)
    state = merge_entity_updates(ops)
    delete = deletion_op(state, state.rev, _reviewer(1))
    assert isinstance(delete, EntityOp)
    # A coach who had pulled everything but the delete edits offline and syncs afterwards.
    late = EntityOp("late-1", Dot("coach-late", 1), state.seen, late_fields, hlc)
    outcome = decide_entity_op([*ops, delete], late)
    assert outcome == Conflict("soft", tuple(sorted(late_fields)))
    after = merge_entity_updates([*ops, delete, late])
    assert after.deleted
    assert after.conflict == "soft"
    assert sorted(after.heads) == sorted([delete.dot, late.dot])
    assert set(after.concurrent_fields) == {DELETED_FIELD, *late_fields}
    for name, value in late_fields.items():
        assert after.properties[name] == value  # kept for a restore
    restore = deletion_op(after, after.rev, _reviewer(2), deleted=False)
    assert isinstance(restore, EntityOp)
    restored = merge_entity_updates([*ops, delete, late, restore])
    assert not restored.deleted and restored.conflict is None
    assert {name: restored.properties[name] for name in late_fields} == late_fields


@SETTINGS
@given(
    ops=histories,
    delete_hlc=st.integers(0, 4),
    restore_hlc=st.integers(0, 4),
    chosen=st.sampled_from([DELETED, RESTORED, None]),
)
def test_a_delete_concurrent_with_a_restore_is_hard_and_resolve_settles_it(
    ops: list[EntityOp], delete_hlc: int, restore_hlc: int, chosen: str | None
) -> None:
    ops = _settled(ops)
    state = merge_entity_updates(ops)
    first = deletion_op(state, state.rev, _reviewer(1))
    assert isinstance(first, EntityOp)
    deleted = merge_entity_updates([*ops, first])
    # Two managers looking at the deleted entity: one deletes it again, the other restores it.
    again = deletion_op(deleted, deleted.rev, Resolver("srv:ana", 1, "ana-1", delete_hlc))
    back = deletion_op(deleted, deleted.rev, Resolver("srv:bob", 1, "bob-1", restore_hlc), deleted=False)
    assert isinstance(again, EntityOp) and isinstance(back, EntityOp)
    contested = merge_entity_updates([*ops, first, again, back])
    assert DELETED_FIELD in _hard_fields(contested)
    assert contested.conflict == "hard"
    winner = max([again, back], key=EntityOp.tie_break_key)
    assert contested.deleted is (winner is again)
    assert not deletion_settled(contested, deleted=contested.deleted)

    fields = {} if chosen is None else {DELETED_FIELD: chosen}
    resolution = resolve(contested, contested.rev, fields, _reviewer(2))
    assert isinstance(resolution, EntityOp)
    after = merge_entity_updates([*ops, first, again, back, resolution])
    assert DELETED_FIELD not in _hard_fields(after)
    assert after.conflict is None
    assert after.deleted is (contested.deleted if chosen is None else chosen == DELETED)
    assert merge_entity_updates([resolution, back, *reversed(ops), again, first]) == after


def test_a_restore_of_an_entity_never_deleted_is_settled() -> None:
    create = EntityOp("c", Dot("create:e1", 1), CausalContext(), {"phone": "1"}, 0)
    state = merge_entity_updates([create])
    assert not state.deleted
    assert deletion_settled(state, deleted=False)
    assert not deletion_settled(state, deleted=True)
