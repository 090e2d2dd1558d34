"""Uploads of spreadsheets without a form_id or a version, the way most admins write them.

Rules:
- GEN-1 no version → the server generates ``yyyymmddnn`` (today, UTC), stamps it into the XForm devices
  download (so submissions carry it) and says so (``version_generated``).
- GEN-2 the identical re-upload is a no-op: 200, the same version, no new row; with ``?publish=true`` it
  publishes that draft rather than making a version.
- GEN-3 changed content gets the next revision of the day, never a version the form has; content that
  returns after another version (A, B, A) is answered with its first version, made current again by
  ``?publish=true`` (one content, one version string: submissions made with it keep their schema).
- GEN-4 a version written in the settings sheet is kept as written (``version_generated`` false); a
  service caller bringing data collected elsewhere may keep a missing version empty.
- ID-4 no form_id → the file name's, non-ASCII letters and spaces kept, and every URL of the form works
  with it percent-encoded (formList's downloadUrl included).
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from server.db.base import utcnow
from tests.conftest import Personas
from tests.server.fixtures_forms import xlsform

LIST = "{http://openrosa.org/xforms/xformsList}"
XF = "{http://www.w3.org/2002/xforms}"


def _survey(label: str = "Nom", version: str | None = None) -> bytes:
    settings = f"| settings |\n|  | version |\n|  | {version} |\n" if version else ""
    return xlsform(f"| survey |\n|  | type | name | label |\n|  | text | nom | {label} |\n{settings}")


def _upload(client: FlaskClient, personas: Personas, data: bytes, filename: str, query: str = "") -> Any:
    return client.post(
        f"/v1/projects/{personas.project_id}/forms{query}",
        data={"file": (io.BytesIO(data), filename)},
        headers=personas.manager.headers,
        content_type="multipart/form-data",
    )


def _versions(client: FlaskClient, personas: Personas, xml_form_id: str) -> list[tuple[str, str]]:
    detail = client.get(
        f"/v1/projects/{personas.project_id}/forms/{quote(xml_form_id, safe='')}", headers=personas.manager.headers
    )
    assert detail.status_code == 200, detail.json
    return [(v["version"], v["status"]) for v in detail.json["versions"]]


def _today(revision: int) -> str:
    return f"{utcnow():%Y%m%d}{revision:02d}"


def test_gen_1_a_version_is_generated_and_served(client: FlaskClient, personas: Personas) -> None:
    response = _upload(client, personas, _survey(), "suivi.xlsx", "?publish=true")
    assert response.status_code == 201, response.json
    assert response.json["version"] == _today(1)
    assert response.json["versionGenerated"] is True
    served = client.get(f"/v1/projects/{personas.project_id}/forms/suivi.xml", headers=personas.coach.headers)
    instance = etree.fromstring(served.data).find(f".//{XF}instance")
    assert instance is not None
    assert instance[0].get("version") == _today(1)
    assert instance[0].get("id") == "suivi"


def test_gen_2_identical_reupload_is_a_no_op(client: FlaskClient, personas: Personas) -> None:
    draft = _upload(client, personas, _survey(), "suivi.xlsx")
    again = _upload(client, personas, _survey(), "suivi.xlsx")
    published = _upload(client, personas, _survey(), "suivi.xlsx", "?publish=true")
    assert [r.status_code for r in (draft, again, published)] == [201, 200, 200]
    assert {r.json["version"] for r in (draft, again, published)} == {_today(1)}
    assert again.json["created"] is False
    assert published.json["status"] == "published"
    assert _versions(client, personas, "suivi") == [(_today(1), "published")]


def test_gen_3_changed_content_gets_the_next_revision(client: FlaskClient, personas: Personas) -> None:
    labels = ["A", "B", "A"]
    answers = [_upload(client, personas, _survey(label), "suivi.xlsx", "?publish=true") for label in labels]
    assert [a.status_code for a in answers] == [201, 201, 200]
    assert [a.json["version"] for a in answers] == [_today(1), _today(2), _today(1)]
    assert _versions(client, personas, "suivi") == [(_today(1), "published"), (_today(2), "published")]
    detail = client.get(f"/v1/projects/{personas.project_id}/forms/suivi", headers=personas.manager.headers)
    assert detail.json["currentVersion"] == _today(1)


def test_gen_3_never_a_version_the_form_has(client: FlaskClient, personas: Personas) -> None:
    written = _upload(client, personas, _survey("A", _today(1)), "suivi.xlsx", "?publish=true")
    generated = _upload(client, personas, _survey("B"), "suivi.xlsx", "?publish=true")
    assert (written.json["version"], generated.json["version"]) == (_today(1), _today(2))


def test_gen_4_a_written_version_is_kept(client: FlaskClient, personas: Personas) -> None:
    response = _upload(client, personas, _survey(version="v7"), "suivi.xlsx")
    assert response.status_code == 201
    assert (response.json["version"], response.json["versionGenerated"]) == ("v7", False)


def test_gen_4_a_missing_version_may_stay_empty(app: Flask, personas: Personas) -> None:
    from server.services import forms as svc
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        result = svc.create_form_version(
            session,
            personas.project_id,
            _survey(),
            "ailleurs.xlsx",
            publish=True,
            actor="test",
            settings=svc.UploadSettings(convert_inline=True),
            generate_version=False,
        )
        session.close()
    assert (result.version, result.version_generated) == ("", False)


def test_id_4_the_file_name_names_the_form(client: FlaskClient, personas: Personas) -> None:
    response = _upload(client, personas, _survey(), "Enquête ménages #2.xlsx", "?publish=true")
    assert response.status_code == 201, response.json
    xml_form_id = response.json["xmlFormId"]
    assert xml_form_id == "Enquête ménages #2"
    listing = etree.fromstring(client.get(f"{personas.collect_prefix}/formList").data)
    (entry,) = [x for x in listing if x.findtext(f"{LIST}formID") == xml_form_id]
    download = entry.findtext(f"{LIST}downloadUrl")
    assert download is not None
    served = client.get("/" + download.split("://", 1)[1].split("/", 1)[1])
    assert served.status_code == 200
    assert etree.fromstring(served.data).find(f".//{XF}instance")[0].get("id") == xml_form_id
