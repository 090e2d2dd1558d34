"""Submissions through the JSON push door: the same store as OpenRosa (SYNC.md "Two doors, one engine")."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.fixtures_forms import PublishedForm, published_entrepreneur  # noqa: F401 (fixture)

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "submissions" / "entrepreneur_followup"


def _item(xml: str, form: PublishedForm, instance_id: str, **extra: object) -> dict[str, object]:
    return {
        "type": "submission",
        "instanceId": instance_id,
        "formId": form.xml_form_id,
        "formVersion": form.version,
        "data": xml,
        **extra,
    }


def _instance_id(xml: str) -> str:
    return xml.split("<instanceID>", 1)[1].split("</instanceID>", 1)[0]


def test_a_pushed_submission_creates_its_entity_and_a_resend_is_a_duplicate(
    client: FlaskClient,
    personas: Personas,
    published_entrepreneur: PublishedForm,  # noqa: F811
) -> None:
    xml = (SAMPLES / "01_create_khadija_tafraout.xml").read_text(encoding="utf-8")
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    pushed = transport.push("phone-1", [_item(xml, published_entrepreneur, _instance_id(xml))], "ok")
    assert pushed is not None
    assert pushed["results"][0]["status"] in ("created", "awaiting_attachments"), pushed
    again = transport.push("phone-1", [_item(xml, published_entrepreneur, _instance_id(xml)), {"x": 1}], "ok")
    assert again is not None
    resent, junk = again["results"]
    assert resent["status"] == "duplicate" or resent.get("accepted") == "duplicate", resent
    assert junk["status"] == "rejected"
    entities = client.get(
        f"/v1/projects/{personas.project_id}/entities/entrepreneurs", headers=personas.manager.headers
    ).get_json()["entities"]
    assert [e["label"].split(" – ")[0] for e in entities] == ["خديجة أيت واحمان"]


def test_an_unknown_form_version_is_quarantined_then_kept(
    client: FlaskClient,
    personas: Personas,
    published_entrepreneur: PublishedForm,  # noqa: F811
) -> None:
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    item = {
        "type": "submission",
        "instanceId": "uuid:q1",
        "formId": published_entrepreneur.xml_form_id,
        "formVersion": "1999",
        "data": {"profile/phone": "1"},
    }
    pushed = transport.push("phone-1", [item], "ok")
    assert pushed is not None
    assert pushed["results"][0]["status"] in ("quarantined", "rejected"), pushed
    held = client.get(f"/v1/projects/{personas.project_id}/quarantine", headers=personas.manager.headers)
    assert [h["raw"] for h in held.get_json()] == [item]


def test_declared_attachments_wait_for_their_blob(
    client: FlaskClient,
    personas: Personas,
    published_entrepreneur: PublishedForm,  # noqa: F811
) -> None:
    xml = (SAMPLES / "01_create_khadija_tafraout.xml").read_text(encoding="utf-8")
    files = {"1796464337430.jpg": b"\xff\xd8 jpeg bytes" * 50, "1796464982115.png": b"\x89PNG bytes" * 40}
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    declared = [{"name": name, "sha256": hashes[name], "size": len(data)} for name, data in files.items()]
    item = _item(xml, published_entrepreneur, _instance_id(xml), attachments=declared)
    pushed = transport.push("phone-1", [item], "ok")
    assert pushed is not None
    result = pushed["results"][0]
    assert result["status"] == "awaiting_attachments", result
    assert sorted(result["missing"]) == sorted(hashes.values())
    transport.upload(files["1796464337430.jpg"], random.Random(1), faulty=True)
    again = transport.push("phone-1", [item, {"x": 2}], "ok")
    assert again is not None
    assert again["results"][0]["missing"] == [hashes["1796464982115.png"]]
    transport.upload(files["1796464982115.png"], random.Random(2), faulty=False)
    last = transport.push("phone-1", [item, {"x": 3}], "ok")
    assert last is not None
    assert last["results"][0]["status"] == "duplicate", last["results"][0]


def test_publishing_a_form_is_pulled_and_declares_its_entity_lists(
    client: FlaskClient,
    personas: Personas,
    published_entrepreneur: PublishedForm,  # noqa: F811
) -> None:
    pulled = client.get(f"/v1/projects/{personas.project_id}/sync/pull", headers=personas.device.headers).get_json()
    forms = [c for c in pulled["changes"] if c["collection"] == "form_version"]
    assert [c["id"] for c in forms] == [f"{published_entrepreneur.xml_form_id}@{published_entrepreneur.version}"]
    assert set(forms[0]["data"]) == {"formId", "version", "hash", "sha256"}  # camelCase (fieldsync/2)
    listed = client.get(f"/v1/projects/{personas.project_id}/entities/entrepreneurs", headers=personas.device.headers)
    assert listed.status_code == 200
    assert listed.get_json() == {"entities": []}
    again = client.get(
        f"/v1/projects/{personas.project_id}/sync/pull?cursor={pulled['nextCursor']}", headers=personas.device.headers
    ).get_json()
    assert again["changes"] == [] and again["hasMore"] is False
