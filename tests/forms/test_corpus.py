"""The shared corpus of real XLSForms and submissions, walked end to end.

Rules: CP1 every form converts exactly when the corpus index says pyxform converts it, and a
refused form's FormError carries pyxform's reason; CP2 every bind nodeset of a generated XForm has a
Field; CP3 the schema JSON round trip is exact; CP4 every submission parses against the form whose
id matches its root id attribute, and every flattened path is in the schema or listed as unknown;
CP5 the generated XForms that the index says pass ODK Validate still pass (one JVM for the batch).

Forms that take more than SLOW_SECONDS to convert (the 2235-row vendor survey takes 20+ s) run only
with FIELDSYNC_SLOW_TESTS=1; conversions are cached for the session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pyxform
from lxml import etree

from forms.convert import ConvertedForm, convert_upload
from forms.errors import FormError
from forms.schema import FormSchema
from forms.submission import flatten_values, parse_submission, read_submission_header, strip_repeat_indices
from tests import corpus_conversions

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()
SLOW_SECONDS = 3.0
RUN_SLOW = os.environ.get("FIELDSYNC_SLOW_TESTS") == "1"
XFORMS_NS = "http://www.w3.org/2002/xforms"
ODK_VALIDATE_JAR = Path(pyxform.__file__).parent / "validators" / "odk_validate" / "bin" / "ODK_Validate.jar"


def _index() -> list[dict[str, Any]]:
    path = CORPUS / "index.json"
    if not path.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return entries


INDEX = _index()
FORMS = [e for e in INDEX if e["kind"] == "form"]
SUBMISSIONS = [e for e in INDEX if e["kind"] == "submission"]
ABSENT = pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(reason=f"no corpus index in {CORPUS}"))


def _is_slow(entry: dict[str, Any]) -> bool:
    return float(entry.get("convert_s") or 0) > SLOW_SECONDS


def _form_params() -> list[Any]:
    if not FORMS:
        return [ABSENT]
    params = []
    for entry in FORMS:
        marks = []
        if _is_slow(entry) and not RUN_SLOW:
            reason = f"takes {entry['convert_s']} s to convert (> {SLOW_SECONDS} s); set FIELDSYNC_SLOW_TESTS=1"
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(entry, id=entry["file"], marks=marks))
    return params


class CorpusConversions:
    """Conversions of corpus forms, computed once per session (some take seconds)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._done: dict[str, ConvertedForm | FormError] = {}

    def get(self, relative: str) -> ConvertedForm | FormError:
        """Convert the corpus file (with its file stem as the fallback form id, like pyxform for paths)."""
        if relative not in self._done:
            path = self.root / relative
            try:
                self._done[relative] = corpus_conversions.convert(path.read_bytes(), path.name, path.stem)
            except FormError as exc:
                self._done[relative] = exc
        return self._done[relative]


@pytest.fixture(scope="session")
def conversions(corpus_dir: Path) -> CorpusConversions:
    """The session's cache of corpus conversions."""
    if not (corpus_dir / "index.json").is_file():
        pytest.skip(reason=f"the corpus has no index.json in {corpus_dir}")
    return CorpusConversions(corpus_dir)


def _bind_paths(xform: bytes) -> Iterator[str]:
    root = etree.fromstring(xform)
    for bind in root.iter(f"{{{XFORMS_NS}}}bind"):
        nodeset = bind.get("nodeset") or ""
        yield "/".join(nodeset.strip("/").split("/")[1:])


@pytest.mark.parametrize("entry", _form_params())
def test_corpus_form(entry: dict[str, Any], conversions: CorpusConversions) -> None:
    """CP1-CP3: conversion matches the index; binds have fields; the JSON round trip is exact."""
    result = conversions.get(entry["file"])
    if entry["pyxform"] != "yes":
        assert isinstance(result, FormError), f"{entry['file']} converted but the index says pyxform refuses it"
        reason = re.sub(r"^\w+: ", "", entry["error"])[:80]
        assert reason in result.message
        return
    assert isinstance(result, ConvertedForm), f"{entry['file']}: {result!r}"
    schema = result.schema
    assert (schema.form_id, schema.version, schema.root_name) == (entry["id_string"], entry["version"], entry["root"])
    paths = {f.path for f in schema.fields}
    missing = [p for p in _bind_paths(result.xform) if p not in paths]
    assert missing == []
    assert FormSchema.from_json(json.loads(json.dumps(schema.to_json()))) == schema
    assert len(schema.repeats) == entry["feats"]["repeats"]


