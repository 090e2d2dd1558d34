"""Examples of the entity merge: two coaches, Amina and Brice, update the "Coopérative Espoir".

Rules shown (SYNC.md "Shared records"): E1 concurrent different fields → soft; E2 concurrent different
values → hard with a provisional winner (capture time, then device id, then seq) and the losing value
kept; E3 concurrent identical values are not hard; E4 a hard conflict clears only with a write that
saw every competing value; E5 resolution with a stale base is refused; E6 arrival order never matters;
E7 ODK Collect branches and versions; E8 intake outcomes of one op.
"""

from __future__ import annotations

import pytest

from forms.record import EntityChange
from sync.entities import (
    LABEL_FIELD,
    CausalContext,
    Dot,
    EntityOp,
    Resolver,
    StaleBase,
    create_dot,
    decide_entity_op,
    entity_op_from_odk,
    merge_entity_updates,
    resolve,
    served_version,
)
from sync.outcomes import DOT_CONFLICT, ID_CONFLICT, Conflict, Created, Duplicate, Rejected, Updated

CREATE = EntityOp(
    op_id="sub-admin-create",
    dot=Dot("srv:admin", 1),
    context=CausalContext(),
    fields={LABEL_FIELD: "Coopérative Espoir", "phone": "+256 700 000000", "members_count": "40"},
    hlc=1_000,
)
AFTER_CREATE = CausalContext.from_dots([CREATE.dot])


def amina(seq: int, hlc: int, context: CausalContext = AFTER_CREATE, **fields: str) -> EntityOp:
    return EntityOp(f"amina-{seq}", Dot("coach-amina", seq), context, fields, hlc)


def brice(seq: int, hlc: int, context: CausalContext = AFTER_CREATE, **fields: str) -> EntityOp:
    return EntityOp(f"brice-{seq}", Dot("coach-brice", seq), context, fields, hlc)


def test_created_entity_has_its_label_and_properties_and_no_conflict() -> None:
    state = merge_entity_updates([CREATE])
    assert state.label == "Coopérative Espoir"
    assert state.properties == {"phone": "+256 700 000000", "members_count": "40"}
    assert (state.version, state.conflict, state.heads) == (1, None, (CREATE.dot,))


def test_e1_coaches_changing_different_fields_merge_with_a_soft_conflict() -> None:
    state = merge_entity_updates(
        [CREATE, amina(1, 2_000, phone="+256 711 111111"), brice(1, 3_000, members_count="41")]
    )
    assert state.properties == {"phone": "+256 711 111111", "members_count": "41"}
    assert state.conflict == "soft"
    assert state.conflict_field_names == ("members_count", "phone")
    assert state.conflict_fields == ()


def test_e2_coaches_changing_the_same_field_is_hard_and_keeps_the_losing_value() -> None:
    state = merge_entity_updates(
        [CREATE, amina(1, 2_000, phone="+256 711 111111"), brice(1, 3_000, phone="+256 722 222222")]
    )
    assert state.conflict == "hard"
    assert state.properties["phone"] == "+256 722 222222"  # Brice captured it later
    (phone,) = state.conflict_fields
    assert [(c.value, c.dot) for c in phone.candidates] == [
        ("+256 722 222222", Dot("coach-brice", 1)),
        ("+256 711 111111", Dot("coach-amina", 1)),
    ]


@pytest.mark.parametrize(
    ("amina_hlc", "brice_hlc", "winner"),
    [(5_000, 3_000, "amina"), (3_000, 3_000, "brice"), (2_000, 3_000, "brice")],
    ids=["later-capture-wins", "tie-broken-by-device-id", "earlier-capture-loses"],
)
def test_e2_provisional_winner_is_deterministic(amina_hlc: int, brice_hlc: int, winner: str) -> None:
    ops = [CREATE, amina(1, amina_hlc, phone="amina's"), brice(1, brice_hlc, phone="brice's")]
    assert merge_entity_updates(ops).properties["phone"] == f"{winner}'s"


def test_e2_causality_beats_clocks_a_later_edit_wins_even_with_an_older_clock() -> None:
    first = amina(1, 9_000, phone="+256 711 111111")
    seen = CausalContext.from_dots([CREATE.dot, first.dot])
    state = merge_entity_updates([CREATE, first, brice(1, 1_000, seen, phone="+256 722 222222")])
    assert state.properties["phone"] == "+256 722 222222"
    assert state.conflict is None


def test_e3_the_same_value_entered_by_both_coaches_is_not_hard() -> None:
    state = merge_entity_updates([CREATE, amina(1, 2_000, members_count="41"), brice(1, 3_000, members_count="41")])
    assert state.conflict == "soft"
    assert state.properties["members_count"] == "41"


