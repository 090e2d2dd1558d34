"""Entity deletion and restore: phones drop a deleted entity, its history stays, a restore brings it back.

A delete is a reviewer op writing ``__deleted`` (``sync.entities``), so everything the merge promises
holds: a phone's update made before it saw the delete is kept (soft conflict) and the entity stays
deleted until a manager restores it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import AuditEvent
from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.fixtures_forms import ENTREPRENEUR_XLSX, publish_form
from tests.server.sync_fixtures import LIST, entity_item, fresh_project
from tests.server.test_submissions_support import example_submission, post_submission

KHADIJA = "39590051-7f2e-47f5-81e8-d0537904601c"


def _manifest_hash(client: FlaskClient, personas: Personas) -> str:
    response = client.get(f"{personas.collect_prefix}/forms/entrepreneur_followup/manifest")
    assert response.status_code == 200, response.get_data(as_text=True)
    found = re.search(r"<filename>entrepreneurs\.csv</filename><hash>(md5:[0-9a-f]{32})</hash>", response.text)
    assert found is not None, response.text
    return found.group(1)


def _csv_rows(client: FlaskClient, personas: Personas) -> dict[str, dict[str, str]]:
    response = client.get(f"{personas.collect_prefix}/forms/entrepreneur_followup/attachments/entrepreneurs.csv")
    assert response.status_code == 200
    header, *lines = response.get_data(as_text=True).splitlines()
    columns = header.split(",")
    return {cells[0]: dict(zip(columns, cells, strict=True)) for cells in (line.split(",") for line in lines)}


def _integrity_deleted(client: FlaskClient, personas: Personas) -> str | None:
    response = client.get(f"{personas.collect_prefix}/datasets/entrepreneurs/integrity?id={KHADIJA}")
    assert response.status_code == 200
    found = re.search(r"<deleted>(\w+)</deleted>", response.text)
    return None if found is None else found.group(1)


def _last_pulled(client: FlaskClient, headers: dict[str, str], pid: int, key: str) -> dict[str, Any]:
    pulled = client.get(f"/v1/projects/{pid}/sync/pull?limit=500", headers=headers).get_json()
    return [c for c in pulled["changes"] if c["collection"] == "entity" and c["id"] == key][-1]


def _listed(client: FlaskClient, headers: dict[str, str], pid: int, query: str = "") -> list[str]:
    response = client.get(f"/v1/projects/{pid}/entities/{LIST}{query}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [e["id"] for e in response.get_json()["entities"]]


def _actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("entity.%"))))


def test_a_deleted_entity_leaves_the_phones_list_keeps_a_concurrent_update_and_comes_back_on_restore(
    app: Flask, client: FlaskClient, session: Session, personas: Personas
) -> None:
    pid = personas.project_id
    manager, admin = personas.manager.headers, personas.admin.headers
    publish_form(app, pid, ENTREPRENEUR_XLSX)
    created = post_submission(client, personas.collect_prefix, example_submission("entrepreneur_followup", "01"))
    assert created.status_code == 201, created.get_data(as_text=True)
    live_hash = _manifest_hash(client, personas)
    assert _csv_rows(client, personas)[KHADIJA]["stage"] == "startup"
    url = f"/v1/projects/{pid}/entities/{LIST}/{KHADIJA}"

    deleted = client.delete(url, headers=manager)
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert (deleted.get_json()["deleted"], deleted.get_json()["version"]) == (True, 2)
    assert "__deleted" not in deleted.get_json()["properties"]
    assert _csv_rows(client, personas) == {}
    deleted_hash = _manifest_hash(client, personas)
    assert deleted_hash != live_hash
    assert _integrity_deleted(client, personas) == "true"
    pulled = _last_pulled(client, admin, pid, f"{LIST}/{KHADIJA}")
    assert (pulled["op"], pulled["data"]["deleted"], pulled["data"]["version"]) == ("delete", True, 2)
    assert _listed(client, manager, pid) == []
    assert _listed(client, manager, pid, "?deleted=true") == [KHADIJA]
    detail = client.get(url, headers=personas.analyst.headers).get_json()
    assert detail["deleted"] is True
    by_reviewer = [op for op in detail["history"] if op["writer"].startswith("srv:")]
    assert len(detail["history"]) == 2
    assert [op["fields"] for op in by_reviewer] == [{"__deleted": "1"}]

    # A coach's visit made offline on version 1 arrives after the delete: kept, the entity stays deleted.
    update = post_submission(client, personas.collect_prefix, example_submission("entrepreneur_followup", "02"))
    assert update.status_code == 201, update.get_data(as_text=True)
    after = client.get(url, headers=manager).get_json()
    assert (after["deleted"], after["conflict"], after["version"]) == (True, "soft", 3)
    assert after["properties"]["stage"] == "growth"
    assert _csv_rows(client, personas) == {}
    assert _manifest_hash(client, personas) == deleted_hash
    assert _last_pulled(client, admin, pid, f"{LIST}/{KHADIJA}")["op"] == "delete"

    restored = client.post(f"{url}/restore", headers=manager)
    assert restored.status_code == 200, restored.get_data(as_text=True)
    assert (restored.get_json()["deleted"], restored.get_json()["conflict"]) == (False, None)
    row = _csv_rows(client, personas)[KHADIJA]
    assert (row["__version"], row["stage"], row["legal_status"]) == ("4", "growth", "auto_entrepreneur")
    assert _manifest_hash(client, personas) not in (live_hash, deleted_hash)
    assert _integrity_deleted(client, personas) == "false"
    pulled = _last_pulled(client, admin, pid, f"{LIST}/{KHADIJA}")
    assert (pulled["op"], pulled["data"]["deleted"], pulled["data"]["properties"]["stage"]) == (
        "upsert",
        False,
        "growth",
    )
    assert _listed(client, manager, pid) == [KHADIJA]
    assert _listed(client, manager, pid, "?deleted=true") == []
    assert sorted(_actions(session)) == ["entity.delete", "entity.restore"]
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "entity.delete")).all()
    assert [(e.project_id, e.subject) for e in events] == [(pid, f"{LIST}/{KHADIJA}")]


@pytest.fixture()
def pushed(client: FlaskClient, db: sessionmaker[Session], personas: Personas) -> FaultyTransport:
    """A fresh project whose list holds ``awa`` (created by a push of device ``devA``)."""
    transport = FaultyTransport(client, personas.admin.headers, fresh_project(db))
    reply = transport.push("devA", [entity_item("devA", 1, "awa", {"phone": "1"}, label="Awa")], "ok")
    assert reply is not None and reply["results"][0]["status"] == "created"
    return transport


def _entity_url(transport: FaultyTransport, entity_id: str = "awa", list_name: str = LIST) -> str:
    return f"/v1/projects/{transport.project_id}/entities/{list_name}/{entity_id}"


def test_deleting_twice_or_restoring_a_live_entity_writes_nothing(
    client: FlaskClient, session: Session, personas: Personas, pushed: FaultyTransport
) -> None:
    headers = personas.admin.headers
    url = _entity_url(pushed)
    assert client.post(f"{url}/restore", headers=headers).get_json()["version"] == 1
    first = client.delete(url, headers=headers)
    again = client.delete(url, json={}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()
    assert (again.get_json()["deleted"], again.get_json()["version"]) == (True, 2)
    assert len(client.get(url, headers=headers).get_json()["history"]) == 2
    restored = client.post(f"{url}/restore", headers=headers)
    assert (restored.get_json()["deleted"], restored.get_json()["version"]) == (False, 3)
    assert client.post(f"{url}/restore", headers=headers).get_json()["version"] == 3
    assert _actions(session) == ["entity.delete", "entity.restore"]


@pytest.mark.parametrize(
    "base",
    [
        lambda state: {"baseVersion": state["version"] - 1},
        lambda state: {"baseRev": "0123456789abcdef"},
        lambda state: {"baseVersion": state["version"], "baseRev": "0123456789abcdef"},
    ],
    ids=["old-version", "unknown-rev", "current-version-old-rev"],
)
@pytest.mark.parametrize("action", ["delete", "restore"], ids=["delete", "restore"])
def test_a_stale_base_is_409_and_writes_nothing(
    client: FlaskClient, session: Session, personas: Personas, pushed: FaultyTransport, base: Any, action: str
) -> None:
    headers = personas.admin.headers
    url = _entity_url(pushed)
    pushed.push("devA", [entity_item("devA", 2, "awa", {"phone": "2"})], "ok")
    if action == "restore":
        assert client.delete(url, headers=headers).status_code == 200
    state = client.get(url, headers=headers).get_json()
    send = client.delete if action == "delete" else client.post
    target = url if action == "delete" else f"{url}/restore"
    stale = send(target, json=base(state), headers=headers)
    assert stale.status_code == 409, stale.get_data(as_text=True)
    body = stale.get_json()
    assert body["details"]["problem"] == "stale_base"
    assert body["details"] == {
        "currentRev": state["rev"],
        "currentVersion": state["version"],
        "problem": "stale_base",
    }
    assert client.get(url, headers=headers).get_json()["version"] == state["version"]
    current = send(target, json={"baseVersion": state["version"], "baseRev": state["rev"]}, headers=headers)
    assert current.status_code == 200, current.get_data(as_text=True)
    assert current.get_json()["deleted"] is (action == "delete")
    assert current.get_json()["version"] == state["version"] + 1


@pytest.mark.parametrize(
    ("entity_id", "list_name"), [("nobody", LIST), ("awa", "cooperatives")], ids=["unknown-entity", "unknown-list"]
)
@pytest.mark.parametrize("action", ["delete", "restore"], ids=["delete", "restore"])
def test_unknown_entity_or_list_is_404(
    client: FlaskClient, personas: Personas, pushed: FaultyTransport, entity_id: str, list_name: str, action: str
) -> None:
    url = _entity_url(pushed, entity_id, list_name)
    if action == "delete":
        response = client.delete(url, headers=personas.admin.headers)
    else:
        response = client.post(f"{url}/restore", headers=personas.admin.headers)
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["protocol"] == "fieldsync/2"


@pytest.mark.parametrize(
    ("data", "code"),
    [(b'{"fields": {"phone": "3"}}', "invalid_input"), (b"[1]", "malformed_json"), (b"{oops", "malformed_json")],
    ids=["unknown-field", "not-an-object", "not-json"],
)
def test_a_bad_body_is_400(
    client: FlaskClient, personas: Personas, pushed: FaultyTransport, data: bytes, code: str
) -> None:
    response = client.delete(
        _entity_url(pushed), data=data, content_type="application/json", headers=personas.admin.headers
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["details"]["problem"] == code
    assert client.get(_entity_url(pushed), headers=personas.admin.headers).get_json()["deleted"] is False


def _delete_then_push_an_update_made_before(
    client: FlaskClient, headers: dict[str, str], pushed: FaultyTransport
) -> dict[str, Any]:
    """A manager deletes ``awa`` while device ``devB`` changes its phone from the revision before; the push's reply."""
    url = _entity_url(pushed)
    seen_rev = client.get(url, headers=headers).get_json()["rev"]
    assert client.delete(url, headers=headers).status_code == 200
    reply = pushed.push("devB", [entity_item("devB", 1, "awa", {"phone": "9"}, base_rev=seen_rev)], "ok")
    assert reply is not None
    return reply


