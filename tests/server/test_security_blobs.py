"""Issue 15 row 5: attachments are readable only within the project that delivered their bytes.

Rules:
- B1 a coach of project B who pushes an item naming project A's photo by its sha256 does not get A's
  bytes linked: the item waits for its attachment, and B's attachment download is 404, not A's photo.
- B2 ``blobs/missing`` lists a hash that only another project holds as missing (no oracle), and lists
  it as present in the project that uploaded it.
- B3 a tus upload of a hash held only by another project is not born complete: the bytes must be sent
  (and once sent, B may use them like its own).
"""

from __future__ import annotations

import base64
import hashlib
import random

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.fixtures_forms import name_photo_xlsform, publish_form

PHOTO = b"\xff\xd8 project A's private photo" * 40
SHA = hashlib.sha256(PHOTO).hexdigest()
INSTANCE = "uuid:0b0b0b0b-0000-4000-8000-000000000001"


def _xml(instance_id: str) -> str:
    return (
        '<data id="photo_form" version="1"><name>B</name><photo>p.jpg</photo>'
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    )


def _item() -> dict[str, object]:
    return {
        "type": "submission",
        "instanceId": INSTANCE,
        "formId": "photo_form",
        "formVersion": "1",
        "data": _xml(INSTANCE),
        "attachments": [{"name": "p.jpg", "sha256": SHA, "size": len(PHOTO)}],
    }


def _a_holds_the_photo(client: FlaskClient, personas: Personas) -> None:
    FaultyTransport(client, personas.device.headers, personas.project_id).upload(PHOTO, random.Random(0), faulty=False)


def test_another_projects_hash_does_not_link_its_bytes(client: FlaskClient, app: Flask, personas: Personas) -> None:
    _a_holds_the_photo(client, personas)
    publish_form(app, personas.other_project_id, name_photo_xlsform("photo_form", "1"), "photo_form.xlsx")
    reply = FaultyTransport(client, personas.outsider.headers, personas.other_project_id).push("b", [_item()], "ok")
    assert reply is not None
    result = reply["results"][0]
    assert (result["status"], result["missing"]) == ("awaiting_attachments", [SHA]), result
    url = f"/v1/projects/{personas.other_project_id}/forms/photo_form/submissions/{INSTANCE}/attachments/p.jpg"
    downloaded = client.get(url, headers=personas.admin.headers)
    assert downloaded.status_code == 404
    assert PHOTO not in downloaded.get_data()


def test_blobs_missing_does_not_reveal_another_projects_hash(client: FlaskClient, personas: Personas) -> None:
    _a_holds_the_photo(client, personas)
    body = {"sha256": [SHA]}
    in_b = client.post(
        f"/v1/projects/{personas.other_project_id}/blobs/missing", json=body, headers=personas.outsider.headers
    )
    in_a = client.post(f"/v1/projects/{personas.project_id}/blobs/missing", json=body, headers=personas.device.headers)
    assert (in_b.status_code, in_a.status_code) == (200, 200)
    assert (in_b.get_json()["missing"], in_a.get_json()["missing"]) == ([SHA], [])


def test_a_tus_upload_of_another_projects_hash_needs_the_bytes(client: FlaskClient, personas: Personas) -> None:
    _a_holds_the_photo(client, personas)
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    created = client.post(
        "/v1/uploads",
        headers={
            **personas.outsider.headers,
            "Upload-Length": str(len(PHOTO)),
            "Upload-Metadata": f"sha256 {b64(SHA)},project {b64(str(personas.other_project_id))}",
            "Tus-Resumable": "1.0.0",
        },
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.headers["Upload-Offset"] == "0"  # not born complete: no oracle, no free bytes
    FaultyTransport(client, personas.outsider.headers, personas.other_project_id).upload(
        PHOTO, random.Random(1), faulty=False
    )
    missing = client.post(
        f"/v1/projects/{personas.other_project_id}/blobs/missing",
        json={"sha256": [SHA]},
        headers=personas.outsider.headers,
    )
    assert missing.get_json()["missing"] == []
