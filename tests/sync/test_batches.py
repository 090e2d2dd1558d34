"""Push batches: the Idempotency-Key decision table and the shape checks of pushed items.

Rules: B1 a new key is processed; B2 a finished batch with the same body is replayed verbatim; B3 the
same key with another body is 422 (even while in progress); B4 the same body still in progress is 409
with Retry-After; P1 items are told apart and shape-checked without looking at stored state; P2 a bad
item is rejected as unparseable with a path to the problem; P3 an op of another device is refused.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.batches import (
    EntityItem,
    InProgress,
    KeyReused,
    MalformedBody,
    NewBatch,
    PushEnvelope,
    Replay,
    StoredBatch,
    SubmissionItem,
    TooManyItems,
    UnsupportedProtocol,
    body_fingerprint,
    decide_batch,
    decide_old_protocol,
    item_from_protocol_1,
    item_to_protocol_1,
    old_batch_key,
    parse_push_envelope,
    parse_push_item,
)
from sync.entities import LABEL_FIELD, CausalContext, Dot
from sync.outcomes import FOREIGN_DOT, UNPARSEABLE_ITEM, Rejected
from sync.submissions import AttachmentRef

RESPONSE = {"protocol": "fieldsync/2", "results": [{"status": "created"}]}
BODY = b'{"protocol":"fieldsync/2","items":[]}'


@pytest.mark.parametrize(
    ("stored", "body_hash", "expected"),
    [
        (None, "h1", NewBatch("batch-1", "h1")),
        (StoredBatch("batch-1", "h1", "done", RESPONSE), "h1", Replay(RESPONSE)),
        (StoredBatch("batch-1", "h1", "done", RESPONSE), "h2", KeyReused("batch-1")),
        (StoredBatch("batch-1", "h1", "in_progress"), "h2", KeyReused("batch-1")),
        (StoredBatch("batch-1", "h1", "in_progress"), "h1", InProgress("batch-1")),
    ],
    ids=["B1-new", "B2-replay", "B3-reused-after-done", "B3-reused-while-in-progress", "B4-in-progress"],
)
def test_decide_batch(stored: StoredBatch | None, body_hash: str, expected: object) -> None:
    assert decide_batch("batch-1", body_hash, stored) == expected


@settings(deadline=None, max_examples=60)
@given(
    body=st.binary(max_size=64),
    other=st.binary(max_size=64),
    state=st.sampled_from(["in_progress", "done"]),
)
def test_batch_decision_table(body: bytes, other: bytes, state: str) -> None:
    stored = StoredBatch(
        "k", body_fingerprint(body), "done" if state == "done" else "in_progress", RESPONSE if state == "done" else None
    )
    decision = decide_batch("k", body_fingerprint(other), stored)
    if body != other:
        assert decision == KeyReused("k") and decision.http_status == 422
    elif state == "done":
        assert decision == Replay(RESPONSE) and decision.http_status == 200
    else:
        assert isinstance(decision, InProgress) and (decision.http_status, decision.retry_after_s) == (409, 5)
    assert decide_batch("k", body_fingerprint(other), None) == NewBatch("k", body_fingerprint(other))


def test_fingerprint_is_sha256_of_the_body() -> None:
    assert body_fingerprint(BODY) == body_fingerprint(bytes(BODY))
    assert len(body_fingerprint(BODY)) == 64 and body_fingerprint(BODY) != body_fingerprint(BODY + b" ")


SUBMISSION: dict[str, Any] = {
    "instanceId": "uuid:visit-1",
    "formId": "coop_visit",
    "formVersion": "2026-03-01",
    "data": "<data/>",
    "attachments": [{"name": "front.jpg", "sha256": "a" * 64, "size": 10}],
}
ENTITY_1: dict[str, Any] = {  # the same change as fieldsync/1 (snake_case) sent it
    "op_id": "op-1",
    "dot": {"w": "dev-amina", "s": 3},
    "entity": {"list": "cooperatives", "id": "coop-espoir"},
    "base_rev": "0123456789abcdef",
    "fields": {"phone": "+256 711", "members_count": {"set": "41"}},
    "label": "Coopérative Espoir",
    "hlc": 1_767_225_600_123,
    "source_submission": "uuid:visit-1",
}
ENTITY: dict[str, Any] = {
    "opId": "op-1",
    "dot": {"w": "dev-amina", "s": 3},
    "entity": {"list": "cooperatives", "id": "coop-espoir"},
    "baseRev": "0123456789abcdef",
    "fields": {"phone": "+256 711", "members_count": {"set": "41"}},
    "label": "Coopérative Espoir",
    "hlc": 1_767_225_600_123,
}


def test_p1_submission_item_is_parsed() -> None:
    assert parse_push_item(SUBMISSION) == SubmissionItem(
        instance_id="uuid:visit-1",
        form_id="coop_visit",
        form_version="2026-03-01",
        data="<data/>",
        attachments=(AttachmentRef("front.jpg", "a" * 64, 10),),
    )


def test_p1_entity_item_is_parsed_and_becomes_an_op() -> None:
    item = parse_push_item(ENTITY, device_id="dev-amina")
    assert isinstance(item, EntityItem)
    assert item.dot == Dot("dev-amina", 3)
    assert item.fields == {"phone": "+256 711", "members_count": "41", LABEL_FIELD: "Coopérative Espoir"}
    op = item.to_op(CausalContext())
    assert (op.op_id, op.dot, op.hlc, op.source) == ("op-1", Dot("dev-amina", 3), ENTITY["hlc"], "op-1")


def broken(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    item = dict(base)
    for key, value in changes.items():
        if value is ...:
            item.pop(key)
        else:
            item[key] = value
    return item


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ("not an object", "items[0]"),
        ({"formId": "x"}, "items[0]"),
        ({**SUBMISSION, "opId": "both"}, "items[0]"),
        (broken(SUBMISSION, instanceId=...), "instanceId"),
        (broken(SUBMISSION, formVersion=3), "formVersion"),
        (dict(ENTITY_1), "cannot tell a submission (instanceId) from an entity (opId)"),
        ({**ENTITY_1, "type": "entity"}, "opId: required"),
        (broken(SUBMISSION, data=7), "data"),
        (broken(SUBMISSION, attachments=[{"name": "a.jpg", "sha256": "ABC", "size": 1}]), "sha256"),
        (broken(SUBMISSION, attachments=[{"name": "a.jpg", "sha256": "a" * 64, "size": -1}]), "size"),
        (broken(ENTITY, dot={"w": "dev-amina", "s": 0}), "dot.s"),
        (broken(ENTITY, dot={"w": "dev-amina", "s": True}), "dot.s"),
        (broken(ENTITY, fields={"phone": 711}), "fields.phone"),
        (broken(ENTITY, fields={"phone": {"inc": 1}}), "fields.phone"),
        (broken(ENTITY, entity={"list": "cooperatives"}), "entity.id"),
        (broken(ENTITY, hlc="yesterday"), "hlc"),
        (broken(ENTITY, type="photo"), "type"),
    ],
    ids=[
        "not-an-object",
        "neither-kind",
        "both-kinds",
        "missing-instance-id",
        "version-not-a-string",
        "fieldsync-1-item-neither-kind",
        "fieldsync-1-entity-without-op-id",
        "data-not-xml-or-object",
        "bad-sha256",
        "negative-size",
        "seq-zero",
        "seq-boolean",
        "field-value-not-a-string",
        "unsupported-field-operation",
        "entity-without-id",
        "hlc-not-an-int",
        "unknown-type",
    ],
)
def test_p2_bad_items_are_unparseable_with_a_path(item: object, where: str) -> None:
    outcome = parse_push_item(item)
    assert isinstance(outcome, Rejected)
    assert outcome.reason == UNPARSEABLE_ITEM
    assert where in outcome.detail


def test_p3_an_op_with_another_devices_dot_is_refused() -> None:
    outcome = parse_push_item(ENTITY, device_id="dev-brice")
    assert isinstance(outcome, Rejected) and outcome.reason == FOREIGN_DOT


@pytest.mark.parametrize(
    ("body", "expected_type"),
    [
        ({"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b", "items": [SUBMISSION]}, PushEnvelope),
        ({"protocol": "fieldsync/1", "device_id": "d", "batch_id": "b", "items": []}, UnsupportedProtocol),
        ({"protocol": "fieldsync/2", "deviceId": "d", "items": []}, MalformedBody),
        ({"protocol": "fieldsync/2", "device_id": "d", "batch_id": "b", "items": []}, MalformedBody),
        ({"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b", "items": {}}, MalformedBody),
        ({"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b", "items": [{}] * 201}, TooManyItems),
        ([], MalformedBody),
        (
            {"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b", "items": [], "itmes": [SUBMISSION]},
            MalformedBody,
        ),
    ],
    ids=[
        "valid",
        "other-protocol-426",
        "no-batch-id",
        "snake-case-keys",
        "items-not-a-list",
        "too-many-items-413",
        "not-an-object",
        "misspelt-key",
    ],
)
def test_push_envelope(body: object, expected_type: type) -> None:
    assert isinstance(parse_push_envelope(body), expected_type)


def test_v1_an_unknown_key_names_the_camel_case_keys() -> None:
    refused = parse_push_envelope({"protocol": "fieldsync/2", "device_id": "d", "batchId": "b", "items": []})
    assert isinstance(refused, MalformedBody)
    assert refused.detail == "unknown field(s) device_id: a push has only protocol, deviceId, batchId, items"


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, UnsupportedProtocol("fieldsync/1")),
        (StoredBatch("k", "h1", "done", RESPONSE), Replay(RESPONSE)),
        (StoredBatch("k", "h2", "done", RESPONSE), UnsupportedProtocol("fieldsync/1")),
        (StoredBatch("k", "h1", "in_progress"), UnsupportedProtocol("fieldsync/1")),
    ],
    ids=["U1-never-stored", "U2-same-bytes-replay", "U1-other-bytes", "U1-in-progress"],
)
def test_u_a_fieldsync_1_body_replays_only_a_stored_batch_of_the_same_bytes(
    stored: StoredBatch | None, expected: object
) -> None:
    assert decide_old_protocol("h1", stored) == expected


def test_u_the_key_of_a_fieldsync_1_body() -> None:
    assert old_batch_key({"batch_id": "b"}, None) == "b"
    assert old_batch_key({"batch_id": "b"}, "k") == "k"
    assert old_batch_key({"batchId": "b"}, None) is None


SUBMISSION_1: dict[str, Any] = {
    "type": "submission",
    "instance_id": "uuid:visit-2",
    "form_id": "coop_visit",
    "form_version": "2026-03-01",
    "deprecated_id": "uuid:visit-1",
    "data": {"coop_name": "Espoir", "meta/instance_name": "x"},
    "attachments": [],
    "origin": {"device_id": "collect:1", "submitter": "user:amina"},
    "entity_ops": [{"op_id": "o", "context": {"max": {"w_1": 1}}, "unknown_base": False}],
}


def test_u3_item_from_protocol_1_renames_the_protocol_keys_only() -> None:
    assert item_from_protocol_1(ENTITY_1) == {**ENTITY, "sourceSubmission": "uuid:visit-1"}
    translated = item_from_protocol_1(SUBMISSION_1)
    assert translated == {
        "type": "submission",
        "instanceId": "uuid:visit-2",
        "formId": "coop_visit",
        "formVersion": "2026-03-01",
        "deprecatedId": "uuid:visit-1",
        "data": {"coop_name": "Espoir", "meta/instance_name": "x"},  # field paths are the form's names
        "attachments": [],
        "origin": {"deviceId": "collect:1", "submitter": "user:amina"},
        "entityOps": [{"opId": "o", "context": {"max": {"w_1": 1}}, "unknownBase": False}],
    }
    assert isinstance(parse_push_item(translated), SubmissionItem)
    assert item_to_protocol_1(translated) == SUBMISSION_1  # what a relay resends for a key sent before


@pytest.mark.parametrize(
    "item",
    [ENTITY, SUBMISSION, {**ENTITY, "op_id": "stray"}, {"type": "entity"}, "not an object", None],
    ids=["fieldsync-2-entity", "fieldsync-2-submission", "mixed-keys", "no-protocol-key", "not-an-object", "null"],
)
def test_u3_item_from_protocol_1_leaves_anything_else_as_it_is(item: object) -> None:
    assert item_from_protocol_1(item) == item
