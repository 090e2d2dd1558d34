"""Push, pull, review and quarantine examples (SYNC.md "Push", "Shared records", "Pull")."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.sync_fixtures import entity_item, fresh_project


def test_push_entity_changes_then_pull_and_review(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    pid = fresh_project(db)
    t = FaultyTransport(client, personas.admin.headers, pid)
    first = t.push("devA", [entity_item("devA", 1, "e1", {"phone": "1"}, label="Amina")], "ok")
    assert first is not None
    assert [r["status"] for r in first["results"]] == ["created"]
    rev = first["results"][0]["entity"]["rev"]
    second = t.push(
        "devB",
        [
            entity_item("devB", 1, "e1", {"phone": "2"}, base_rev=rev, hlc=5),
            {"type": "entity", "opId": "x"},
            entity_item("devB", 2, "e1", {"nope": "2"}, base_rev=rev),
        ],
        "duplicate",
    )
    assert second is not None
    assert [r["status"] for r in second["results"]] == ["updated", "rejected", "quarantined"]
    assert t.replays and t.replays[0][0] == t.replays[0][1]
    third = t.push("devA", [entity_item("devA", 2, "e1", {"phone": "3"}, base_rev=rev, hlc=1)], "ok")
    assert third is not None
    assert third["results"][0]["status"] == "conflict"
    assert third["results"][0]["conflict"] == {"kind": "hard", "fields": ["phone"]}
    listed = client.get(f"/v1/projects/{pid}/entities/entrepreneurs?conflict=hard", headers=personas.admin.headers)
    assert [e["id"] for e in listed.get_json()["entities"]] == ["e1"]
    detail = client.get(f"/v1/projects/{pid}/entities/entrepreneurs/e1", headers=personas.admin.headers).get_json()
    assert {c["value"] for c in detail["conflictFields"][0]["candidates"]} == {"2", "3"}
    assert len(detail["history"]) == 3
    stale = client.post(
        f"/v1/projects/{pid}/entities/entrepreneurs/e1/resolve",
        json={"baseVersion": 1, "fields": {"phone": "2"}},
        headers=personas.admin.headers,
    )
    assert stale.status_code == 409
    done = client.post(
        f"/v1/projects/{pid}/entities/entrepreneurs/e1/resolve",
        json={"baseVersion": detail["version"], "fields": {"phone": "2"}},
        headers=personas.admin.headers,
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.get_json()["conflict"] is None
    assert done.get_json()["properties"]["phone"] == "2"
    pulled = client.get(f"/v1/projects/{pid}/sync/pull?limit=500", headers=personas.admin.headers).get_json()
    entity_changes = [c for c in pulled["changes"] if c["collection"] == "entity"]
    assert entity_changes[-1]["data"]["properties"]["phone"] == "2"
    listed = client.get(f"/v1/projects/{pid}/quarantine", headers=personas.admin.headers)
    held = listed.get_json()
    assert sorted(h["outcome"] for h in held) == ["quarantined", "rejected"]
    # The JSON API's conventions: a bare array, X-Total-Count, camelCase, the next page in Link.
    assert listed.headers["X-Total-Count"] == "2" and "Link" not in listed.headers
    assert all({"itemId", "deviceId", "createdAt", "decidedBy"} <= set(h) for h in held)
    first = client.get(f"/v1/projects/{pid}/quarantine?limit=1", headers=personas.admin.headers)
    assert first.headers["X-Total-Count"] == "2" and f"afterId={held[0]['id']}" in first.headers["Link"]


def test_push_errors_carry_the_protocol(client: FlaskClient, db: sessionmaker[Session], personas: Personas) -> None:
    pid = fresh_project(db)
    url = f"/v1/projects/{pid}/sync/push"
    bad_gzip = client.post(
        url,
        data=b"\x1f\x8bnot gzip",
        content_type="application/json",
        headers={**personas.admin.headers, "Content-Encoding": "gzip"},
    )
    assert bad_gzip.status_code == 400
    assert bad_gzip.get_json()["protocol"] == "fieldsync/2"
    many = {"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b", "items": [{}] * 201}
    too_many = client.post(
        url,
        data=gzip.compress(json.dumps(many).encode()),
        content_type="application/json",
        headers={**personas.admin.headers, "Content-Encoding": "gzip"},
    )
    assert too_many.status_code == 413
    assert too_many.get_json()["details"]["maxItems"] == 200
    body = {"protocol": "fieldsync/2", "deviceId": "d", "batchId": "k1", "items": []}
    assert client.post(url, json=body, headers=personas.admin.headers).status_code == 200
    body["items"] = [{"type": "entity"}]
    reused = client.post(url, json=body, headers=personas.admin.headers)
    assert reused.status_code == 422
    assert reused.get_json()["protocol"] == "fieldsync/2"


def test_a_batch_in_progress_is_409_with_retry_after_and_a_big_body_is_413(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    from server.db.base import utcnow
    from server.db.queries import sync as q
    from sync.batches import body_fingerprint

    pid = fresh_project(db)
    body = {"protocol": "fieldsync/2", "deviceId": "d", "batchId": "busy", "items": []}
    raw = json.dumps(body).encode()
    session = db()
    with session.begin():
        assert q.claim_batch(session, pid, "busy", body_fingerprint(raw), "user:1", utcnow())
    session.close()
    url = f"/v1/projects/{pid}/sync/push"
    busy = client.post(
        url, data=raw, content_type="application/json", headers={**personas.admin.headers, "Idempotency-Key": "busy"}
    )
    assert busy.status_code == 409
    assert busy.headers["Retry-After"] == "5"
    assert busy.get_json()["protocol"] == "fieldsync/2"
    app.config["MAX_PUSH_BYTES"] = 100
    big = client.post(
        url,
        data=json.dumps({**body, "batchId": "x" * 200}),
        content_type="application/json",
        headers=personas.admin.headers,
    )
    assert big.status_code == 413
    assert big.get_json()["details"] == {"maxBytes": 100, "maxItems": 200, "problem": "too_large"}


def test_an_item_that_crashes_is_held_and_never_blocks_the_others(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.services import entities

    real = entities.apply_op

    def flaky(session: Session, entity_list: Any, entity_id: str, op: Any, **kwargs: Any) -> Any:
        if entity_id == "boom":
            raise RuntimeError("a bug in one item")
        return real(session, entity_list, entity_id, op, **kwargs)

    monkeypatch.setattr(entities, "apply_op", flaky)
    pid = fresh_project(db)
    t = FaultyTransport(client, personas.admin.headers, pid)
    items = [entity_item("devA", 1, "boom", {"phone": "1"}), entity_item("devA", 2, "ok", {"phone": "2"})]
    response = t.push("devA", items, "ok")
    assert response is not None
    assert [(r["status"], r.get("reason")) for r in response["results"]] == [
        ("quarantined", "processing_error"),
        ("created", None),
    ]


def test_a_device_whose_reply_was_lost_learns_its_outcomes_from_pull(client: FlaskClient, personas: Personas) -> None:
    pid = personas.project_id
    batch_id = "reply-lost-1"
    body = {
        "protocol": "fieldsync/2",
        "deviceId": "tab-7",
        "batchId": batch_id,
        "items": [
            {"type": "entity", "opId": "x"},  # unparseable: rejected
            entity_item("tab-7", 1, "e1", {"phone": "1"}, list_name="no_such_list"),  # quarantined
        ],
    }
    headers = {**personas.device.headers, "Idempotency-Key": batch_id}
    reply = client.post(f"/v1/projects/{pid}/sync/push", json=body, headers=headers)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    results = reply.get_json()["results"]
    assert [r["status"] for r in results] == ["rejected", "quarantined"]
    # The reply is lost on the way: pull tells the device every item's outcome, in one change.
    pulled = client.get(f"/v1/projects/{pid}/sync/pull?limit=500", headers=personas.device.headers).get_json()
    batches = [c for c in pulled["changes"] if c["collection"] == "batch" and c["id"] == batch_id]
    assert len(batches) == 1
    assert batches[0]["data"] == {"batchId": batch_id, "deviceId": "tab-7", "results": results}
    # Outcomes are the pushing caller's own: another member pulling the project does not get them.
    others = client.get(f"/v1/projects/{pid}/sync/pull?limit=500", headers=personas.coach.headers)
    assert others.status_code == 200
    assert [c for c in others.get_json()["changes"] if c["collection"] == "batch"] == []


@pytest.mark.parametrize("limit", [1, 3, 4, 500], ids=["limit-1", "limit-3", "limit-4", "limit-500"])
def test_batch_outcomes_count_as_their_items_in_a_pull_page(
    client: FlaskClient, personas: Personas, limit: int
) -> None:
    pid = personas.project_id
    pushed = []
    for n in range(3):
        batch_id = f"paged-{limit}-{n}"
        items = [{"type": "entity", "opId": f"bad-{n}-{i}"} for i in range(2)]  # rejected, but reported
        body = {"protocol": "fieldsync/2", "deviceId": "tab-9", "batchId": batch_id, "items": items}
        reply = client.post(
            f"/v1/projects/{pid}/sync/push", json=body, headers={**personas.device.headers, "Idempotency-Key": batch_id}
        )
        assert reply.status_code == 200, reply.get_data(as_text=True)
        pushed.append(batch_id)
    seen: list[str] = []
    cursor = ""
    for _ in range(20):
        page = client.get(
            f"/v1/projects/{pid}/sync/pull?limit={limit}&cursor={cursor}", headers=personas.device.headers
        ).get_json()
        batches = [c for c in page["changes"] if c["collection"] == "batch"]
        items = sum(len(c["data"]["results"]) for c in batches) + len(page["changes"]) - len(batches)
        assert page["changes"], "a page always moves the cursor on"
        assert items <= max(limit, 2), f"{items} items in a page of limit {limit}"
        seen += [c["id"] for c in batches if c["id"].startswith(f"paged-{limit}-")]
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            break
    assert seen == pushed  # every batch once, in commit order
