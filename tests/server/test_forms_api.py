"""The forms JSON API: version lifecycle, attachments, bad input, conversion limits.

Rules:
- LIFE-1 upload without ``publish`` makes a draft (not in formList); ``POST .../draft/publish`` publishes it.
- LIFE-2 a published version string re-used with other content → 409 ``version_reused``; nothing changes.
- LIFE-3 the identical re-upload of a version → 200 with the same version (idempotent).
- LIFE-4 a draft with the same version can be replaced; a new draft replaces the previous draft.
- LIFE-5 every version is kept; the schema (``?version=``) and the original upload are served per version.
- LIFE-6 every change is in the audit log.
- LIFE-7 ``POST .../draft`` with no body copies the published version into a draft (its files carried over,
  a generated version); ``draft/publish?version=`` names the new version, written into the draft's XForm
  (as Central does); a version string the form already has is 409 ``version_reused``.
- ATT-1 expected attachments come from the form; a form publishes with missing media and its detail
  lists them; uploading (raw body or multipart ``file``) fills them; unknown names → 404.
- ATT-2 files carry over by name to the next version; itemsets.csv is published automatically.
- BAD-1 bad input gets a clear 4xx naming pyxform's reason and leaves no form, version, attachment or
  blob row behind (rows counted before and after).
- CONV-1 the response says how long conversion took; past FORM_CONVERT_TIMEOUT → 422
  ``conversion_timeout`` saying the limit and the elapsed time (conversion runs in a child process).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from forms.convert import convert_upload
from tests.conftest import Personas
from tests.server.fixtures_forms import (
    COOP_XLSX,
    external_form,
    media_form,
    xlsform,
)


def _upload(client: FlaskClient, personas: Personas, data: bytes, filename: str = "form.xlsx", query: str = "") -> Any:
    return client.post(
        f"/v1/projects/{personas.project_id}/forms{query}",
        data={"file": (io.BytesIO(data), filename)},
        headers=personas.manager.headers,
        content_type="multipart/form-data",
    )


def _form_url(personas: Personas, xml_form_id: str) -> str:
    return f"/v1/projects/{personas.project_id}/forms/{xml_form_id}"


def _listed(client: FlaskClient, personas: Personas) -> list[str]:
    from lxml import etree

    response = client.get(f"{personas.collect_prefix}/formList")
    ns = "{http://openrosa.org/xforms/xformsList}"
    return [e.text for e in etree.fromstring(response.data).iter(f"{ns}formID")]


def test_life_1_draft_then_publish(client: FlaskClient, personas: Personas) -> None:
    created = _upload(client, personas, COOP_XLSX.read_bytes(), COOP_XLSX.name)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["status"] == "draft"
    assert body["xmlFormId"] == "coop_diagnostic"
    assert body["conversionSeconds"] >= 0
    assert _listed(client, personas) == []
    published = client.post(f"{_form_url(personas, 'coop_diagnostic')}/draft/publish", headers=personas.manager.headers)
    assert (published.status_code, published.json) == (200, {"success": True})
    assert _listed(client, personas) == ["coop_diagnostic"]
    again = client.post(f"{_form_url(personas, 'coop_diagnostic')}/draft/publish", headers=personas.manager.headers)
    assert again.status_code == 404
    assert again.json["details"]["problem"] == "no_draft"


def test_life_2_reused_version_is_refused(client: FlaskClient, personas: Personas) -> None:
    assert _upload(client, personas, media_form("1", "Premier"), "m.xlsx", "?publish=true").status_code == 201
    refused = _upload(client, personas, media_form("1", "Autre contenu"), "m.xlsx", "?publish=true")
    assert refused.status_code == 409
    assert refused.json["details"]["problem"] == "version_reused"
    detail = client.get(_form_url(personas, "media_test"), headers=personas.manager.headers).json
    assert [v["version"] for v in detail["versions"]] == ["1"]
    assert detail["title"] == "Premier"


def test_life_3_identical_reupload_is_idempotent(client: FlaskClient, personas: Personas) -> None:
    first = _upload(client, personas, media_form(), "m.xlsx", "?publish=true")
    second = _upload(client, personas, media_form(), "m.xlsx", "?publish=true")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json["created"] is False
    assert second.json["version"] == first.json["version"]
    detail = client.get(_form_url(personas, "media_test"), headers=personas.analyst.headers).json
    assert len(detail["versions"]) == 1


def test_life_4_drafts_are_replaced(client: FlaskClient, personas: Personas) -> None:
    assert _upload(client, personas, media_form("1", "A"), "m.xlsx").status_code == 201
    replaced = _upload(client, personas, media_form("1", "B"), "m.xlsx")
    assert replaced.status_code == 201
    assert _upload(client, personas, media_form("2", "C"), "m.xlsx").status_code == 201
    detail = client.get(_form_url(personas, "media_test"), headers=personas.manager.headers).json
    assert [(v["version"], v["status"], v["title"]) for v in detail["versions"]] == [("2", "draft", "C")]
    assert detail["draftVersion"] == "2"
    assert detail["currentVersion"] is None


def test_life_7_a_draft_copied_from_the_published_version_is_published_under_a_new_version(
    client: FlaskClient, personas: Personas
) -> None:
    url, headers = _form_url(personas, "media_test"), personas.manager.headers
    assert _upload(client, personas, media_form("1", "Un"), "m.xlsx", "?publish=true").status_code == 201
    copied = client.post(f"{url}/draft", headers=headers)
    assert copied.status_code == 201, copied.json
    assert copied.json["success"] is True and copied.json["status"] == "draft"
    draft_version = copied.json["draftVersion"]
    assert draft_version not in ("", "1")
    detail = client.get(url, headers=headers).json
    assert (detail["currentVersion"], detail["draftVersion"]) == ("1", draft_version)
    taken = client.post(f"{url}/draft/publish?version=1", headers=headers)
    assert taken.status_code == 409 and taken.json["details"]["problem"] == "version_reused"
    published = client.post(f"{url}/draft/publish?version=2", headers=headers)
    assert published.status_code == 200, published.json
    detail = client.get(url, headers=headers).json
    assert (detail["currentVersion"], detail["draftVersion"]) == ("2", None)
    assert [v["version"] for v in client.get(f"{url}/versions", headers=headers).json] == ["1", "2"]
    xform = client.get(f"{url}.xml", headers=headers).get_data()
    assert b'version="2"' in xform and b'version="1"' not in xform
    nothing = client.post(f"{url}/draft/publish", headers=headers)
    assert nothing.status_code == 404


def test_life_5_versions_schema_and_source(client: FlaskClient, personas: Personas) -> None:
    v1, v2 = media_form("1", "Un"), media_form("2", "Deux")
    _upload(client, personas, v1, "v1.xlsx", "?publish=true")
    _upload(client, personas, v2, "v2.xlsx", "?publish=true")
    url = _form_url(personas, "media_test")
    detail = client.get(url, headers=personas.analyst.headers).json
    assert [(v["version"], v["status"]) for v in detail["versions"]] == [("1", "published"), ("2", "published")]
    assert detail["currentVersion"] == "2"
    schema = client.get(f"{url}/schema", headers=personas.coach.headers).json
    assert schema == convert_upload(v2, "v2.xlsx").schema.to_json()
    old = client.get(f"{url}/schema?version=1", headers=personas.coach.headers).json
    assert old["title"] == "Un"
    source = client.get(f"{url}/versions/1/xlsx", headers=personas.analyst.headers)
    assert source.status_code == 200
    assert source.data == v1
    assert "v1.xlsx" in source.headers["Content-Disposition"]
    assert client.get(f"{url}/versions/9/xlsx", headers=personas.analyst.headers).status_code == 404
    assert client.get(f"{url}/schema?version=9", headers=personas.analyst.headers).status_code == 404


def test_life_6_audit(client: FlaskClient, personas: Personas) -> None:
    _upload(client, personas, media_form(), "m.xlsx")
    url = _form_url(personas, "media_test")
    client.post(f"{url}/draft/publish", headers=personas.manager.headers)
    client.patch(url, json={"state": "closed"}, headers=personas.manager.headers)
    client.post(f"{url}/draft/attachments/logo.png", data=b"png", headers=personas.manager.headers)
    events = client.get(f"/v1/audits?projectId={personas.project_id}", headers=personas.admin.headers).json
    actions = [e["action"] for e in events if e.get("subject") == "form:media_test"]
    assert sorted(actions) == sorted(
        ["form.draft_uploaded", "form.version_published", "form.state_changed", "form.attachment_uploaded"]
    )


def test_patch_refuses_unknown_state(client: FlaskClient, personas: Personas) -> None:
    _upload(client, personas, media_form(), "m.xlsx")
    response = client.patch(_form_url(personas, "media_test"), json={"state": "gone"}, headers=personas.manager.headers)
    assert response.status_code == 400


def test_att_1_missing_then_uploaded(client: FlaskClient, personas: Personas) -> None:
    published = _upload(client, personas, media_form(), "m.xlsx", "?publish=true")
    assert sorted(published.json["missingAttachments"]) == ["logo.png", "villages.csv"]
    url = _form_url(personas, "media_test")
    detail = client.get(url, headers=personas.manager.headers).json
    assert sorted(detail["missingAttachments"]) == ["logo.png", "villages.csv"]
    raw = client.post(f"{url}/draft/attachments/logo.png", data=b"\x89PNG", headers=personas.manager.headers)
    assert raw.status_code == 200
    assert (raw.json["present"], raw.json["exists"], raw.json["success"]) == (True, True, True)
    multi = client.post(
        f"{url}/draft/attachments/villages.csv",
        data={"file": (io.BytesIO(b"name,label\nv1,Douar 1\n"), "villages.csv", "text/csv")},
        headers=personas.manager.headers,
        content_type="multipart/form-data",
    )
    assert multi.status_code == 200
    listing = client.get(f"{url}/attachments", headers=personas.manager.headers).json
    assert all(a["exists"] for a in listing)
    assert {a["name"]: a["kind"] for a in listing} == {"logo.png": "image", "villages.csv": "csv"}
    unknown = client.post(f"{url}/draft/attachments/other.png", data=b"x", headers=personas.manager.headers)
    assert unknown.status_code == 404
    assert unknown.json["details"]["problem"] == "attachment_not_expected"


def test_att_2_carry_over_and_itemsets(client: FlaskClient, personas: Personas) -> None:
    _upload(client, personas, media_form("1"), "m.xlsx", "?publish=true")
    url = _form_url(personas, "media_test")
    client.post(f"{url}/draft/attachments/logo.png", data=b"\x89PNG", headers=personas.manager.headers)
    second = _upload(client, personas, media_form("2"), "m.xlsx", "?publish=true")
    assert second.json["missingAttachments"] == ["villages.csv"]
    external = _upload(client, personas, external_form(), "external.xlsx", "?publish=true")
    assert external.json["missingAttachments"] == []
    listing = client.get(f"{_form_url(personas, 'external_test')}/attachments", headers=personas.manager.headers)
    assert [(a["name"], a["kind"], a["present"]) for a in listing.json] == [("itemsets.csv", "itemsets", True)]


# ---------------------------------------------------------------------------------------------
# Bad input


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (8 * 1024 * 1024))
    return buffer.getvalue()


XXE_XFORM = b"""<?xml version="1.0"?>
<!DOCTYPE h:html [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml">
<h:head><h:title>&xxe;</h:title><model><instance><data id="x"><q/></data></instance></model></h:head>
<h:body/></h:html>"""

NO_SURVEY = """
| settings |
|          | form_id |
|          | nosurvey |
"""

DUPLICATE_NAMES = """
| survey   |
|          | type | name | label |
|          | text | q1   | Q1    |
|          | text | q1   | Q1 encore |
| settings |
|          | form_id |
|          | dup     |
"""

NO_FORM_ID = """
| survey |
|        | type | name | label |
|        | text | q1   | Q1    |
"""

BAD_INPUTS = [
    ("not-a-spreadsheet", lambda: b"just some text, not a form", "notes.txt", 400, "not_a_spreadsheet"),
    ("corrupt-xlsx", lambda: b"PK\x03\x04" + b"\x00garbage" * 50, "broken.xlsx", 400, "corrupt_spreadsheet"),
    ("zip-bomb", _zip_bomb, "bomb.xlsx", 413, "spreadsheet_too_large"),
    ("missing-survey-sheet", lambda: xlsform(NO_SURVEY), "nosurvey.xlsx", 400, "xlsform_invalid"),
    ("duplicate-names", lambda: xlsform(DUPLICATE_NAMES), "dup.xlsx", 400, "xlsform_invalid"),
    ("xform-with-dtd", lambda: XXE_XFORM, "xxe.xml", 400, "xform_unsafe"),
    ("name-gives-no-form-id", lambda: xlsform(NO_FORM_ID), ".xlsx", 400, "missing_form_id"),
    ("name-gives-bad-form-id", lambda: xlsform(NO_FORM_ID), "noid.xls.xlsx", 400, "invalid_form_id"),
    ("empty-file", lambda: b"", "empty.xlsx", 400, "empty_upload"),
]


def _counts(session: Session) -> dict[str, int]:
    from server.db.models import Blob
    from server.db.models.forms import Form, FormAttachment, FormVersion

    session.expire_all()
    return {
        m.__name__: session.scalar(select(func.count()).select_from(m)) or 0
        for m in (Form, FormVersion, FormAttachment, Blob)
    }


@pytest.mark.parametrize(("case", "make", "filename", "status", "code"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_1_bad_input_leaves_nothing(
    client: FlaskClient,
    personas: Personas,
    session: Session,
    case: str,
    make: Any,
    filename: str,
    status: int,
    code: str | None,
) -> None:
    before = _counts(session)
    response = _upload(client, personas, make(), filename, "?publish=true")
    assert response.status_code == status, response.json
    body = response.json
    assert set(body) == {"code", "message", "details"}
    assert body["message"]
    if code is not None:
        assert body["details"]["problem"] == code
    assert _counts(session) == before


def test_bad_1_pyxform_reason_names_the_row(client: FlaskClient, personas: Personas) -> None:
    response = _upload(client, personas, xlsform(DUPLICATE_NAMES), "dup.xlsx")
    details = response.json["details"]
    assert details["sheet"] == "survey"
    assert details["row"] == 3
    assert "q1" in details["reason"]
    assert details["messageFr"].startswith("[feuille survey, ligne 3]")


def test_bad_1_over_size_and_missing_file(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    before = _counts(session)
    app.config["MAX_FORM_BYTES"] = 1000
    too_big = _upload(client, personas, COOP_XLSX.read_bytes(), COOP_XLSX.name)
    assert too_big.status_code == 413
    assert too_big.json["details"]["limitBytes"] == 1000
    no_file = client.post(f"/v1/projects/{personas.project_id}/forms", headers=personas.manager.headers)
    assert no_file.status_code == 400
    assert no_file.json["details"]["problem"] == "missing_file"
    assert _counts(session) == before


def test_bad_1_form_id_fallback(client: FlaskClient, personas: Personas) -> None:
    response = _upload(client, personas, xlsform(NO_FORM_ID), "noid.xlsx", "?formId=fallback_id")
    assert response.status_code == 201
    assert response.json["xmlFormId"] == "fallback_id"
    bad = _upload(client, personas, xlsform(NO_FORM_ID), "noid.xlsx", "?formId=a/b")
    assert bad.status_code == 400
    assert bad.json["details"]["problem"] == "invalid_form_id"


def test_bad_1_form_id_fallback_header(client: FlaskClient, personas: Personas) -> None:
    """Central's web page percent-encodes X-XlsForm-FormId-Fallback (headers carry Latin-1 only)."""
    response = client.post(
        f"/v1/projects/{personas.project_id}/forms",
        data={"file": (io.BytesIO(xlsform(NO_FORM_ID)), "noid.xlsx")},
        headers={**personas.manager.headers, "X-XlsForm-FormId-Fallback": "enqu%C3%AAte%20m%C3%A9nages"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    assert response.json["xmlFormId"] == "enquête ménages"
    detail = client.get(_form_url(personas, "enquête ménages"), headers=personas.manager.headers)
    assert detail.status_code == 200
    bad = client.post(
        f"/v1/projects/{personas.project_id}/forms",
        data={"file": (io.BytesIO(xlsform(NO_FORM_ID)), "noid.xlsx")},
        headers={**personas.manager.headers, "X-XlsForm-FormId-Fallback": "%FF%FE"},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 400
    assert bad.json["details"]["problem"] == "invalid_form_id"


# ---------------------------------------------------------------------------------------------
# Conversion in a child process, with a time limit


def test_conv_1_child_process_and_timeout(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    app.config["FORM_CONVERT_INLINE"] = False
    done = _upload(client, personas, media_form(), "m.xlsx")
    assert done.status_code == 201
    assert done.json["conversionSeconds"] > 0
    before = _counts(session)
    app.config["FORM_CONVERT_TIMEOUT"] = 0.001
    slow = _upload(client, personas, media_form("2"), "m.xlsx")
    assert slow.status_code == 422
    assert slow.json["details"]["problem"] == "conversion_timeout"
    assert slow.json["details"]["limitSeconds"] == 0.001
    assert slow.json["details"]["elapsedSeconds"] >= 0.001
    assert "0.001 s" in slow.json["message"]
    assert _counts(session) == before
