"""Corpus walk: every XLSForm of ../shared/corpus/forms goes through the server as an admin would upload it.

Rules:
- CORPUS-1 a form pyxform converts (index.json ``"pyxform": "yes"``) uploads with ``?publish=true`` as
  the admin has it (no form_id → its file name's; no version → a generated one), appears in formList
  with the md5 of what its downloadUrl serves, and that download equals ``convert_upload``'s XForm byte
  for byte (with the generated version stamped in, when there is one).
- CORPUS-2 its JSON schema lists every field the XForm binds (``<bind nodeset>``).
- CORPUS-3 a form pyxform rejects gets 400 whose ``details.reason`` is pyxform's message (with the
  sheet and row pyxform names in ``details`` when it gives them), and nothing is stored.
- CORPUS-4 all of them, uploaded one after the other into ONE project (several share a form id without
  a version), are accepted; uploading them all again makes no new version.
Forms that take more than 3 s to convert (index.json ``convert_s``) are skipped unless
FIELDSYNC_SLOW_TESTS=1. Conversions are shared by the run (tests/corpus_conversions.py; the server's converter is routed
through it), so the PostgreSQL pass only pays for the database work.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from forms.errors import FormError
from forms.identity import stamp_version
from tests import corpus_conversions
from tests.conftest import CORPUS, Personas

SLOW_SECONDS = 3.0
SLOW = os.environ.get("FIELDSYNC_SLOW_TESTS") == "1"
XF = "{http://www.w3.org/2002/xforms}"
LIST = "{http://openrosa.org/xforms/xformsList}"


def _entries() -> list[dict[str, Any]]:
    index = CORPUS / "index.json"
    if not index.is_file():
        return []
    return [e for e in json.loads(index.read_text()) if e.get("kind") == "form"]


ENTRIES = _entries()
CONVERTS = [e for e in ENTRIES if e.get("pyxform") == "yes"]
REJECTED = [e for e in ENTRIES if e.get("pyxform") != "yes"]


@pytest.fixture
def cached_conversions(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Convert in-process through the session cache (the child-process path is tested in test_forms_api)."""
    from server.services import form_conversion

    def inline(data: bytes, filename: str, *, default_form_id: str | None = None) -> Any:
        return form_conversion.TimedConversion(corpus_conversions.convert(data, filename, default_form_id), 0.0)

    monkeypatch.setattr(form_conversion, "convert_inline", inline)
    app.config["FORM_CONVERT_INLINE"] = True


def _skip_slow(entry: dict[str, Any]) -> None:
    seconds = float(entry.get("convert_s") or 0)
    if seconds > SLOW_SECONDS and not SLOW:
        pytest.skip(reason=f"pyxform takes {seconds:.0f} s on this form; run with FIELDSYNC_SLOW_TESTS=1")


def _upload(client: FlaskClient, personas: Personas, path: Path) -> Any:
    return client.post(
        f"/v1/projects/{personas.project_id}/forms?publish=true",
        data={"file": (io.BytesIO(path.read_bytes()), path.name)},
        headers=personas.manager.headers,
        content_type="multipart/form-data",
    )


@pytest.mark.usefixtures("cached_conversions")
@pytest.mark.parametrize("entry", CONVERTS, ids=[e["file"] for e in CONVERTS])
def test_corpus_1_converting_forms_are_served(client: FlaskClient, personas: Personas, entry: dict[str, Any]) -> None:
    _skip_slow(entry)
    path = CORPUS / entry["file"]
    expected = corpus_conversions.convert(path.read_bytes(), path.name)
    response = _upload(client, personas, path)
    assert response.status_code == 201, response.json
    xml_form_id = response.json["xmlFormId"]
    generated = expected.schema.version == ""
    assert response.json["versionGenerated"] is generated
    served_xform = stamp_version(expected.xform, response.json["version"]) if generated else expected.xform
    listing = etree.fromstring(client.get(f"{personas.collect_prefix}/formList").data)
    (xform,) = [x for x in listing if x.findtext(f"{LIST}formID") == xml_form_id]
    download_url = xform.findtext(f"{LIST}downloadUrl")
    served = client.get("/" + download_url.split("://", 1)[1].split("/", 1)[1])
    assert served.status_code == 200
    assert served.data == served_xform
    assert xform.findtext(f"{LIST}hash") == "md5:" + hashlib.md5(served.data).hexdigest()

    schema = client.get(
        f"/v1/projects/{personas.project_id}/forms/{xml_form_id}/schema", headers=personas.coach.headers
    )
    paths = {f["path"] for f in schema.json["fields"]}
    root = f"/{schema.json['root_name']}/"
    bound = {b.get("nodeset").removeprefix(root) for b in etree.fromstring(served.data).iter(f"{XF}bind")}
    # CORPUS-2: every bound node is a field (binds on the root's own attributes are not fields).
    assert {b for b in bound if not b.startswith("@")} <= paths


def _counts(session: Session) -> tuple[int, ...]:
    from server.db.models import Blob
    from server.db.models.forms import Form, FormAttachment, FormVersion

    session.expire_all()
    return tuple(
        session.scalar(select(func.count()).select_from(m)) or 0 for m in (Form, FormVersion, FormAttachment, Blob)
    )


@pytest.mark.usefixtures("cached_conversions")
@pytest.mark.parametrize("entry", REJECTED, ids=[e["file"] for e in REJECTED])
def test_corpus_3_rejected_forms_get_pyxform_reason(
    client: FlaskClient, personas: Personas, session: Session, entry: dict[str, Any]
) -> None:
    path = CORPUS / entry["file"]
    with pytest.raises(FormError) as raised:
        corpus_conversions.convert(path.read_bytes(), path.name)
    before = _counts(session)
    response = _upload(client, personas, path)
    assert response.status_code == 400, response.json
    details = response.json["details"]
    assert details["reason"] == raised.value.message
    for key in ("sheet", "row"):
        if key in raised.value.context:
            assert details[key] == raised.value.context[key]
    assert _counts(session) == before


@pytest.mark.usefixtures("cached_conversions")
def test_corpus_4_every_form_in_one_project_and_again(
    client: FlaskClient, personas: Personas, session: Session
) -> None:
    if not CONVERTS:
        pytest.skip(reason=f"the shared corpus is absent (looked in {CORPUS})")
    walked = [e for e in CONVERTS if SLOW or float(e.get("convert_s") or 0) <= SLOW_SECONDS]
    first = {e["file"]: _upload(client, personas, CORPUS / e["file"]) for e in walked}
    refused = {name: r.json for name, r in first.items() if r.status_code != 201}
    assert not refused
    versions = _counts(session)[1]
    assert versions == len(walked)
    again = {e["file"]: _upload(client, personas, CORPUS / e["file"]) for e in walked}
    assert {name: r.status_code for name, r in again.items() if r.status_code != 200} == {}
    assert {n: again[n].json["version"] for n in first} == {n: first[n].json["version"] for n in first}
    assert _counts(session)[1] == versions


def test_corpus_is_present() -> None:
    if not CORPUS.is_dir():
        pytest.skip(reason=f"the shared corpus is absent (looked in {CORPUS})")
    assert len(CONVERTS) >= 60
    assert len(REJECTED) >= 10
