"""OpenRosa form serving checked against docs/OPENROSA.md and docs/reference/peers.md §4.

Rules:
- OR-HDR every response (200, 304, errors) carries ``X-OpenRosa-Version: 1.0``, ``Date`` and
  ``X-OpenRosa-Accept-Content-Length`` (= OPENROSA_ACCEPT_CONTENT_LENGTH); XML answers ``text/xml; charset=utf-8``.
- OR-LIST formList root and every child are in the xformsList namespace; each ``<xform>`` has exactly one
  formID, name, version, hash (``md5:`` + md5 of the bytes ``downloadUrl`` serves) and downloadUrl.
- OR-LIST-MANIFEST ``manifestUrl`` only when the form has media or entity lists.
- OR-LIST-STATE only published forms in state ``open``: drafts, ``closing`` and ``closed`` are not listed.
- OR-LIST-FILTER ``?formID=`` filters; ``?deviceID=`` is accepted everywhere.
- OR-ETAG formList, manifest and form XML carry an ETag; ``If-None-Match`` → 304 (with the headers).
- OR-XML the form download is the XForm bytes pyxform produced, byte for byte.
- OR-MANIFEST xformsManifest namespace; each mediaFile has filename, ``md5:`` hash, downloadUrl; only
  files present are listed; entity lists carry ``type="entityList"`` and ``integrityUrl``; the hash
  is the md5 of what downloadUrl serves.
- OR-ITEMSETS a select_one_external form gets pyxform's itemsets.csv as a published attachment.
- OR-INTEGRITY ``integrity?id=a,b`` answers ``<data><entities><entity id><deleted>`` per id.
- OR-URLS URLs in the answers keep the token prefix the caller used.
"""

from __future__ import annotations

import hashlib

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from forms.convert import convert_upload
from tests.conftest import Backend, Personas
from tests.server.fixtures_forms import (
    COOP_XLSX,
    ENTREPRENEUR_XLSX,
    PublishedForm,
    external_form,
    media_form,
    publish_form,
)

LIST_NS = "http://openrosa.org/xforms/xformsList"
MANIFEST_NS = "http://openrosa.org/xforms/xformsManifest"
L = f"{{{LIST_NS}}}"
M = f"{{{MANIFEST_NS}}}"


