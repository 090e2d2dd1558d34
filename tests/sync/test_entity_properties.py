"""Property tests of the entity merge (SYNC.md invariants 1, 2, 5; research §9 items 8-11).

Histories come from ``entity_histories``: coaches editing one cooperative offline and syncing now
and then. The oracles use the exact contexts of those histories, not the module's own closure.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from forms.record import EntityChange
from sync.entities import (
    LABEL_FIELD,
    CausalContext,
    Dot,
    EntityOp,
    EntityState,
    Resolver,
    decide_entity_op,
    entity_op_from_odk,
    merge_entity_updates,
    resolve,
)
from sync.outcomes import Rejected
from tests.sync.entity_histories import frontier, heads, histories

SETTINGS = settings(deadline=None, max_examples=60)


@SETTINGS
@given(ops=histories, data=st.data())
def test_merge_ignores_order_and_duplicates(ops: list[EntityOp], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(ops))
    resent = data.draw(st.lists(st.sampled_from(ops), max_size=len(ops)))
    assert merge_entity_updates(shuffled + resent) == merge_entity_updates(ops)


@SETTINGS
@given(ops=histories, data=st.data())
def test_any_split_into_pushes_converges_to_one_delivery(ops: list[EntityOp], data: st.DataObject) -> None:
    arrival = data.draw(st.permutations(ops))
    arrival += data.draw(st.lists(st.sampled_from(ops), max_size=3))  # a response lost, items resent
    stored: list[EntityOp] = []
    for op in arrival:
        outcome = decide_entity_op(stored, op)
        assert not isinstance(outcome, Rejected)
        if outcome.status != "duplicate":
            stored.append(op)
        else:
            assert op in stored
    assert len(stored) == len(ops)
    assert merge_entity_updates(stored) == merge_entity_updates(ops)


@SETTINGS
@given(ops=histories)
def test_winner_is_the_latest_concurrent_write_and_never_an_overwritten_one(ops: list[EntityOp]) -> None:
    state = merge_entity_updates(ops)
    written = {name for op in ops for name in op.fields}
    for name in written:
        candidates = frontier(ops, name)
        expected = max(candidates, key=EntityOp.tie_break_key).fields[name]
        value = state.label if name == LABEL_FIELD else state.properties[name]
        assert value == expected


@SETTINGS
@given(ops=histories)
def test_hard_iff_concurrent_different_values_and_soft_iff_several_heads(ops: list[EntityOp]) -> None:
    state = merge_entity_updates(ops)
    written = {name for op in ops for name in op.fields}
    expected_hard = sorted(n for n in written if len({op.fields[n] for op in frontier(ops, n)}) > 1)
    assert [c.field for c in state.conflict_fields] == expected_hard
    for conflict in state.conflict_fields:
        # Every competing write is kept, with its dot, the provisional winner first.
        assert {c.dot for c in conflict.candidates} == {op.dot for op in frontier(ops, conflict.field)}
        assert conflict.winner.value == state_value(state, conflict.field)
    several_heads = len(heads(ops)) > 1
    assert sorted(state.heads) == sorted(op.dot for op in heads(ops))
    if expected_hard:
        assert state.conflict == "hard"
    elif several_heads:
        assert state.conflict == "soft"
    else:
        assert state.conflict is None


def state_value(state: EntityState, name: str) -> str | None:
    """The merged value of a field, the label included."""
    return state.label if name == LABEL_FIELD else state.properties.get(name)


@SETTINGS
@given(ops=histories, chosen=st.sampled_from(["A", "B", "C"]), hlc=st.integers(0, 4))
def test_resolution_covers_every_head_and_clears_every_conflict(ops: list[EntityOp], chosen: str, hlc: int) -> None:
    state = merge_entity_updates(ops)
    reviewer = Resolver(writer="srv:reviewer", seq=1, op_id="resolve-1", hlc=hlc)
    fields = {c.field: chosen for c in state.conflict_fields[:1]}  # one chosen, the others accepted
    op = resolve(state, state.rev, fields, reviewer)
    assert isinstance(op, EntityOp)
    after = merge_entity_updates([*ops, op])
    assert after.conflict is None
    assert after.heads == (op.dot,)
    assert after.version == state.version + 1
    for name, value in fields.items():
        assert state_value(after, name) == value


@SETTINGS
@given(ops=histories, data=st.data())
def test_a_write_concurrent_with_the_resolution_reopens_only_its_fields(
    ops: list[EntityOp], data: st.DataObject
) -> None:
    state = merge_entity_updates(ops)
    op = resolve(state, state.rev, {}, Resolver(writer="srv:reviewer", seq=1, op_id="resolve-1", hlc=2))
    assert isinstance(op, EntityOp)
    # A coach still offline, who knew only part of the history, writes afterwards.
    known = data.draw(st.lists(st.sampled_from(ops)))
    late_fields = data.draw(st.dictionaries(st.sampled_from(["phone", "members_count"]), st.just("Z"), min_size=1))
    late = EntityOp(
        op_id="late-1",
        dot=Dot("coach-late", 1),
        context=CausalContext.from_dots(o.dot for o in known),
        fields=late_fields,
        hlc=data.draw(st.integers(0, 4)),
    )
    after = merge_entity_updates([*ops, op, late])
    assert {c.field for c in after.conflict_fields} <= set(late_fields)


@SETTINGS
@given(ops=histories)
def test_one_coach_offline_run_in_any_order_equals_applying_it_in_order(ops: list[EntityOp]) -> None:
    run = [op for op in ops if op.dot.writer == ops[0].dot.writer]
    in_order: dict[str, str] = {}
    for op in sorted(run, key=lambda o: o.dot.seq):
        in_order.update(op.fields)
    state = merge_entity_updates(reversed(run))
    merged = dict(state.properties)
    if state.label is not None:
        merged[LABEL_FIELD] = state.label
    assert merged == in_order
    assert state.conflict is None


@SETTINGS
@given(
    updates=st.lists(
        st.dictionaries(st.sampled_from(["phone", "members_count"]), st.text("0123", min_size=1), min_size=1),
        min_size=1,
        max_size=6,
    ),
    data=st.data(),
)
def test_collect_branch_arriving_out_of_order_equals_in_order(
    updates: list[dict[str, str]], data: st.DataObject
) -> None:
    create = EntityOp("sub-create", Dot("create:coop-1", 1), CausalContext(), {"phone": "0", LABEL_FIELD: "Coop"}, 0)
    served = {1: CausalContext.from_dots([create.dot])}
    branch = [
        entity_op_from_odk(
            EntityChange(
                list_name="cooperatives",
                entity_id="coop-1",
                create=False,
                update=True,
                label=None,
                base_version=1 + i,
                trunk_version=1,
                branch_id="branch-7",
                properties=fields,
            ),
            op_id=f"sub-{i}",
            hlc=10 - i,  # a clock going backwards must not reorder the run
            served_versions=served,
        )
        for i, fields in enumerate(updates)
    ]
    expected = {"phone": "0"}
    for fields in updates:
        expected.update(fields)
    state = merge_entity_updates([create, *data.draw(st.permutations(branch))])
    assert dict(state.properties) == expected
    assert state.conflict is None
    assert state.version == len(updates) + 1
