"""A tus upload completes the pushed submissions that declared its blob (SYNC.md "Attachments")."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.fixtures_forms import PublishedForm, published_entrepreneur  # noqa: F401 (fixture)

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "submissions" / "entrepreneur_followup"
PHOTO = "1796464337430.jpg"
SKETCH = "1796464982115.png"


def _item(form: PublishedForm, xml: str, attachments: list[dict[str, object]]) -> dict[str, object]:
    instance_id = xml.split("<instanceID>", 1)[1].split("</instanceID>", 1)[0]
    return {
        "type": "submission",
        "instanceId": instance_id,
        "formId": form.xml_form_id,
        "formVersion": form.version,
        "data": xml,
        "attachments": attachments,
    }


def _present(client: FlaskClient, personas: Personas, form: PublishedForm, instance_id: str) -> int:
    response = client.get(
        f"/v1/projects/{personas.project_id}/forms/{form.xml_form_id}/submissions/{instance_id}",
        headers=personas.manager.headers,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(response.get_json()["attachmentsPresent"])


def test_a_tus_upload_completes_a_submission_awaiting_its_blob(
    client: FlaskClient,
    personas: Personas,
    published_entrepreneur: PublishedForm,  # noqa: F811
) -> None:
    xml = (SAMPLES / "01_create_khadija_tafraout.xml").read_text(encoding="utf-8")
    files = {PHOTO: b"\xff\xd8 photo bytes" * 64, SKETCH: b"\x89PNG sketch bytes" * 48}
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    declared = [{"name": name, "sha256": hashes[name], "size": len(data)} for name, data in files.items()]
    item = _item(published_entrepreneur, xml, declared)
    instance_id = str(item["instanceId"])
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)

    first = transport.push("phone-1", [item], "ok")
    assert first is not None
    assert first["results"][0]["status"] == "awaiting_attachments", first
    assert sorted(first["results"][0]["missing"]) == sorted(hashes.values())
    assert _present(client, personas, published_entrepreneur, instance_id) == 0

    transport.upload(files[PHOTO], random.Random(7), faulty=True)
    assert _present(client, personas, published_entrepreneur, instance_id) == 1
    transport.upload(files[SKETCH], random.Random(8), faulty=False)
    assert _present(client, personas, published_entrepreneur, instance_id) == 2

    # A different batch id (extra item) so the push is processed again rather than replayed.
    again = transport.push("phone-1", [item, {"x": 1}], "ok")
    assert again is not None
    assert again["results"][0]["status"] == "duplicate", again["results"][0]
    assert "missing" not in again["results"][0]
