"""Office relays and the causal context of entity updates (issue 22), in one process.

The national server is the test app; an office is a second app on its own SQLite store; the relay's
round runs in the office's app context and reaches the national app through its test client.

Rules:
- RE1 a phone that downloads an entity list from the office after an office update was stored there but
  before it reached the national server bases its update on what it really saw: the national store
  then holds the same ops, contexts and conflicts as a run where every phone synced directly;
- RE2 an entity change pushed to the office as a JSON entity item goes up too, with its context, and
  the national outcome of every relayed item is kept in ``relay_outbox.status``;
- RE3 a batch whose key the office committed and sent before the wire became fieldsync/2 (the national
  server stored it under the fieldsync/1 bytes) is resent in that shape and gets the stored answer.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.services import accounts, relays
from tests.conftest import Personas, fresh_database_url
from tests.server.faulty_transport import canonical_dump
from tests.server.fixtures_forms import ENTREPRENEUR_XLSX, publish_form
from tests.server.sync_fixtures import entity_item
from tests.server.test_submissions_support import EXAMPLE_SUBMISSIONS

FOLLOWUP = EXAMPLE_SUBMISSIONS / "entrepreneur_followup"
KHADIJA = "39590051-7f2e-47f5-81e8-d0537904601c"
FORM_VERSION = "2026112901"


class FlaskAdapter(BaseAdapter):
    """A ``requests`` transport that answers from a Flask test client (the relay's HTTP, in process)."""

    def __init__(self, client: FlaskClient) -> None:
        super().__init__()
        self.client = client

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(str(request.url))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        answer = self.client.open(path, method=str(request.method), headers=dict(request.headers), data=body or b"")
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response._content = answer.get_data()
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return None


@dataclass
class Office:
    app: Flask
    project_id: int
    phone_token: str
    client: FlaskClient

    def session(self) -> Session:
        session: Session = self.app.extensions["fieldsync.store"].sessions()
        return session


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    from server import create_app

    root = tmp_path / "office"
    root.mkdir()
    url, _ = fresh_database_url("sqlite", root)
    office_app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "VAR_DIR": str(root / "var"),
            "STORAGE_DIR": str(root / "storage"),
            "SECRET_KEY": "office-secret",
            "LOG_REQUESTS": False,
            "FORM_CONVERT_WAIT": 600.0,
        }
    )
    with office_app.app_context():
        session = office_app.extensions["fieldsync.store"].sessions()
        project = accounts.create_project(session, "Bureau de Safi")
        token = accounts.create_device(session, project.id, "coach-amina").token
        session.close()
    try:
        yield Office(office_app, project.id, token, office_app.test_client())
    finally:
        office_app.extensions["fieldsync.store"].engine.dispose()


def _relay_round(office: Office, national: FlaskClient, token: str, remote: int) -> Any:
    from server.services import relay_uplink

    http = requests.Session()
    http.mount("http://national.test", FlaskAdapter(national))
    uplink = relay_uplink.Uplink("http://national.test", token, http=http)
    with office.app.app_context():
        session = office.session()
        try:
            relay_uplink.ensure_link(session, office.project_id, "http://national.test", remote)
            return relay_uplink.relay_round(session, office.project_id, uplink)
        finally:
            session.close()


def _without_files(xml: str) -> str:
    return re.sub(r"\s*<(activity_photo|signature)>[^<]*</\1>", "", xml)


def _create() -> tuple[str, str]:
    xml = _without_files((FOLLOWUP / "01_create_khadija_tafraout.xml").read_text(encoding="utf-8"))
    instance_id = re.search(r"<instanceID>([^<]*)</instanceID>", xml)
    assert instance_id is not None
    return instance_id.group(1), xml


def _update(name: str, base: int, stage: str, minute: int) -> tuple[str, str]:
    """An online update of Khadija's ``stage``, based on version ``base`` as the phone downloaded it."""
    xml = _without_files((FOLLOWUP / "02_update_khadija_growth.xml").read_text(encoding="utf-8"))
    instance_id = f"uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'relay-entities/{name}')}"
    xml = re.sub(r"<instanceID>[^<]*</instanceID>", f"<instanceID>{instance_id}</instanceID>", xml)
    xml = xml.replace(
        'baseVersion="1" trunkVersion="1" branchId="71caf886-7cb1-4537-b94b-0ede6e0c73dd"',
        f'baseVersion="{base}" trunkVersion="" branchId=""',
    )
    xml = re.sub(r"<stage>[^<]*</stage>", f"<stage>{stage}</stage>", xml)
    xml = xml.replace("2027-01-14T16:15:47.093", f"2027-01-14T16:{minute:02d}:00.000")
    return instance_id, xml


