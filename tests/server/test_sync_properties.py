"""Property tests of the sync invariants over a faulty link (SYNC.md invariants 1-5, 7, 8).

Each example builds two fresh projects with the same entity list and submission form: one receives the
outbox (entity ops, submissions with edit chains and declared photos, invalid items) in one clean,
in-order delivery; the other over a :class:`FaultyTransport` that reorders, re-splits, drops requests,
drops responses after commit, truncates bodies and duplicates requests, with tus uploads cut mid-chunk.
The canonical dumps (submissions, versions and their files, entities with conflicts, ops, held items,
blobs) must be identical.

Rules: I1 permutation/re-split, I2 replay byte-identical, I3 truncation and lost responses, I4 nothing
acknowledged lost, I5 out-of-order offline runs converge, I7 invalid items never block, I8 blobs hash to
their names.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Personas
from tests.server.faulty_transport import FAULTS, FaultyTransport, canonical_dump
from tests.server.fixtures_forms import name_photo_xlsform, publish_form
from tests.server.sync_fixtures import PROPERTIES, entity_item, fresh_project

ENTITIES = ("e1", "e2")
VALUES = ("a", "b", "c")

op_strategy = st.tuples(
    st.sampled_from(ENTITIES),
    st.dictionaries(st.sampled_from(PROPERTIES), st.sampled_from(VALUES), min_size=1, max_size=3),
    st.integers(min_value=0, max_value=5),
)
outbox_strategy = st.fixed_dictionaries(
    {
        "devA": st.lists(op_strategy, min_size=1, max_size=4),
        "devB": st.lists(op_strategy, min_size=0, max_size=4),
    }
)
# One device's submissions: edit chains, each a list of the name given by each version (an edit replaces
# the version before it, so the network may deliver an edit before its original).
chains_strategy = st.fixed_dictionaries(
    {
        "devA": st.lists(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3), max_size=3),
        "devB": st.lists(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3), max_size=2),
    }
)
SUBMISSION_FORM = name_photo_xlsform("prop_form", "1")
BAD_ITEMS = [
    {"type": "entity", "opId": "broken"},  # unparseable → rejected
    entity_item("devA", 90, "e1", {"not_a_property": "x"}),  # → quarantined
    entity_item("devA", 91, "e9", {"phone": "x"}, list_name="no_such_list"),  # → quarantined
]


def _setup(transport: FaultyTransport) -> dict[str, str]:
    """Both entities created by devA (seq 1, 2) and pulled by every device: their base revs."""
    response = transport.push(
        "devA",
        [entity_item("devA", 1, "e1", {"phone": "0"}, label="Amina"), entity_item("devA", 2, "e2", {"phone": "0"})],
        "ok",
    )
    assert response is not None
    return {r["entity"]["id"]: r["entity"]["rev"] for r in response["results"]}


def _outbox(ops: dict[str, list[tuple[str, dict[str, str], int]]], revs: dict[str, str]) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for device, device_ops in ops.items():
        first = 3 if device == "devA" else 1
        for offset, (entity, fields, hlc) in enumerate(device_ops):
            items.append((device, entity_item(device, first + offset, entity, fields, base_rev=revs[entity], hlc=hlc)))
    items.extend(("devA", bad) for bad in BAD_ITEMS)
    return items


def _submission_items(chains: dict[str, list[list[str]]], blobs: list[bytes]) -> list[tuple[str, Any]]:
    """Each device's submissions in the order it made them; every other chain's first version has a photo."""
    items: list[tuple[str, Any]] = []
    for device, device_chains in chains.items():
        for number, names in enumerate(device_chains):
            previous = ""
            for version, name in enumerate(names):
                instance_id = f"uuid:{device}-{number}-{version}"
                photo = blobs[0] if blobs and version == 0 and number % 2 == 0 else None
                deprecated = f"<deprecatedID>{previous}</deprecatedID>" if previous else ""
                xml = (
                    f'<data id="prop_form" version="1"><name>{name}</name><photo>{"p.jpg" if photo else ""}</photo>'
                    f"<meta><instanceID>{instance_id}</instanceID>{deprecated}</meta></data>"
                )
                item: dict[str, Any] = {
                    "type": "submission",
                    "instanceId": instance_id,
                    "formId": "prop_form",
                    "formVersion": "1",
                    "data": xml,
                }
                if photo is not None:
                    item["attachments"] = [
                        {"name": "p.jpg", "sha256": hashlib.sha256(photo).hexdigest(), "size": len(photo)}
                    ]
                items.append((device, item))
                previous = instance_id
    return items


def _deliver_clean(transport: FaultyTransport, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for device in ("devA", "devB"):
        mine = [item for d, item in items if d == device]
        if mine:
            response = transport.push(device, mine, "ok")
            assert response is not None
            results.extend(response["results"])
    return results


def _deliver_faulty(
    transport: FaultyTransport, items: list[tuple[str, Any]], rng: random.Random
) -> list[dict[str, Any]]:
    pending = list(items)
    rng.shuffle(pending)
    acked: list[dict[str, Any]] = []
    for _ in range(200):
        if not pending:
            break
        device = rng.choice(sorted({d for d, _ in pending}))
        mine = [p for p in pending if p[0] == device]
        size = rng.randint(1, len(mine))
        chosen = mine[:size]
        fault = rng.choice(FAULTS)
        response = transport.push(device, [item for _, item in chosen], fault)
        if response is not None:
            acked.extend(response["results"])
            for entry in chosen:
                pending.remove(entry)
        else:
            rng.shuffle(pending)  # the client re-batches differently next time
    assert not pending
    return acked


@pytest.mark.one_store_per_run
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=outbox_strategy,
    chains=chains_strategy,
    seed=st.integers(0, 2**32 - 1),
    blobs=st.lists(st.binary(min_size=1, max_size=300), max_size=2),
)
def test_any_delivery_over_a_faulty_link_equals_one_clean_delivery(
    client: FlaskClient,
    db: sessionmaker[Session],
    personas: Personas,
    ops: dict[str, list[tuple[str, dict[str, str], int]]],
    chains: dict[str, list[list[str]]],
    seed: int,
    blobs: list[bytes],
) -> None:
    rng = random.Random(seed)
    clean = FaultyTransport(client, personas.admin.headers, fresh_project(db))
    faulty = FaultyTransport(client, personas.admin.headers, fresh_project(db))
    for transport in (clean, faulty):
        publish_form(client.application, transport.project_id, SUBMISSION_FORM, "prop_form.xlsx")
    revs = _setup(clean)
    assert _setup(faulty) == revs  # content-derived revs: the same on both stores
    submissions = _submission_items(chains, blobs)
    items = _outbox(ops, revs) + submissions
    clean_results = _deliver_clean(clean, items)
    faulty_results = _deliver_faulty(faulty, items, rng)
    hashes = [clean.upload(data, rng, faulty=False) for data in blobs]
    assert [faulty.upload(data, rng, faulty=True) for data in blobs] == hashes

    session = db()
    try:
        clean_dump = canonical_dump(session, clean.project_id, hashes)
        faulty_dump = canonical_dump(session, faulty.project_id, hashes)
    finally:
        session.close()
    assert faulty_dump == clean_dump  # I1, I3, I5
    _assert_rebuild_equals_stored(db, faulty.project_id)
    assert all(first == again for first, again in faulty.replays)  # I2
    # I7: the bad items were held, every good op is stored.
    good_ops = {item["opId"] for _, item in items if item.get("opId", "").startswith("dev") and item not in BAD_ITEMS}
    assert good_ops <= {op[2] for op in faulty_dump["ops"]}
    assert len(faulty_dump["held"]) == len(BAD_ITEMS)
    # Every submission version is stored once, chained to its original, with its photo once uploaded.
    assert sorted(v[1] for v in faulty_dump["versions"]) == sorted(item["instanceId"] for _, item in submissions)
    assert len(faulty_dump["submissions"]) == sum(len(c) for c in chains.values())
    assert all(s[5] == s[6] for s in faulty_dump["submissions"])  # every declared photo arrived
    # I4: every acknowledged item can be read back (stored op, stored version or held payload).
    readable = (
        {op[2] for op in faulty_dump["ops"]}
        | {h[2] for h in faulty_dump["held"]}
        | {v[1] for v in faulty_dump["versions"]}
    )
    assert {r["id"] for r in faulty_results} <= readable
    assert {r["id"] for r in clean_results} <= readable
    # I8: blob bytes hash to their names.
    store = client.application.extensions["fieldsync.store"]
    from server.blobstore import BlobStore

    for sha in hashes:
        assert hashlib.sha256(BlobStore(store.storage_dir).path_for(sha).read_bytes()).hexdigest() == sha
    assert [b[0] for b in faulty_dump["blobs"]] == sorted(set(hashes))


def test_a_resent_item_is_a_duplicate_and_a_reused_id_is_rejected(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    transport = FaultyTransport(client, personas.admin.headers, fresh_project(db))
    revs = _setup(transport)
    item = entity_item("devB", 1, "e1", {"phone": "9"}, base_rev=revs["e1"])
    again = transport.push("devB", [item, entity_item("devB", 2, "e1", {"village": "x"}, base_rev=revs["e1"])], "ok")
    assert again is not None
    resent = transport.push("devB", [item], "ok")
    assert resent is not None and resent["results"][0]["status"] == "duplicate"
    forged = transport.push("devB", [{**item, "fields": {"phone": "changed"}}], "ok")
    assert forged is not None and forged["results"][0]["status"] == "rejected"
    assert forged["results"][0]["reason"] == "id_conflict"
    session = db()
    try:
        dump = canonical_dump(session, transport.project_id)
    finally:
        session.close()
    e1 = next(e for e in dump["entities"] if e[1] == "e1")
    assert '"phone": "9"' in e1[3]  # the forged op changed nothing
    assert [h[3:5] for h in dump["held"]] == [("rejected", "id_conflict")]  # and was recorded


def _assert_rebuild_equals_stored(db: sessionmaker[Session], project_id: int) -> None:
    """Every entity row equals the merge of all its stored ops (rebuild equals incremental)."""
    from server.db.queries import entities as eq
    from sync.entities import merge_entity_updates

    session = db()
    try:
        for entity_list in eq.lists_of_project(session, project_id):
            for row in eq.entities_of_list(session, entity_list.id):
                state = merge_entity_updates(
                    eq.op_from_row(r) for r in eq.op_rows(session, entity_list.id, row.entity_id)
                )
                assert (row.properties, row.label, row.version, row.rev, row.conflict) == (
                    dict(state.properties),
                    state.label,
                    state.version,
                    state.rev,
                    state.conflict,
                )
    finally:
        session.close()
