"""Corpus round trip through the server: publish, POST every submission like Collect, export, compare.

Rules:
- C1 for every corpus form with submissions that pyxform converts (``index.json``), every submission the
  server accepts is in ``export.zip?clean=false&splitGeopoint=false`` and every leaf the XML carries for
  a question of the form is in the row its repeat indices name (``KEY`` = ``<instanceID>/r[2]/x[1]``),
  column ``group-field``, byte for byte (uncleaned); repeat rows link to their parent (``PARENT_KEY``).
  The expected leaves are read from the raw XML here (ElementTree), not from the server's parser.
  Submissions the server refuses, and why, are listed in ``REFUSED`` (the test fails if one of them
  is suddenly accepted, or another one refused). An edit (``deprecatedID``) replaces its predecessor.
- C2 ``labels=labels&lang=...`` writes the French / Arabic choice labels of the corpus forms that have
  them (good_eats_multilang, tutorial_arabic_labels, all_types_coop_fr_ar).
- C3 the KoboCAT expected exports (``expected/kobocat/*.csv``) hold, cell for cell, what our export of
  the same submissions through the server holds; the column mapping and every documented difference
  come from ``tests/exports/test_kobocat_parity.py`` (imported, not copied), plus the differences the
  server adds, explained where they are allowed.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from forms.schema import Choice, FormSchema
from forms.submission import read_submission_header
from server.db.queries import exports as q
from sync.submissions import content_hash_xml
from tests.conftest import CORPUS, Personas
from tests.exports.test_kobocat_parity import _NO_COUNTERPART, _kobo, _ours
from tests.exports.test_kobocat_parity import CASES as KOBOCAT_CASES
from tests.server.fixtures_exports import post_submission_xml, rows_by_key, table_rows, zip_tables


def _corpus_index() -> dict[str, dict[str, object]]:
    if not (CORPUS / "index.json").is_file():
        return {}
    return {e["file"]: e for e in json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))}


def _form_entry(index: dict[str, dict[str, object]], source: str, stem: str) -> dict[str, object] | None:
    return next((index[f] for ext in (".xlsx", ".xls") if (f := f"forms/{source}/{stem}{ext}") in index), None)


def _corpus_forms() -> list[tuple[str, str]]:
    """(source, form stem) of every corpus form with submissions that pyxform converts."""
    index = _corpus_index()
    found = []
    for folder in sorted((CORPUS / "submissions").glob("*/*")) if index else []:
        entry = _form_entry(index, folder.parent.name, folder.name)
        if entry is not None and entry.get("pyxform") == "yes":
            found.append((folder.parent.name, folder.name))
    return found


# The parity test's time for a KoboCAT row without _submission_time.
FALLBACK_TIME = "2013-02-18T15:54:01"

FORMS = _corpus_forms() or [("absent", "absent")]

_UNKNOWN_FORM = 404  # no form with that id and version in the project: quarantined, not stored
_ID_CONFLICT = 409  # instanceID already stored with other XML: refused payload kept for review
# Submissions the server refuses, each with the HTTP status and why (OPENROSA.md, server/openrosa/submission.py).
REFUSED: dict[tuple[str, str, str], tuple[int, str]] = {
    ("formshare", "case_follow_up", "follow_01.xml"): (
        _UNKNOWN_FORM,
        "sent with form version 2; the corpus holds version 1 of the form only",
    ),
    ("formshare", "case_follow_up", "follow_02.xml"): (_UNKNOWN_FORM, "form version 2, as follow_01"),
    ("formshare", "case_start", "start_02.xml"): (
        _ID_CONFLICT,
        "FormShare's duplicate test: start_01's instanceID with other answers",
    ),
    ("formshare", "case_start", "start_04.xml"): (_ID_CONFLICT, "start_01's instanceID with other answers"),
    ("formshare", "case_start", "start_05.xml"): (_ID_CONFLICT, "start_01's instanceID with other answers"),
    ("kobocat", "transportation", "encrypted_submission_manifest.xml"): (
        _UNKNOWN_FORM,
        "an encrypted manifest of another form (transportation_encrypted)",
    ),
    ("kobocat", "transportation", "transport_2011-07-25_19-05-36_with_xmlns.xml"): (
        _ID_CONFLICT,
        "the 19-05-36 submission's instanceID, other bytes (a default xmlns)",
    ),
    ("kobocat", "tutorial", "tutorial_2012-06-27_11-27-53_bad_id_string.xml"): (
        _UNKNOWN_FORM,
        "KoboCAT's wrong-form test: root id tutorial_bad",
    ),
    ("kobocat", "tutorial", "tutorial_2012-06-27_11-27-53_w_uuid_same_instanceID.xml"): (
        _ID_CONFLICT,
        "KoboCAT's duplicate-instanceID test: w_uuid's instanceID with other answers",
    ),
}


@dataclass(frozen=True)
class Submitted:
    """What one accepted submission carried: its instance id and leaves by indexed path."""

    instance_id: str
    leaves: dict[str, str]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def submitted_leaves(xml: bytes, schema: FormSchema) -> dict[str, str]:
    """Every leaf of a submission XML that is a question of ``schema``, by path with repeat indices."""
    repeats = {f.path for f in schema.fields if f.kind == "repeat"}
    questions = {f.path for f in schema.fields if f.kind == "question"}
    out: dict[str, str] = {}

    def walk(element: ET.Element, path: str, plain: str) -> None:
        seen: Counter[str] = Counter()
        for child in element:
            tag = _local(child.tag)
            child_plain = f"{plain}/{tag}" if plain else tag
            child_path = f"{path}/{tag}" if path else tag
            if child_plain in repeats:
                seen[tag] += 1
                child_path += f"[{seen[tag]}]"
            if len(child) == 0 and child_plain in questions:
                out[child_path] = child.text or ""
            else:
                walk(child, child_path, child_plain)

    walk(ET.fromstring(xml), "", "")
    return out


def _submissions_form_id(source: str, stem: str) -> str | None:
    """The form id most of the form's corpus submissions carry (their root's ``id``)."""
    ids = Counter(
        read_submission_header(p.read_bytes()).form_id for p in (CORPUS / "submissions" / source / stem).glob("*.xml")
    )
    return ids.most_common(1)[0][0] if ids else None


def publish_corpus_form(app: Flask, personas: Personas, source: str, stem: str, form_id: str | None = None) -> str:
    """Publish a corpus form; a workbook without settings/form_id is given the id its submissions carry.

    (KoboCAT names such a form after its file; ODK Central takes the id from the uploader, as we do:
    ``tutorial_api.xls`` has no form_id and its submissions are for ``tutorial``.)
    """
    from server.services import forms as svc
    from server.store import get_store

    entry = _form_entry(_corpus_index(), source, stem)
    assert entry is not None
    path = CORPUS / str(entry["file"])
    settings = svc.UploadSettings(convert_inline=True, convert_timeout=60.0)
    with app.app_context():
        session = get_store().sessions()
        try:
            result = svc.create_form_version(
                session,
                personas.project_id,
                path.read_bytes(),
                path.name,
                publish=True,
                actor="test",
                settings=settings,
                default_form_id=form_id or _submissions_form_id(source, stem) or str(entry.get("id_string") or stem),
                # The corpus submissions were made with the versionless XForm: keep the version empty.
                generate_version=False,
            )
        finally:
            session.close()
    return result.xml_form_id


def _submit_all(
    client: FlaskClient, personas: Personas, schema: FormSchema, source: str, stem: str
) -> dict[str, Submitted]:
    """POST every submission of the form; return the current ones (edits replace their predecessor)."""
    current: dict[str, Submitted] = {}
    superseded: set[str] = set()  # an edit may arrive before its predecessor (Collect sends in any order)
    for path in sorted((CORPUS / "submissions" / source / stem).glob("*.xml")):
        xml = path.read_bytes()
        refused = REFUSED.get((source, stem, path.name))
        if refused is not None:
            post_submission_xml(client, personas, xml, expect=refused[0])
            continue
        post_submission_xml(client, personas, xml)
        header = read_submission_header(xml)
        instance = header.instance_id or f"sha256:{content_hash_xml(xml)}"
        if header.deprecated_id:
            superseded.add(header.deprecated_id)
            current.pop(header.deprecated_id, None)
        if instance not in superseded:
            current[instance] = Submitted(instance, submitted_leaves(xml, schema))
    return current


def _export(client: FlaskClient, personas: Personas, xml_form_id: str, query: str) -> dict[str, str]:
    response = client.get(
        f"/v1/projects/{personas.project_id}/forms/{xml_form_id}/export.zip?{query}",
        headers=personas.analyst.headers,
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return zip_tables(response.get_data())


@pytest.mark.parametrize(("source", "stem"), FORMS, ids=[f"{s}/{f}" for s, f in FORMS])
def test_corpus_round_trip(
    app: Flask, client: FlaskClient, session: Session, personas: Personas, source: str, stem: str
) -> None:
    if source == "absent":
        pytest.skip(reason=f"the shared corpus is absent (looked in {CORPUS})")
    xml_form_id = publish_corpus_form(app, personas, source, stem)
    schema = q.form_schemas(session, q.get_form(session, personas.project_id, xml_form_id))[-1]
    current = _submit_all(client, personas, schema, source, stem)
    files = _export(client, personas, xml_form_id, "clean=false&splitGeopoint=false")
    if not current:
        assert table_rows(files[f"{xml_form_id}.csv"]) == []
        pytest.skip(reason=f"the server refuses every submission of {source}/{stem} (see REFUSED)")
    rows = rows_by_key(files)
    root = table_rows(files[f"{xml_form_id}.csv"])
    assert sorted(r["KEY"] for r in root) == sorted(current)
    checked = 0
    for instance, submitted in current.items():
        for path, value in submitted.leaves.items():
            cut = path.rfind("]")
            key = instance if cut < 0 else f"{instance}/{path[: cut + 1]}"
            column = (path if cut < 0 else path[cut + 2 :]).replace("/", "-")
            assert key in rows, f"no row {key!r} for {path}"
            row = rows[key]
            if cut >= 0:
                parent_cut = key.rfind("]", 0, key.rfind("/"))
                want_parent = instance if parent_cut < len(instance) else key[: parent_cut + 1]
                assert row["PARENT_KEY"] == want_parent, (key, row["PARENT_KEY"])
            assert column in row, f"no column {column!r} in {row['_table']} (have {sorted(row)})"
            assert row[column] == value, f"{key} {column}: export {row[column]!r}, submitted {value!r}"
            checked += 1
    assert checked >= len(current)


def _label(choice: Choice | None, lang: str, default: str | None, name: str) -> str:
    """A choice's label as EXPORTS.md says: in ``lang``, else the default language, else untranslated, else its name."""
    if choice is None:
        return name  # not among the choices: kept as sent
    return next(
        (choice.labels[k] for k in (lang, default, "", "default") if k is not None and k in choice.labels), name
    )


