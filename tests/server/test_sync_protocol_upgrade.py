"""The move of the sync wire from ``fieldsync/1`` (snake_case) to ``fieldsync/2`` (camelCase, issue 16).

Rules:

* U1: a body naming ``fieldsync/1`` is ``426 unsupported_protocol``; the message says the server speaks
  fieldsync/2 (camelCase) and ``details.supported`` lists ``["fieldsync/2"]``.
* U2: except a byte-identical resend of a batch stored under fieldsync/1 (same key, same body hash): its
  stored reply is returned verbatim (a phone that pushed before the upgrade and lost the answer gets it).
* U3: a held item stored raw in the fieldsync/1 shape is translated when it is released.
"""

from __future__ import annotations

import json

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Personas
from tests.server.sync_fixtures import fresh_project

OLD_BODY = {"protocol": "fieldsync/1", "device_id": "tab-1", "batch_id": "before-upgrade", "items": []}
OLD_REPLY = b'{"batch_id":"before-upgrade","protocol":"fieldsync/1","results":[],"server_time":"2026-01-01T00:00:00"}'


def _store_old_batch(db: sessionmaker[Session], project_id: int, raw: bytes) -> None:
    """A batch row as a fieldsync/1 server left it: claimed, processed, its reply stored."""
    from server.db.base import utcnow
    from server.db.queries import sync as q
    from sync.batches import body_fingerprint

    session = db()
    with session.begin():
        assert q.claim_batch(session, project_id, "before-upgrade", body_fingerprint(raw), "user:1", utcnow())
        q.finish_batch(session, project_id, "before-upgrade", OLD_REPLY)
    session.close()


def test_u1_an_old_protocol_body_is_426_naming_fieldsync_2(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    pid = fresh_project(db)
    answer = client.post(f"/v1/projects/{pid}/sync/push", json=OLD_BODY, headers=personas.admin.headers)
    assert answer.status_code == 426
    body = answer.get_json()
    assert body["details"]["problem"] == "unsupported_protocol"
    assert body["details"]["supported"] == ["fieldsync/2"]
    assert "fieldsync/2" in body["message"] and "camelCase" in body["message"]
    assert body["protocol"] == "fieldsync/2"


def test_u2_a_byte_identical_resend_of_a_batch_stored_under_fieldsync_1_replays_its_reply(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    pid = fresh_project(db)
    raw = json.dumps(OLD_BODY).encode()
    _store_old_batch(db, pid, raw)
    url = f"/v1/projects/{pid}/sync/push"
    headers = {**personas.admin.headers, "Idempotency-Key": "before-upgrade"}
    resent = client.post(url, data=raw, content_type="application/json", headers=headers)
    assert resent.status_code == 200
    assert resent.get_data() == OLD_REPLY
    # Another body under the same key is not a resend: the old protocol is refused as for anyone.
    other = json.dumps({**OLD_BODY, "items": [{"type": "entity"}]}).encode()
    refused = client.post(url, data=other, content_type="application/json", headers=headers)
    assert refused.status_code == 426
    # Nor is the same body under a key never stored.
    fresh = client.post(
        url, data=raw, content_type="application/json", headers={**personas.admin.headers, "Idempotency-Key": "other"}
    )
    assert fresh.status_code == 426


def test_u3_releasing_a_held_item_stored_in_the_fieldsync_1_shape_translates_it(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    from server.db.base import utcnow
    from server.db.queries import sync as q

    pid = fresh_project(db)
    old_item = {
        "type": "entity",
        "op_id": "tab-1-1",
        "dot": {"w": "tab-1", "s": 1},
        "entity": {"list": "entrepreneurs", "id": "e-old"},
        "base_rev": None,
        "fields": {"phone": "0700"},
        "label": "Awa",
        "hlc": 3,
        "source_submission": "uuid:old",
    }
    session = db()
    with session.begin():
        q.hold_item(
            session,
            {
                "project_id": pid,
                "fingerprint": "f" * 64,
                "kind": "entity",
                "item_key": "tab-1-1",
                "raw": old_item,
                "outcome": "quarantined",
                "reason": "processing_error",
                "detail": "",
                "status": "open",
                "device_id": "tab-1",
                "actor": "user:1",
                "created_at": utcnow(),
            },
        )
    session.close()
    held = client.get(f"/v1/projects/{pid}/quarantine", headers=personas.admin.headers).get_json()
    assert held[0]["raw"] == old_item  # shown as it was stored
    released = client.post(f"/v1/projects/{pid}/quarantine/{held[0]['id']}/release", headers=personas.admin.headers)
    assert released.status_code == 200, released.get_data(as_text=True)
    assert released.get_json()["result"]["status"] == "created"
    assert released.get_json()["item"]["status"] == "released"
    detail = client.get(f"/v1/projects/{pid}/entities/entrepreneurs/e-old", headers=personas.admin.headers).get_json()
    assert detail["label"] == "Awa" and detail["properties"]["phone"] == "0700"
    assert detail["history"][0]["opId"] == "tab-1-1" and detail["history"][0]["source"] == "uuid:old"
