"""The real offline story, ODK Collect entity blocks, the entity CSV, quarantine release (SYNC.md "Shared records")."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from forms.record import EntityChange
from tests.conftest import Personas
from tests.server.faulty_transport import FAULTS, FaultyTransport, canonical_dump
from tests.server.sync_fixtures import entity_item, fresh_project

DAY = 86_400_000


def _week(rev: str) -> dict[str, list[dict[str, Any]]]:
    """Two coaches offline for a week on the same entrepreneur: different fields, then the same field."""
    return {
        "coachA": [
            entity_item("coachA", 1, "amina", {"phone": "+226 70 00 00 01"}, base_rev=rev, hlc=1 * DAY),
            entity_item("coachA", 2, "amina", {"members": "12"}, base_rev=rev, hlc=2 * DAY),
            entity_item("coachA", 3, "amina", {"phone": "+226 70 00 00 03"}, base_rev=rev, hlc=3 * DAY),
        ],
        "coachB": [
            entity_item("coachB", 1, "amina", {"village": "Kaya"}, base_rev=rev, hlc=2 * DAY),
            entity_item("coachB", 2, "amina", {"status": "active"}, base_rev=rev, hlc=4 * DAY),
            entity_item("coachB", 3, "amina", {"phone": "+226 70 00 00 05"}, base_rev=rev, hlc=5 * DAY),
        ],
    }


def _create(transport: FaultyTransport) -> str:
    created = transport.push("office", [entity_item("office", 1, "amina", {"phone": "0"}, label="Amina")], "ok")
    assert created is not None
    return str(created["results"][0]["entity"]["rev"])


def test_two_coaches_offline_for_a_week_converge_with_one_hard_conflict_then_resolve(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    headers = personas.admin.headers
    in_order = FaultyTransport(client, headers, fresh_project(db))
    scrambled = FaultyTransport(client, headers, fresh_project(db))
    week = _week(_create(in_order))
    assert _create(scrambled) == _create(in_order)  # a replay of the create changes nothing
    for coach, items in week.items():
        assert in_order.push(coach, items, "ok") is not None
    rng = random.Random(7)
    pending = [(coach, item) for coach, items in week.items() for item in items]
    rng.shuffle(pending)  # 3-1-2 orders, interleaved coaches
    while pending:
        coach, item = pending[0]
        if scrambled.push(coach, [item], rng.choice(FAULTS)) is not None:
            pending.pop(0)
    session = db()
    try:
        assert canonical_dump(session, scrambled.project_id) == canonical_dump(session, in_order.project_id)
    finally:
        session.close()

    pid = scrambled.project_id
    listed = client.get(f"/v1/projects/{pid}/conflicts", headers=headers)
    conflicts = listed.get_json()
    assert [(c["id"], c["conflict"]) for c in conflicts] == [("amina", "hard")]
    assert listed.headers["X-Total-Count"] == "1" and [c["field"] for c in conflicts[0]["conflictFields"]] == ["phone"]
    amina = client.get(f"/v1/projects/{pid}/entities/entrepreneurs/amina", headers=headers).get_json()
    assert [c["field"] for c in amina["conflictFields"]] == ["phone"]
    candidates = amina["conflictFields"][0]["candidates"]
    assert {c["value"] for c in candidates} == {"+226 70 00 00 03", "+226 70 00 00 05"}
    assert candidates[0]["value"] == "+226 70 00 00 05"  # provisional winner: latest capture
    assert amina["properties"] == {
        "phone": "+226 70 00 00 05",
        "members": "12",
        "village": "Kaya",
        "status": "active",
    }
    resolve_url = f"/v1/projects/{pid}/entities/entrepreneurs/amina/resolve"
    stale = client.post(
        resolve_url, json={"baseVersion": amina["version"] - 1, "fields": {"phone": "x"}}, headers=headers
    )
    assert stale.status_code == 409
    assert stale.get_json()["details"]["currentVersion"] == amina["version"]
    resolved = client.post(
        resolve_url, json={"baseVersion": amina["version"], "fields": {"phone": "+226 70 00 00 03"}}, headers=headers
    )
    assert resolved.status_code == 200, resolved.get_data(as_text=True)
    assert resolved.get_json()["conflict"] is None
    assert client.get(f"/v1/projects/{pid}/conflicts", headers=headers).get_json() == []
    # The resolution syncs to devices like any change.
    pulled = client.get(f"/v1/projects/{pid}/sync/pull?limit=500", headers=headers).get_json()
    last = [c for c in pulled["changes"] if c["collection"] == "entity"][-1]
    assert last["data"]["properties"]["phone"] == "+226 70 00 00 03"
    assert last["data"]["conflict"] is None


def _record(instance_id: str, change: EntityChange) -> Any:
    return SimpleNamespace(instance_id=instance_id, entities=(change,), values={})


def _apply_odk(db: sessionmaker[Session], pid: int, records: list[Any]) -> None:
    from server.services.entities import apply_entity_changes

    session = db()
    for index, record in enumerate(records):
        with session.begin():
            apply_entity_changes(session, pid, record, index + 1, "device:1")
    session.close()


def test_collect_offline_branch_arriving_out_of_order_equals_in_order_and_serves_csv(
    db: sessionmaker[Session],
) -> None:
    from server.services.entities import entity_list_csv

    create = _record("uuid:c", EntityChange("entrepreneurs", "e1", True, False, "Awa", properties={"phone": "1"}))
    branch = [
        _record(
            f"uuid:u{n}",
            EntityChange(
                "entrepreneurs",
                "e1",
                False,
                True,
                None,
                base_version=n,
                trunk_version=1,
                branch_id="b1",
                properties={"phone": str(n + 1)},
            ),
        )
        for n in (1, 2)
    ]
    in_order, scrambled = fresh_project(db), fresh_project(db)
    _apply_odk(db, in_order, [create, *branch])
    _apply_odk(db, scrambled, [create])
    _apply_odk(db, scrambled, list(reversed(branch)))  # 3-1-2: the later branch op first
    session = db()
    try:
        assert canonical_dump(session, scrambled) == canonical_dump(session, in_order)
        csv_text = entity_list_csv(session, in_order, "entrepreneurs", ["phone", "village"]).decode()
    finally:
        session.close()
    assert csv_text.splitlines() == [
        "name,label,__version,__trunkVersion,__branchId,phone,village",
        "e1,Awa,3,,,3,",
    ]


def test_a_quarantined_item_is_released_once_its_list_exists(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    from forms.schema import EntityDeclaration
    from server.services.entities import declare_entity_lists

    pid = fresh_project(db)
    transport = FaultyTransport(client, personas.admin.headers, pid)
    item = entity_item("devA", 1, "c1", {"name": "Coop"}, list_name="cooperatives")
    pushed = transport.push("devA", [item], "ok")
    assert pushed is not None and pushed["results"][0]["status"] == "quarantined"
    quarantine_url = f"/v1/projects/{pid}/quarantine"
    held = client.get(quarantine_url, headers=personas.admin.headers).get_json()
    assert [h["raw"] for h in held] == [item]
    again = client.post(f"{quarantine_url}/{held[0]['id']}/release", headers=personas.admin.headers).get_json()
    assert again["result"]["status"] == "quarantined" and again["item"]["status"] == "open"
    session = db()
    with session.begin():
        declare_entity_lists(session, pid, [EntityDeclaration(list_name="cooperatives", properties={"name": "n"})])
    session.close()
    released = client.post(f"{quarantine_url}/{held[0]['id']}/release", headers=personas.admin.headers)
    assert released.get_json()["result"]["status"] == "created"
    assert released.get_json()["item"]["status"] == "released"
    twice = client.post(f"{quarantine_url}/{held[0]['id']}/discard", headers=personas.admin.headers)
    assert twice.status_code == 409
    entity = client.get(f"/v1/projects/{pid}/entities/cooperatives/c1", headers=personas.admin.headers)
    assert entity.get_json()["properties"] == {"name": "Coop"}