def test_e4_reviewer_resolution_clears_the_hard_conflict_and_syncs_as_an_op() -> None:
    state = merge_entity_updates([CREATE, amina(1, 2_000, phone="+256 711"), brice(1, 3_000, phone="+256 722")])
    reviewer = Resolver(writer="srv:reviewer-fatou", seq=1, op_id="resolve-1", hlc=500)
    op = resolve(state, state.rev, {"phone": "+256 733"}, reviewer, accept_current=["members_count"])
    assert isinstance(op, EntityOp)
    assert op.fields == {"phone": "+256 733", "members_count": "40"}
    after = merge_entity_updates([CREATE, amina(1, 2_000, phone="+256 711"), brice(1, 3_000, phone="+256 722"), op])
    assert after.properties["phone"] == "+256 733"  # despite its older capture time
    assert (after.conflict, after.heads) == (None, (op.dot,))


def test_e4_a_coach_who_saw_both_values_and_re_enters_one_clears_it_too() -> None:
    ops = [CREATE, amina(1, 2_000, phone="+256 711"), brice(1, 3_000, phone="+256 722")]
    pulled = merge_entity_updates(ops).seen
    state = merge_entity_updates([*ops, amina(2, 4_000, pulled, phone="+256 711")])
    assert (state.conflict, state.properties["phone"]) == (None, "+256 711")


def test_e4_an_edit_that_saw_only_one_side_does_not_clear_it() -> None:
    ops = [CREATE, amina(1, 2_000, phone="+256 711"), brice(1, 3_000, phone="+256 722")]
    state = merge_entity_updates([*ops, amina(2, 9_000, phone="+256 799")])  # Amina never pulled
    assert state.conflict == "hard"
    assert {c.value for c in state.conflict_fields[0].candidates} == {"+256 799", "+256 722"}


def test_e5_resolution_on_a_stale_rev_is_refused_with_the_current_one() -> None:
    before = merge_entity_updates([CREATE, amina(1, 2_000, phone="+256 711")])
    now = merge_entity_updates([CREATE, amina(1, 2_000, phone="+256 711"), brice(1, 3_000, phone="+256 722")])
    outcome = resolve(now, before.rev, {"phone": "+256 733"}, Resolver("srv:fatou", 1, "resolve-1", 0))
    assert outcome == StaleBase(current_rev=now.rev, current_version=3)
    assert outcome.http_status == 409


def test_e6_amina_offline_run_arriving_3_1_2_equals_1_2_3() -> None:
    run = [amina(1, 2_000, phone="1"), amina(2, 2_100, phone="2", members_count="41"), amina(3, 2_200, phone="3")]
    in_order = merge_entity_updates([CREATE, *run])
    out_of_order = merge_entity_updates([run[2], CREATE, run[0], run[1]])
    assert out_of_order == in_order
    assert in_order.properties == {"phone": "3", "members_count": "41"}
    assert in_order.version == 4


def test_e6_rev_is_content_derived_and_changes_with_the_set() -> None:
    one = merge_entity_updates([CREATE, amina(1, 2_000, phone="1")])
    assert one.rev == merge_entity_updates([amina(1, 2_000, phone="1"), CREATE, CREATE]).rev
    assert one.rev != merge_entity_updates([CREATE]).rev
    assert len(one.rev) == 16


def collect_update(base: int, trunk: int | None, branch: str | None, **properties: str) -> EntityChange:
    return EntityChange(
        list_name="cooperatives",
        entity_id="coop-espoir",
        create=False,
        update=True,
        label=None,
        base_version=base,
        trunk_version=trunk,
        branch_id=branch,
        properties=properties,
    )


def test_e7_collect_offline_branch_is_ordered_by_base_version_whatever_the_arrival() -> None:
    served = {1: served_version(merge_entity_updates([CREATE])).seen}
    first = entity_op_from_odk(collect_update(1, 1, "b-7", phone="1"), op_id="sub-1", hlc=5, served_versions=served)
    second = entity_op_from_odk(collect_update(2, 1, "b-7", phone="2"), op_id="sub-2", hlc=4, served_versions=served)
    assert (first.dot, second.dot) == (Dot("branch:b-7", 1), Dot("branch:b-7", 2))
    state = merge_entity_updates([second, CREATE, first])
    assert (state.properties["phone"], state.conflict, state.version) == ("2", None, 3)


def test_e7_collect_update_on_an_older_version_is_concurrent_with_what_it_did_not_see() -> None:
    newer = amina(1, 2_000, phone="+256 711")
    served = {1: AFTER_CREATE, 2: merge_entity_updates([CREATE, newer]).seen}
    on_v1 = entity_op_from_odk(
        collect_update(1, None, None, phone="+256 744"), op_id="sub-9", hlc=1, served_versions=served
    )
    on_v2 = entity_op_from_odk(
        collect_update(2, None, None, phone="+256 755"), op_id="sub-10", hlc=1, served_versions=served
    )
    assert merge_entity_updates([CREATE, newer, on_v1]).conflict == "hard"
    assert merge_entity_updates([CREATE, newer, on_v2]).properties["phone"] == "+256 755"