def _path(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def _check_headers(app: Flask, response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["X-OpenRosa-Version"] == "1.0"
    assert headers["Date"].endswith("GMT")
    advertised = min(app.config["OPENROSA_ACCEPT_CONTENT_LENGTH"], app.config["MAX_SUBMISSION_BYTES"])
    assert headers["X-OpenRosa-Accept-Content-Length"] == str(advertised)


def _xforms(client: FlaskClient, prefix: str, query: str = "") -> list[dict[str, str]]:
    response = client.get(f"{prefix}/formList{query}")
    assert response.status_code == 200
    root = etree.fromstring(response.data)
    assert root.tag == f"{L}xforms"
    result = []
    for xform in root:
        assert xform.tag == f"{L}xform"
        tags = [child.tag for child in xform]
        for required in ("formID", "name", "version", "hash", "downloadUrl"):
            assert tags.count(f"{L}{required}") == 1, (required, tags)
        assert all(tag.startswith(L) for tag in tags)
        result.append({child.tag.removeprefix(L): child.text or "" for child in xform})
    return result


@pytest.fixture
def prefix(personas: Personas) -> str:
    return personas.collect_prefix


@pytest.fixture
def coop(app: Flask, personas: Personas) -> PublishedForm:
    return PublishedForm(*publish_form(app, personas.project_id, COOP_XLSX))


def test_or_hdr_on_every_answer(app: Flask, client: FlaskClient, prefix: str, coop: PublishedForm) -> None:
    ok = client.get(f"{prefix}/formList?deviceID=collect:x")
    assert ok.headers["Content-Type"] == "text/xml; charset=utf-8"
    _check_headers(app, ok)
    not_modified = client.get(f"{prefix}/formList", headers={"If-None-Match": ok.headers["ETag"]})
    assert not_modified.status_code == 304
    _check_headers(app, not_modified)
    missing = client.get(f"{prefix}/forms/nope.xml")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("text/xml")
    _check_headers(app, missing)


def test_or_list_and_or_xml(client: FlaskClient, prefix: str, coop: PublishedForm) -> None:
    (entry,) = _xforms(client, prefix)
    assert entry["formID"] == coop.xml_form_id
    assert entry["version"] == coop.version
    assert entry["name"]
    assert "manifestUrl" not in entry  # the coop diagnostic has no media
    download = client.get(_path(entry["downloadUrl"]))
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert entry["hash"] == "md5:" + hashlib.md5(download.data).hexdigest()
    assert download.data == convert_upload(COOP_XLSX.read_bytes(), COOP_XLSX.name).xform


def test_or_list_manifest_url_only_with_media(app: Flask, client: FlaskClient, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    publish_form(app, personas.project_id, media_form(), "media.xlsx")
    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)
    entries = {e["formID"]: e for e in _xforms(client, prefix)}
    assert "manifestUrl" not in entries["coop_diagnostic"]
    assert _path(entries["media_test"]["manifestUrl"]) == f"{prefix}/forms/media_test/manifest"
    assert "manifestUrl" in entries["entrepreneur_followup"]


def test_or_list_state(app: Flask, client: FlaskClient, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, media_form(), "media.xlsx", publish=False)
    assert _xforms(client, prefix) == []
    publish_form(app, personas.project_id, COOP_XLSX)
    manager = personas.manager.headers
    for state, listed in (("closing", False), ("closed", False), ("open", True)):
        patched = client.patch(
            f"/v1/projects/{personas.project_id}/forms/coop_diagnostic", json={"state": state}, headers=manager
        )
        assert patched.status_code == 200
        assert [e["formID"] for e in _xforms(client, prefix)] == (["coop_diagnostic"] if listed else [])
        download = client.get(f"{prefix}/forms/coop_diagnostic.xml")
        # Phones that already have a closing form keep it working; a closed form is gone.
        assert download.status_code == (404 if state == "closed" else 200)


def test_or_list_filter(app: Flask, client: FlaskClient, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)
    assert len(_xforms(client, prefix, "?deviceID=collect:abc")) == 2
    only = _xforms(client, prefix, "?formID=entrepreneur_followup&deviceID=collect:abc")
    assert [e["formID"] for e in only] == ["entrepreneur_followup"]
    assert _xforms(client, prefix, "?formID=unknown") == []


@pytest.mark.parametrize("what", ["formList", "forms/coop_diagnostic.xml"], ids=["formList", "form-xml"])
def test_or_etag(client: FlaskClient, prefix: str, coop: PublishedForm, what: str) -> None:
    first = client.get(f"{prefix}/{what}")
    etag = first.headers["ETag"]
    assert etag
    assert client.get(f"{prefix}/{what}", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"{prefix}/{what}", headers={"If-None-Match": '"other"'}).status_code == 200


def test_or_etag_changes_with_a_new_version(app: Flask, client: FlaskClient, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, media_form("1"), "m.xlsx")
    etag = client.get(f"{prefix}/formList").headers["ETag"]
    publish_form(app, personas.project_id, media_form("2"), "m.xlsx")
    changed = client.get(f"{prefix}/formList", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert _xforms(client, prefix)[0]["version"] == "2"


def _manifest(client: FlaskClient, url: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    response = client.get(url)
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    root = etree.fromstring(response.data)
    assert root.tag == f"{M}manifest"
    files = []
    for media in root:
        assert media.tag == f"{M}mediaFile"
        children = {child.tag.removeprefix(M): child.text or "" for child in media}
        assert {"filename", "hash", "downloadUrl"} <= set(children)
        assert children["hash"].startswith("md5:")
        files.append((dict(media.attrib), children))
    return files


def test_or_manifest_lists_only_present_files(app: Flask, client: FlaskClient, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, media_form(), "media.xlsx")
    url = f"{prefix}/forms/media_test/manifest"
    assert _manifest(client, url) == []
    logo = b"\x89PNG\r\n\x1a\n fake logo"
    uploaded = client.post(
        f"/v1/projects/{personas.project_id}/forms/media_test/draft/attachments/logo.png",
        data=logo,
        content_type="image/png",
        headers=personas.manager.headers,
    )
    assert uploaded.status_code == 200
    ((attrs, entry),) = _manifest(client, url)
    assert attrs == {}
    assert entry["filename"] == "logo.png"
    assert entry["hash"] == "md5:" + hashlib.md5(logo).hexdigest()
    assert _path(entry["downloadUrl"]) == f"{prefix}/forms/media_test/attachments/logo.png"
    media = client.get(_path(entry["downloadUrl"]) + "?deviceID=collect:x")
    assert media.status_code == 200
    assert media.data == logo
    assert media.headers["Content-Type"] == "image/png"
    assert media.headers["X-OpenRosa-Version"] == "1.0"
    missing = client.get(f"{prefix}/forms/media_test/attachments/villages.csv")
    assert missing.status_code == 404


def test_or_manifest_entity_list(client: FlaskClient, app: Flask, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)
    ((attrs, entry),) = _manifest(client, f"{prefix}/forms/entrepreneur_followup/manifest")
    assert attrs == {"type": "entityList"}
    assert entry["filename"] == "entrepreneurs.csv"
    assert _path(entry["integrityUrl"]) == f"{prefix}/datasets/entrepreneurs/integrity"
    csv = client.get(_path(entry["downloadUrl"]))
    assert csv.status_code == 200
    assert csv.data.decode().splitlines()[0].startswith("name,label,__version")
    assert entry["hash"] == "md5:" + hashlib.md5(csv.data).hexdigest()


def test_or_itemsets_published(client: FlaskClient, app: Flask, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, external_form(), "external.xlsx")
    ((_, entry),) = _manifest(client, f"{prefix}/forms/external_test/manifest")
    assert entry["filename"] == "itemsets.csv"
    served = client.get(_path(entry["downloadUrl"]))
    assert served.data == convert_upload(external_form(), "external.xlsx").itemsets
    assert entry["hash"] == "md5:" + hashlib.md5(served.data).hexdigest()


def test_or_integrity(client: FlaskClient, app: Flask, prefix: str, personas: Personas) -> None:
    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)
    response = client.get(f"{prefix}/datasets/entrepreneurs/integrity?id=a1,b2&deviceID=collect:x")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(response.data)
    assert root.tag == "data"
    entities = root.find("entities")
    # Which ids are deleted is the sync area's business; every asked id gets one answer.
    assert [e.get("id") for e in entities] == ["a1", "b2"]
    assert all(e.findtext("deleted") in ("true", "false") for e in entities)
    assert client.get(f"{prefix}/datasets/unknown/integrity?id=a").status_code == 404


def test_or_urls_without_token(client: FlaskClient, personas: Personas, coop: PublishedForm) -> None:
    prefix = f"/v1/projects/{personas.project_id}"
    response = client.get(f"{prefix}/formList", headers=personas.coach.basic)
    root = etree.fromstring(response.data)
    url = root.find(f"{L}xform/{L}downloadUrl").text
    assert _path(url) == f"{prefix}/forms/coop_diagnostic.xml"


def test_or_served_examples_pass_odk_validate(
    app: Flask, client: FlaskClient, prefix: str, personas: Personas, tmp_path: object, backend: Backend
) -> None:
    import shutil
    import subprocess
    from pathlib import Path

    import pyxform

    if backend.name != "sqlite":
        pytest.skip(reason="the served XForm bytes do not depend on the store: validated once, on SQLite")
    if shutil.which("java") is None:
        pytest.skip(reason="java is not on PATH; ODK Validate (shipped in pyxform) needs a JVM")
    jar = Path(pyxform.__file__).parent / "validators" / "odk_validate" / "bin" / "ODK_Validate.jar"
    files = []
    for path in (COOP_XLSX, ENTREPRENEUR_XLSX):
        _, xml_form_id, _ = publish_form(app, personas.project_id, path)
        served = client.get(f"{prefix}/forms/{xml_form_id}.xml")
        target = Path(str(tmp_path)) / f"{xml_form_id}.xml"
        target.write_bytes(served.data)
        files.append(str(target))
    # One JVM for both files (docs/reference/xlsform.md §1.6).
    result = subprocess.run(
        ["java", "-Djava.awt.headless=true", "-jar", str(jar), *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