def test_a_pushed_update_concurrent_with_a_delete_is_a_soft_conflict_and_the_entity_stays_deleted(
    client: FlaskClient, personas: Personas, pushed: FaultyTransport
) -> None:
    headers = personas.admin.headers
    url = _entity_url(pushed)
    reply = _delete_then_push_an_update_made_before(client, headers, pushed)
    assert reply["results"][0]["status"] == "conflict"
    assert reply["results"][0]["conflict"] == {"kind": "soft", "fields": ["phone"]}
    after = client.get(url, headers=headers).get_json()
    assert (after["deleted"], after["conflict"], after["properties"]) == (True, "soft", {"phone": "9"})
    assert _listed(client, headers, pushed.project_id) == []


def test_the_review_queue_holds_live_entities_and_shows_deleted_ones_when_asked(
    client: FlaskClient, personas: Personas, pushed: FaultyTransport
) -> None:
    """A conflict on a deleted entity waits out of the queue, as deleted entities do in lists (``?deleted=true``)."""
    headers = personas.admin.headers
    _delete_then_push_an_update_made_before(client, headers, pushed)
    # A live conflict too: two phones change binta's phone from the same base.
    pushed.push("devA", [entity_item("devA", 2, "binta", {"phone": "1"}, label="Binta")], "ok")
    base = client.get(_entity_url(pushed, "binta"), headers=headers).get_json()["rev"]
    pushed.push("devB", [entity_item("devB", 2, "binta", {"phone": "2"}, base_rev=base)], "ok")
    pushed.push("devC", [entity_item("devC", 1, "binta", {"phone": "3"}, base_rev=base)], "ok")
    queue = f"/v1/projects/{pushed.project_id}/conflicts"

    def queued(query: str = "") -> list[tuple[str, bool]]:
        response = client.get(queue + query, headers=headers)
        assert response.status_code == 200, response.get_json()
        return [(c["id"], c["deleted"]) for c in response.get_json()]

    assert queued() == [("binta", False)]
    assert queued("?deleted=true") == [("awa", True)]
    assert client.get(queue + "?deleted=maybe", headers=headers).status_code == 400


def test_a_device_cannot_delete_through_a_push(
    client: FlaskClient, personas: Personas, pushed: FaultyTransport
) -> None:
    reply = pushed.push("devA", [entity_item("devA", 2, "awa", {"__deleted": "1"})], "ok")
    assert reply is not None
    assert (reply["results"][0]["status"], reply["results"][0]["reason"]) == ("quarantined", "unknown_property")
    after = client.get(_entity_url(pushed), headers=personas.admin.headers).get_json()
    assert (after["deleted"], after["version"]) == (False, 1)


def test_resolve_cannot_name_the_reserved_field(
    client: FlaskClient, personas: Personas, pushed: FaultyTransport
) -> None:
    response = client.post(
        f"{_entity_url(pushed)}/resolve", json={"fields": {"__deleted": "1"}}, headers=personas.admin.headers
    )
    assert response.status_code == 400
    assert response.get_json()["details"] == {"fields": ["__deleted"], "problem": "unknown_property"}