def test_e7_collect_update_on_an_unknown_version_is_concurrent_with_everything() -> None:
    op = entity_op_from_odk(collect_update(7, None, None, phone="x"), op_id="sub-3", hlc=1, served_versions={})
    assert op.unknown_base
    assert merge_entity_updates([CREATE, op]).conflict == "hard"


def test_e7_collect_offline_create_then_update_links_without_knowing_the_create_op() -> None:
    create = EntityChange(
        "cooperatives", "coop-new", create=True, update=False, label="Coop Neuve", properties={"phone": "1"}
    )
    update = EntityChange(
        "cooperatives",
        "coop-new",
        create=False,
        update=True,
        label=None,
        base_version=1,
        branch_id="b-1",
        properties={"phone": "2"},
    )
    create_op = entity_op_from_odk(create, op_id="sub-c", hlc=9, served_versions={})
    update_op = entity_op_from_odk(update, op_id="sub-u", hlc=1, served_versions={})
    assert create_op.dot == create_dot("coop-new")
    state = merge_entity_updates([update_op, create_op])
    assert (state.label, state.properties, state.conflict) == ("Coop Neuve", {"phone": "2"}, None)


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        ([], CREATE, Created()),
        ([CREATE], CREATE, Duplicate()),
        ([CREATE], amina(1, 2_000, phone="1"), Updated()),
        ([CREATE, amina(1, 2_000, phone="1")], brice(1, 3_000, phone="2"), Conflict("hard", ("phone",))),
        (
            [CREATE, amina(1, 2_000, phone="1")],
            brice(1, 3_000, members_count="2"),
            Conflict("soft", ("members_count",)),
        ),
    ],
    ids=[
        "first-op-creates",
        "resent-op-is-duplicate",
        "edit-updates",
        "competing-phone-is-hard",
        "other-field-is-soft",
    ],
)
def test_e8_intake_outcome(stored: list[EntityOp], incoming: EntityOp, expected: object) -> None:
    assert decide_entity_op(stored, incoming) == expected


@pytest.mark.parametrize(
    ("incoming", "reason"),
    [
        (amina(1, 2_000, phone="other content, same op id"), ID_CONFLICT),
        (EntityOp("amina-other-id", Dot("coach-amina", 1), AFTER_CREATE, {"phone": "9"}, 1), DOT_CONFLICT),
    ],
    ids=["op-id-reused", "dot-reused"],
)
def test_e8_reused_identity_is_rejected(incoming: EntityOp, reason: str) -> None:
    outcome = decide_entity_op([CREATE, amina(1, 2_000, phone="1")], incoming)
    assert isinstance(outcome, Rejected)
    assert outcome.reason == reason


def test_causal_context_is_canonical_and_round_trips_through_json() -> None:
    dots = [Dot("coach-amina", s) for s in (1, 2, 3, 5)] + [Dot("srv:admin", 1)]
    context = CausalContext.from_dots(reversed(dots))
    assert context.max_contig == (("coach-amina", 3), ("srv:admin", 1))
    assert context.extra == (Dot("coach-amina", 5),)
    assert context.covers(Dot("coach-amina", 2)) and not context.covers(Dot("coach-amina", 4))
    assert CausalContext.from_json_obj(context.to_json_obj()) == context
    assert list(context.dots()) == sorted(dots)


def test_relayed_bases_read_the_office_contexts_and_refuse_any_other_shape() -> None:
    from sync.entities import CausalContext, Dot, RelayedBase, relayed_bases

    seen = CausalContext.from_dots([Dot("create:k", 1), Dot("odk:a", 1), Dot("branch:b", 3)])
    wire = [{"opId": "x", "context": seen.to_json_obj(), "unknownBase": False}, {"opId": "y", "context": {}}]
    assert relayed_bases(wire) == {"x": RelayedBase(seen), "y": RelayedBase(CausalContext())}
    assert relayed_bases([{"opId": "z", "context": {}, "unknownBase": True}]) == {
        "z": RelayedBase(CausalContext(), unknown_base=True)
    }
    for bad in (
        None,
        {"opId": "x"},
        [{"context": {}}],
        [{"opId": "x", "context": []}],
        [{"opId": "x", "context": {"max": {"w": "2"}}}],
        [{"opId": "x", "context": {"max": {"w": True}}}],
        [{"opId": "x", "context": {"max": {"w": 10**9}}}],
        [{"opId": "x", "context": {"max": {f"w{i}": 90_000 for i in range(2)}}}],
        [{"opId": "x", "context": {"extra": [["w", 0]]}}],
        [{"opId": "x", "context": {"extra": [["w"]]}}],
        [{"opId": "x", "context": {"extra": [["w", True]]}}],
        [{"opId": "x", "context": {}, "unknownBase": "no"}],
    ):
        assert relayed_bases(bad) is None, bad