def _push(client: FlaskClient, token: str, project_id: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = {"protocol": "fieldsync/2", "deviceId": "collect:field", "batchId": uuid.uuid4().hex, "items": items}
    answer = client.post(
        f"/v1/projects/{project_id}/sync/push",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": body["batchId"]},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    results: list[dict[str, Any]] = answer.get_json()["results"]
    return results


def _submission(instance_id: str, xml: str) -> dict[str, Any]:
    return {
        "type": "submission",
        "instanceId": instance_id,
        "formId": "entrepreneur_followup",
        "formVersion": FORM_VERSION,
        "data": xml,
        "attachments": [],
    }


def _csv_version(client: FlaskClient, token: str, project_id: int) -> int:
    """The ``__version`` of Khadija in the entity list a phone downloads."""
    answer = client.get(
        f"/v1/key/{token}/projects/{project_id}/forms/entrepreneur_followup/attachments/entrepreneurs.csv"
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    header, *rows = answer.get_data(as_text=True).splitlines()
    columns = header.split(",")
    row = next(r.split(",") for r in rows if r.startswith(KHADIJA))
    return int(row[columns.index("__version")])


def _entity_dump(session: Session, project_id: int) -> dict[str, Any]:
    dump = canonical_dump(session, project_id)
    return {"entities": dump["entities"], "ops": dump["ops"]}


def test_re1_an_update_based_on_an_office_version_keeps_its_causal_context_nationally(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas, office: Office
) -> None:
    session = db()
    with app.app_context():
        national = accounts.create_project(session, f"National {uuid.uuid4().hex[:6]}")
        direct = accounts.create_project(session, f"Direct {uuid.uuid4().hex[:6]}")
        for pid in (national.id, direct.id):
            publish_form(session, pid, ENTREPRENEUR_XLSX)
        phone = {pid: accounts.create_device(session, pid, "phone").token for pid in (national.id, direct.id)}
    session.close()
    issued = relays.issue_relay(db(), f"safi-{uuid.uuid4().hex[:6]}", [national.id])
    create = _submission(*_create())
    a1 = _submission(*_update("office-phone-1", 1, "growth", 20))
    a2 = _submission(*_update("office-phone-2", 2, "mature", 30))  # based on the office's version 2
    d1 = _submission(*_update("national-phone", 1, "idea", 25))

    # Khadija is created nationally and comes down to the office (version 1 there as here).
    assert [r["status"] for r in _push(client, phone[national.id], national.id, [create])] == ["created"]
    _relay_round(office, client, issued.token, national.id)
    with office.app.app_context():
        assert _csv_version(office.client, office.phone_token, office.project_id) == 1
        # Link down. An office phone updates her; a second phone downloads the list (version 2, an
        # office-only number: the national server has not seen that update) and updates her again.
        assert [r["status"] for r in _push(office.client, office.phone_token, office.project_id, [a1])] == ["created"]
        assert _csv_version(office.client, office.phone_token, office.project_id) == 2
        assert [r["status"] for r in _push(office.client, office.phone_token, office.project_id, [a2])] == ["created"]
    # Meanwhile a phone updates her directly on the national server: its version 2 is another set of ops.
    assert _push(client, phone[national.id], national.id, [d1])[0]["status"] == "created"
    report = _relay_round(office, client, issued.token, national.id)
    assert report.pushed == 2, report

    # The direct run: every phone synced with the national server, having seen what it saw above.
    for item in (create, a1):
        _push(client, phone[direct.id], direct.id, [item])
    assert _csv_version(client, phone[direct.id], direct.id) == 2  # the second phone saw the first's update
    for item in (a2, d1):
        _push(client, phone[direct.id], direct.id, [item])

    session = db()
    try:
        relayed, straight = _entity_dump(session, national.id), _entity_dump(session, direct.id)
        assert [e[6] for e in straight["entities"]] == ["hard"]  # mature (office) against idea (national)
        assert relayed == straight
    finally:
        session.close()
    # The office gets the same ops back: the phone's op as stored nationally is the office's own.
    _relay_round(office, client, issued.token, national.id)
    with office.app.app_context():
        office_session = office.session()
        try:
            assert _entity_dump(office_session, office.project_id) == straight
        finally:
            office_session.close()


def test_re1_a_relay_item_with_malformed_entity_ops_is_rejected_and_held(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    session = db()
    with app.app_context():
        project = accounts.create_project(session, f"National {uuid.uuid4().hex[:6]}")
        publish_form(session, project.id, ENTREPRENEUR_XLSX)
    session.close()
    issued = relays.issue_relay(db(), f"safi-{uuid.uuid4().hex[:6]}", [project.id])
    item = {**_submission(*_create()), "entityOps": [{"opId": "x", "context": {"max": {"w": "many"}}}]}
    results = _push(client, issued.token, project.id, [item])
    assert [(r["status"], r["reason"]) for r in results] == [("rejected", "unparseable_item")]


def _rev(client: FlaskClient, token: str, project_id: int) -> str:
    """The rev of Khadija as a Fieldsync phone pulls it."""
    answer = client.get(f"/v1/projects/{project_id}/sync/pull", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    changes = [c for c in answer.get_json()["changes"] if c["collection"] == "entity"]
    return str(changes[-1]["data"]["rev"])


def test_re2_a_json_entity_item_pushed_to_the_office_goes_up_with_its_context(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas, office: Office
) -> None:
    from server.db.models.relays import RelayOutboxRow

    session = db()
    with app.app_context():
        national = accounts.create_project(session, f"National {uuid.uuid4().hex[:6]}")
        direct = accounts.create_project(session, f"Direct {uuid.uuid4().hex[:6]}")
        for pid in (national.id, direct.id):
            publish_form(session, pid, ENTREPRENEUR_XLSX)
        phone = {pid: accounts.create_device(session, pid, "phone").token for pid in (national.id, direct.id)}
    session.close()
    issued = relays.issue_relay(db(), f"safi-{uuid.uuid4().hex[:6]}", [national.id])
    create = _submission(*_create())
    a1 = _submission(*_update("json-office-phone-1", 1, "growth", 20))
    d1 = _submission(*_update("json-national-phone", 1, "idea", 25))

    def json_update(base_rev: str) -> dict[str, Any]:
        item = entity_item("collect:field", 1, KHADIJA, {"stage": "mature"}, base_rev=base_rev, hlc=1_800_000_000_000)
        return {**item, "entity": {"list": "entrepreneurs", "id": KHADIJA}}

    _push(client, phone[national.id], national.id, [create])
    _relay_round(office, client, issued.token, national.id)
    with office.app.app_context():
        _push(office.client, office.phone_token, office.project_id, [a1])
        # A Fieldsync phone pulls the office's version 2 and pushes a JSON entity change based on its rev.
        office_rev = _rev(office.client, office.phone_token, office.project_id)
        answer = _push(office.client, office.phone_token, office.project_id, [json_update(office_rev)])
        assert [r["status"] for r in answer] == ["updated"]
    _push(client, phone[national.id], national.id, [d1])
    report = _relay_round(office, client, issued.token, national.id)
    assert report.pushed == 2, report

    for item in (create, a1):
        _push(client, phone[direct.id], direct.id, [item])
    _push(client, phone[direct.id], direct.id, [json_update(_rev(client, phone[direct.id], direct.id))])
    _push(client, phone[direct.id], direct.id, [d1])
    session = db()
    try:
        relayed, straight = _entity_dump(session, national.id), _entity_dump(session, direct.id)
        assert len(straight["ops"]) == 4 and [e[6] for e in straight["entities"]] == ["hard"]
        assert relayed == straight
    finally:
        session.close()
    _relay_round(office, client, issued.token, national.id)
    with office.app.app_context():
        office_session = office.session()
        try:
            assert _entity_dump(office_session, office.project_id) == straight
            statuses = office_session.scalars(select(RelayOutboxRow.status).order_by(RelayOutboxRow.id)).all()
            assert list(statuses) == ["created", "conflict"]  # a1 (a submission), then the JSON change (vs d1)
        finally:
            office_session.close()


def test_re3_a_batch_sent_under_fieldsync_1_before_the_upgrade_gets_its_stored_answer(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas, office: Office
) -> None:
    from server.db.base import utcnow
    from server.db.models.relays import RelayOutboxRow
    from server.db.queries import sync as sync_q
    from server.services import relay_uplink
    from sync.batches import body_fingerprint

    session = db()
    with app.app_context():
        national = accounts.create_project(session, f"National {uuid.uuid4().hex[:6]}")
        publish_form(session, national.id, ENTREPRENEUR_XLSX)
    session.close()
    issued = relays.issue_relay(db(), f"safi-{uuid.uuid4().hex[:6]}", [national.id])
    _relay_round(office, client, issued.token, national.id)  # the form comes down
    instance_id, xml = _create()
    with office.app.app_context():
        assert _push(office.client, office.phone_token, office.project_id, [_submission(instance_id, xml)])
        office_session = office.session()
        try:
            key = relay_uplink._new_batch(office_session, office.project_id)  # committed before the upgrade
            assert key is not None
            old_body = relay_uplink._batch_body(office_session, key, protocol_1=True)[0]
        finally:
            office_session.close()
    sent = json.loads(old_body)
    assert (sent["protocol"], sent["batch_id"], sent["items"][0]["instance_id"]) == ("fieldsync/1", key, instance_id)
    assert sent["items"][0]["origin"]["device_id"] == "collect:field"
    # The national server (then fieldsync/1) processed those bytes; the answer was lost on the way back.
    old_reply = json.dumps(
        {"batch_id": key, "protocol": "fieldsync/1", "results": [{"id": instance_id, "index": 0, "status": "created"}]}
    ).encode()
    session = db()
    with session.begin():
        assert sync_q.claim_batch(session, national.id, key, body_fingerprint(old_body), "relay:safi", utcnow())
        sync_q.finish_batch(session, national.id, key, old_reply)
    session.close()

    report = _relay_round(office, client, issued.token, national.id)
    assert (report.pushed, report.statuses) == (1, {"created": 1}), report
    with office.app.app_context():
        office_session = office.session()
        try:
            rows = office_session.scalars(select(RelayOutboxRow).where(RelayOutboxRow.batch_key == key)).all()
            assert [(r.status, r.sent_at is not None) for r in rows] == [("created", True)]
        finally:
            office_session.close()
