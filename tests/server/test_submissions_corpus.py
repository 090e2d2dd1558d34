"""Every corpus submission whose form converts is accepted by the OpenRosa door and reads back unchanged.

Rule C1: for each XML in ``../shared/corpus/submissions`` whose form (found in the same source folder
by the root ``id`` attribute, per ``index.json``) converts with pyxform, publishing that form and POSTing
the XML answers 201, and ``GET .../submissions/<instance_id>`` returns exactly the values
``forms.submission.parse_submission`` reads from the XML, with the same version and attachment names.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from forms.convert import ConvertedForm
from forms.errors import FormError
from forms.submission import parse_submission, read_submission_header
from tests import corpus_conversions
from tests.conftest import CORPUS, Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import post_submission

SLOW_SECONDS = 5.0
XFORMS = "http://www.w3.org/2002/xforms"


def _index() -> list[dict[str, Any]]:
    path = CORPUS / "index.json"
    if not path.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(path.read_text())
    return entries


INDEX = _index()
FORMS = [
    e for e in INDEX if e["kind"] == "form" and e["pyxform"] == "yes" and float(e.get("convert_s") or 0) < SLOW_SECONDS
]
SUBMISSIONS = [e for e in INDEX if e["kind"] == "submission"]


@cache
def _convert(relative: str) -> ConvertedForm | None:
    path = CORPUS / relative
    try:
        return corpus_conversions.convert(path.read_bytes(), path.name, path.stem)
    except FormError:
        return None


def _form_for(entry: dict[str, Any]) -> tuple[str, ConvertedForm] | None:
    """The converting form of the same source folder whose XForm id is the submission's root id.

    The index records each converting form's id, so only the matching form is converted.
    """
    header = read_submission_header((CORPUS / entry["file"]).read_bytes())
    source = entry["file"].split("/")[1]
    for form in FORMS:
        if form["file"].split("/")[1] != source or form.get("id_string") != header.form_id:
            continue
        converted = _convert(form["file"])
        if converted is not None and converted.schema.form_id == header.form_id:
            return form["file"], converted
    return None


def _with_version(xform: bytes, version: str) -> bytes:
    root = etree.fromstring(xform)
    instance = root.find(f".//{{{XFORMS}}}instance")
    assert instance is not None
    next(iter(instance)).set("version", version)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def _params() -> list[Any]:
    if not SUBMISSIONS:
        return [pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(reason=f"no corpus index in {CORPUS}"))]
    return [pytest.param(entry, id=entry["file"]) for entry in SUBMISSIONS]


@pytest.mark.parametrize("entry", _params())
def test_corpus_submission_is_accepted_and_reads_back(
    app: Flask, client: FlaskClient, personas: Personas, entry: dict[str, Any]
) -> None:
    found = _form_for(entry)
    if found is None:
        pytest.skip(reason=f"no converting corpus form has the root id of {entry['file']}")
    form_file, converted = found
    xml = (CORPUS / entry["file"]).read_bytes()
    header = read_submission_header(xml)
    xform = converted.xform
    if header.version != converted.schema.version:
        # The phone filled another version of the same form: publish the form at that version.
        xform = _with_version(xform, header.version)
    # Upload the generated XForm (some corpus forms lack settings/form_id, which uploads require).
    _, xml_form_id, version = publish_form(app, personas.project_id, xform, f"{Path(form_file).stem}.xml")
    assert (xml_form_id, version) == (header.form_id, header.version)

    response = post_submission(client, personas.collect_prefix, xml)
    assert response.status_code == 201, response.get_data(as_text=True)

    instance_id = header.instance_id or f"sha256:{hashlib.sha256(xml).hexdigest()}"
    expected = parse_submission(xml, converted.schema, instance_id_fallback=instance_id)
    url = f"/v1/projects/{personas.project_id}/forms/{xml_form_id}/submissions/{instance_id}"
    body = client.get(url, headers=personas.analyst.headers).get_json()
    assert body["data"] == json.loads(json.dumps(expected.values))
    assert body["formVersion"] == header.version
    assert body["encrypted"] is expected.encrypted
    assert sorted(f["name"] for f in body["files"]) == sorted(expected.attachments)
    listing = client.get(
        f"/v1/projects/{personas.project_id}/forms/{xml_form_id}/submissions", headers=personas.analyst.headers
    )
    assert [item["currentInstanceId"] for item in listing.get_json()] == [instance_id]