# (form source, form stem, form id, submissions folder, lang): tutorial_arabic_labels has no submissions of
# its own; it is KoboCAT's tutorial form with Arabic labels, so the tutorial submissions fit it.
LABEL_CASES = [
    ("kobocat", "good_eats_multilang", None, "kobocat/good_eats_multilang", "French"),
    ("kobocat", "tutorial_arabic_labels", "tutorial", "kobocat/tutorial", "Arabic"),
    ("synthetic", "all_types_coop_fr_ar", None, "synthetic/all_types_coop_fr_ar", "fr"),
    ("synthetic", "all_types_coop_fr_ar", None, "synthetic/all_types_coop_fr_ar", "ar"),
]


@pytest.mark.parametrize(
    ("source", "stem", "form_id", "folder", "lang"),
    LABEL_CASES,
    ids=["good_eats-french", "tutorial-arabic", "coop-french", "coop-arabic"],
)
def test_corpus_labels_in_french_and_arabic(
    app: Flask,
    client: FlaskClient,
    session: Session,
    personas: Personas,
    source: str,
    stem: str,
    form_id: str | None,
    folder: str,
    lang: str,
) -> None:
    if not (CORPUS / "forms" / source).is_dir():
        pytest.skip(reason=f"the shared corpus is absent (looked in {CORPUS})")
    from exports.rows import LABEL_JOIN

    xml_form_id = publish_corpus_form(app, personas, source, stem, form_id)
    schema = q.form_schemas(session, q.get_form(session, personas.project_id, xml_form_id))[-1]
    key = next(k for k, name in schema.language_names.items() if lang in (k, name))
    src, _, sub_stem = folder.partition("/")
    current = _submit_all(client, personas, schema, src, sub_stem)
    rows = rows_by_key(_export(client, personas, xml_form_id, f"labels=labels&lang={lang}&clean=false"))
    selects = {f.path: f for f in schema.fields if f.control in ("select_one", "select_multiple") and f.choice_list}
    translated = 0
    for instance, submitted in current.items():
        for path, value in submitted.leaves.items():
            cut = path.rfind("]")
            plain = "/".join(seg.split("[")[0] for seg in path.split("/"))
            field = selects.get(plain)
            if field is None or not value.strip():
                continue
            choices = {c.name: c for c in schema.choice_lists[str(field.choice_list)].choices}
            names = value.split() if field.control == "select_multiple" else [value]
            want = LABEL_JOIN.join(_label(choices.get(n), key, schema.default_language, n) for n in names)
            row = rows[instance if cut < 0 else f"{instance}/{path[: cut + 1]}"]
            column = (path if cut < 0 else path[cut + 2 :]).replace("/", "-")
            assert row[column] == want, f"{instance} {column}: {row[column]!r}, want {want!r}"
            others = {
                LABEL_JOIN.join(_label(choices.get(n), k, schema.default_language, n) for n in names)
                for k in schema.languages
                if k != key
            }
            translated += want not in others
    assert translated > 0, f"no answer whose {lang} label differs from the other languages' labels"