def _schema_for_submission(entry: dict[str, Any], conversions: CorpusConversions) -> FormSchema | None:
    """The converted form of the same source whose id is the submission's root id, else the folder's form."""
    path = CORPUS / entry["file"]
    form_id = read_submission_header(path.read_bytes()).form_id
    source = entry["file"].split("/")[1]
    stem = path.parent.name
    by_folder: FormSchema | None = None
    for form in FORMS:
        if form["file"].split("/")[1] != source or form["pyxform"] != "yes" or (_is_slow(form) and not RUN_SLOW):
            continue
        result = conversions.get(form["file"])
        if not isinstance(result, ConvertedForm):
            continue
        if result.schema.form_id == form_id:
            return result.schema
        if Path(form["file"]).stem == stem:
            by_folder = result.schema
    return by_folder


def _submission_params() -> list[Any]:
    if not SUBMISSIONS:
        return [ABSENT]
    return [pytest.param(entry, id=entry["file"]) for entry in SUBMISSIONS]


@pytest.mark.parametrize("entry", _submission_params())
def test_corpus_submission(entry: dict[str, Any], conversions: CorpusConversions) -> None:
    """CP4: parse against the matching form; flattened paths are known or listed as unknown."""
    xml = (CORPUS / entry["file"]).read_bytes()
    header = read_submission_header(xml)
    schema = _schema_for_submission(entry, conversions)
    # 2011-2014 KoboCAT fixtures predate meta/instanceID; the server would have to assign one.
    fallback = None if header.instance_id else f"legacy:{entry['sha256_16']}"
    record = parse_submission(xml, schema, instance_id_fallback=fallback)
    assert record.form_id == header.form_id
    if record.encrypted:
        assert record.attachments, "an encrypted envelope names its encrypted files"
        return
    if schema is None:
        pytest.skip(reason=f"no converting form in the corpus matches id {header.form_id!r}")
    known = {f.path for f in schema.fields} | set(record.unknown_paths)
    flat = flatten_values(record.values)
    assert flat, "a submission has values"
    assert [p for p in flat if strip_repeat_indices(p) not in known] == []
    binary = {f.path for f in schema.fields if f.bind_type == "binary"}
    expected_attachments = {v for p, v in flat.items() if strip_repeat_indices(p) in binary and v}
    assert set(record.attachments) == expected_attachments


def test_corpus_entities_submission(conversions: CorpusConversions) -> None:
    """CP4: the synthetic entities submission yields its create with saved properties."""
    entry = next((e for e in SUBMISSIONS if e["file"].endswith("entities_trees/sub1.xml")), None)
    if entry is None:
        pytest.skip(reason="the corpus has no synthetic entities submission")
    schema = _schema_for_submission(entry, conversions)
    record = parse_submission((CORPUS / entry["file"]).read_bytes(), schema)
    (change,) = record.entities
    assert (change.list_name, change.create, change.label) == ("trees", True, "Argan")
    assert dict(change.properties) == {"species": "Argan", "geometry": "30.4202 -9.5982 12.0 3.5", "height": "7"}


@pytest.mark.slow
def test_odk_validate_accepts_converted_corpus(conversions: CorpusConversions, tmp_path: Path) -> None:
    """CP5: every form the index says passes ODK Validate still passes, checked in one JVM call."""
    if shutil.which("java") is None:
        pytest.skip(reason="java is not on PATH; ODK Validate (shipped in pyxform) needs a JVM")
    if not ODK_VALIDATE_JAR.is_file():
        pytest.skip(reason=f"ODK Validate jar not found at {ODK_VALIDATE_JAR}")
    files: list[str] = []
    for entry in FORMS:
        if entry.get("validate") != "pass" or (_is_slow(entry) and not RUN_SLOW):
            continue
        result = conversions.get(entry["file"])
        assert isinstance(result, ConvertedForm), entry["file"]
        target = tmp_path / (entry["file"].replace("/", "__") + ".xml")
        target.write_bytes(result.xform)
        files.append(str(target))
    assert files
    completed = subprocess.run(
        ["java", "-Djava.awt.headless=true", "-jar", str(ODK_VALIDATE_JAR), *files],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:] + completed.stdout[-2000:]


def _expected_xform_params() -> list[Any]:
    entries = [e for e in INDEX if e["kind"] == "expected-xform"]
    if not entries:
        return [ABSENT]
    return [pytest.param(entry, id=entry["file"]) for entry in entries]


@pytest.mark.parametrize("entry", _expected_xform_params())
def test_published_xform_upload(entry: dict[str, Any], corpus_dir: Path) -> None:
    """CP2: XForms published by their authors (2011-2024 pyxform) upload as is, every bind has a Field."""
    data = (corpus_dir / entry["file"]).read_bytes()
    converted = convert_upload(data, Path(entry["file"]).name)
    assert converted.xform == data
    paths = {f.path for f in converted.schema.fields}
    assert [p for p in _bind_paths(data) if p not in paths] == []
    assert FormSchema.from_json(json.loads(json.dumps(converted.schema.to_json()))) == converted.schema