@pytest.mark.parametrize(("stem", "expected_csv"), KOBOCAT_CASES, ids=[c[0] for c in KOBOCAT_CASES])
def test_kobocat_expected_exports_through_the_server(
    app: Flask, client: FlaskClient, personas: Personas, stem: str, expected_csv: str
) -> None:
    expected_path = CORPUS / "expected" / "kobocat" / expected_csv
    if not expected_path.is_file():
        pytest.skip(reason=f"the shared corpus is absent (looked in {CORPUS})")
    expected = list(csv.DictReader(io.StringIO(expected_path.read_text(encoding="utf-8"))))
    times = {row["meta/instanceID"]: row.get("_submission_time", "") for row in expected}
    xml_form_id = publish_corpus_form(app, personas, "kobocat", stem)
    posted: set[str] = set()
    for path in sorted((CORPUS / "submissions" / "kobocat" / stem).glob("*.xml")):
        xml = path.read_bytes()
        instance = read_submission_header(xml).instance_id
        if instance not in times or instance in posted:
            continue  # KoboCAT's export holds one version per instanceID; other files test other things
        # Received when KoboCAT received it, so SubmissionDate is comparable with _submission_time.
        when = datetime.fromisoformat(times[instance] or FALLBACK_TIME).replace(tzinfo=UTC)
        post_submission_xml(client, personas, xml, when=when)
        posted.add(instance)
    assert posted == set(times), "every submission KoboCAT exported must be in the corpus"

    rows = rows_by_key(_export(client, personas, xml_form_id, "splitSelectMultiples=true"))
    compared = 0
    for kobo_row in expected:
        instance = kobo_row["meta/instanceID"]
        for column, value in kobo_row.items():
            if column is None or column in _NO_COUNTERPART:
                continue  # None: KoboCAT's transportation rows end with a stray comma
            got = _ours(rows, instance, column)
            assert got is not None, f"no column for KoboCAT's {column!r}"
            if column == "_submission_time":
                # KoboCAT writes seconds in local-naive form; we write UTC with milliseconds and Z.
                assert got == (value or FALLBACK_TIME) + ".000Z"
                continue
            want = _kobo(value)
            select = column.rpartition("/")[0].replace("/", "-")
            if want == "0" and got == "" and rows[instance].get(select, "x") == "":
                continue  # unanswered select_multiple: KoboCAT says False, we leave it empty
            assert got == want, f"{stem} {instance} {column}: ours {got!r}, KoboCAT {value!r}"
            compared += 1
    assert compared >= len(expected)
