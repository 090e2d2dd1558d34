"""The export endpoints end to end: example forms round trip, labels, options, presets, audit.

Rules:
- E1 what was submitted equals what ``export.zip`` holds, value by value, repeat rows under the right
  parent (KEY / PARENT_KEY); the superseded version of an edited submission is left out and counted.
- E2 ``labels=labels&lang=fr|ar`` writes the French / Arabic choice labels.
- E3 a bad parameter is a 400 naming it, before any byte is streamed; an unknown form is a 404.
- E4 presets: saved per form, applied with ``?preset=``, explicit parameters override; 409 on a taken
  name; deleted. E5 every export is audited as ``form.export``. E6 XLSX and GeoJSON are served.
- E7 the XLSX download streams: its first bytes leave while most submissions are still unread.
- E8 the options' names on the wire are camelCase (issue 16), those of ``submissions.csv.zip``: a
  snake_case name is a 400 ``export_option_invalid`` naming its camelCase spelling, on both routes and in
  a preset's ``options``; a preset stored before (snake_case keys) is served camelCase, applies with
  ``?preset=``, and a scheduled run of it writes its file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from forms.submission import parse_submission
from server.db.models import AuditEvent
from server.db.queries import exports as q
from tests.conftest import REPO, Personas
from tests.server.fixtures_exports import (
    assert_export_holds,
    post_submission_xml,
    rows_by_key,
    table_rows,
    zip_tables,
)
from tests.server.fixtures_forms import COOP_XLSX, ENTREPRENEUR_XLSX, PublishedForm, publish_form

SUBMISSIONS = REPO / "examples" / "submissions"


@pytest.fixture
def coop_form(app: Flask, personas: Personas) -> PublishedForm:
    """The cooperative diagnostic example, published."""
    return PublishedForm(*publish_form(app, personas.project_id, COOP_XLSX))


@pytest.fixture
def entrepreneur_form(app: Flask, personas: Personas) -> PublishedForm:
    """The entrepreneur follow-up example, published."""
    return PublishedForm(*publish_form(app, personas.project_id, ENTREPRENEUR_XLSX))


def _store_examples(client: FlaskClient, session: Session, personas: Personas, form: PublishedForm) -> dict[str, dict]:
    """POST the example submissions of ``form`` as the coach; return the current values by instance id."""
    current: dict[str, dict] = {}
    schema = q.form_schemas(session, q.get_form(session, personas.project_id, form.xml_form_id))[-1]
    for xml_path in sorted((SUBMISSIONS / form.xml_form_id).glob("*.xml")):
        xml = xml_path.read_bytes()
        post_submission_xml(client, personas, xml)
        record = parse_submission(xml, schema)
        if record.deprecated_id:
            current.pop(record.deprecated_id, None)
        current[record.instance_id] = dict(record.values)
    return current


def _url(personas: Personas, form: PublishedForm, fmt: str = "zip", query: str = "") -> str:
    return f"/v1/projects/{personas.project_id}/forms/{form.xml_form_id}/export.{fmt}{'?' + query if query else ''}"


@pytest.mark.parametrize("which", ["coop_diagnostic", "entrepreneur_followup"], ids=["coop", "entrepreneur"])
def test_example_forms_round_trip(
    request: pytest.FixtureRequest, client: FlaskClient, session: Session, personas: Personas, which: str
) -> None:
    form: PublishedForm = request.getfixturevalue("coop_form" if which == "coop_diagnostic" else "entrepreneur_form")
    current = _store_examples(client, session, personas, form)
    response = client.get(_url(personas, form), headers=personas.analyst.headers, buffered=False)  # streamed
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.is_streamed
    files = zip_tables(response.get_data())
    response.close()  # ends the request here, as a buffered answer would
    schemas = q.form_schemas(session, q.get_form(session, personas.project_id, form.xml_form_id))
    checked = assert_export_holds(files, current, schemas, split_geopoint=True)
    assert checked > 20
    root = table_rows(files[f"{form.xml_form_id}.csv"])
    assert sorted(r["KEY"] for r in root) == sorted(current)  # the superseded version is not a row
    assert {r["SubmitterID"] for r in root} == {"coach-persona"}
    report = table_rows(files["cleaning_report.csv"])
    excluded = {r["step"]: int(r["count"]) for r in report if r["table"] == "*"}
    edits = sum(1 for p in (SUBMISSIONS / form.xml_form_id).glob("*.xml") if b"deprecatedID" in p.read_bytes())
    assert excluded.get("excluded:superseded_edit", 0) == edits


def test_repeat_rows_link_to_their_parent(
    client: FlaskClient, session: Session, personas: Personas, coop_form: PublishedForm
) -> None:
    _store_examples(client, session, personas, coop_form)
    files = zip_tables(client.get(_url(personas, coop_form), headers=personas.analyst.headers).get_data())
    rows = rows_by_key(files)
    tamount = "uuid:2f8db99c-f871-439e-8c1f-230c48988777"
    edited = next(k for k in rows if rows[k]["_table"] == "coop_diagnostic.csv" and rows[k]["Edits"] == "1")
    assert edited != tamount  # the edit has its own instanceID; the chain's first version is gone
    channel = rows[f"{edited}/products/product[2]/sales_channel[1]"]
    assert channel["PARENT_KEY"] == f"{edited}/products/product[2]"
    assert channel["channel"] == "souk"
    assert rows[channel["PARENT_KEY"]]["PARENT_KEY"] == edited


@pytest.mark.parametrize(
    ("lang", "region_label"),
    [("fr", "Souss-Massa"), ("ar", "سوس - ماسة")],
    ids=["french", "arabic"],
)
def test_labels_in_french_and_arabic(
    client: FlaskClient,
    session: Session,
    personas: Personas,
    coop_form: PublishedForm,
    lang: str,
    region_label: str,
) -> None:
    _store_examples(client, session, personas, coop_form)
    response = client.get(
        _url(personas, coop_form, query=f"labels=labels&lang={lang}"), headers=personas.analyst.headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    root = table_rows(zip_tables(response.get_data())["coop_diagnostic.csv"])
    regions = {r["location-region"] for r in root}
    assert region_label in regions, regions


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("labels=maybe", "labels"),
        ("lang=klingon", "lang"),
        ("since=yesterday", "since"),
        ("reviewState=pending", "reviewState"),
        ("splitGeopoint=perhaps", "splitGeopoint"),
        ("colour=red", "colour"),
        ("field.nope=1", "field.nope"),
        ("preset=missing", "preset"),
        ("since=2026-02-01&until=2026-01-01", "until"),
    ],
    ids=["labels", "lang", "since", "review-state", "bool", "unknown", "field-filter", "preset", "range"],
)
def test_bad_parameter_is_400_naming_it(
    client: FlaskClient, personas: Personas, coop_form: PublishedForm, query: str, field: str
) -> None:
    response = client.get(_url(personas, coop_form, query=query), headers=personas.analyst.headers)
    assert response.status_code == 400
    body = response.get_json()
    assert body["details"]["field"] == field
    assert field in body["message"]


def test_unknown_form_is_404(client: FlaskClient, personas: Personas) -> None:
    response = client.get(f"/v1/projects/{personas.project_id}/forms/nope/export.zip", headers=personas.analyst.headers)
    assert response.status_code == 404


def test_geojson_without_geopoint_is_400(
    client: FlaskClient, personas: Personas, entrepreneur_form: PublishedForm
) -> None:
    schemas = []  # the entrepreneur form may or may not have a geopoint: only check the answer is clean
    response = client.get(_url(personas, entrepreneur_form, "geojson"), headers=personas.analyst.headers)
    assert response.status_code in (200, 400), schemas
    if response.status_code == 400:
        assert response.get_json()["details"]["field"] == "geojsonField"


def test_presets_apply_and_explicit_parameters_override(
    client: FlaskClient, session: Session, personas: Personas, coop_form: PublishedForm
) -> None:
    _store_examples(client, session, personas, coop_form)
    base = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-presets"
    body = {"name": "arabe", "options": {"labels": "labels", "lang": "ar", "splitSelectMultiples": True}}
    created = client.post(base, json=body, headers=personas.manager.headers)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["options"]["splitSelectMultiples"] == ["true"]
    assert client.post(base, json=body, headers=personas.manager.headers).status_code == 409
    bad = client.post(base, json={"name": "bad", "options": {"lang": "xx"}}, headers=personas.manager.headers)
    assert bad.status_code == 400 and bad.get_json()["details"]["field"] == "lang"
    assert [p["name"] for p in client.get(base, headers=personas.analyst.headers).get_json()] == ["arabe"]

    root = table_rows(
        zip_tables(
            client.get(_url(personas, coop_form, query="preset=arabe"), headers=personas.analyst.headers).get_data()
        )["coop_diagnostic.csv"]
    )
    assert "سوس - ماسة" in {r["location-region"] for r in root}
    assert any(h.startswith("support_needs-needs/") for h in root[0])  # split from the preset
    overridden = client.get(_url(personas, coop_form, query="preset=arabe&lang=fr"), headers=personas.analyst.headers)
    root = table_rows(zip_tables(overridden.get_data())["coop_diagnostic.csv"])
    assert "Souss-Massa" in {r["location-region"] for r in root}

    removed = client.delete(f"{base}/arabe", headers=personas.manager.headers)
    assert (removed.status_code, removed.get_json()) == (200, {"success": True})  # as Central answers a deletion
    assert client.delete(f"{base}/arabe", headers=personas.manager.headers).status_code == 404
    assert (
        client.get(_url(personas, coop_form, query="preset=arabe"), headers=personas.analyst.headers).status_code == 400
    )


def test_every_export_is_audited(
    client: FlaskClient, session: Session, personas: Personas, coop_form: PublishedForm
) -> None:
    client.get(_url(personas, coop_form, query="lang=fr"), headers=personas.manager.headers).get_data()
    session.rollback()
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "form.export")).all()
    assert len(events) == 1
    assert events[0].actor == f"user:{personas.manager.id}"
    assert events[0].details["query"] == {"lang": ["fr"]}


def test_xlsx_and_geojson(client: FlaskClient, session: Session, personas: Personas, coop_form: PublishedForm) -> None:
    current = _store_examples(client, session, personas, coop_form)
    xlsx = client.get(_url(personas, coop_form, "xlsx"), headers=personas.analyst.headers)
    assert xlsx.status_code == 200
    wb = load_workbook(io.BytesIO(xlsx.get_data()), read_only=True)
    assert wb.sheetnames[0] == "coop_diagnostic" and wb.sheetnames[-1] == "cleaning_report"
    assert len(list(wb["coop_diagnostic"].iter_rows())) == len(current) + 1
    geo = client.get(_url(personas, coop_form, "geojson"), headers=personas.analyst.headers)
    assert geo.status_code == 200 and geo.mimetype == "application/geo+json"
    features = json.loads(geo.get_data())["features"]
    assert {f["id"] for f in features} == set(current)
    tamount = next(f for f in features if "Tamount" in f["properties"]["identification-coop_name"])
    assert tamount["geometry"]["coordinates"] == [-9.8231, 29.7986, 38.0]


def test_xlsx_download_starts_before_the_rows_are_read(
    client: FlaskClient,
    session: Session,
    personas: Personas,
    coop_form: PublishedForm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _store_examples(client, session, personas, coop_form)
    real = q.iter_export_records
    total, read = 3_000, [0]

    def many(*args: Any, **kwargs: Any) -> Iterator[Any]:
        first = next(r for r in real(*args, **kwargs) if r.current)  # a superseded version is left out
        for _ in range(total):
            read[0] += 1
            yield first

    monkeypatch.setattr(q, "iter_export_records", many)
    response = client.get(_url(personas, coop_form, "xlsx"), headers=personas.analyst.headers, buffered=False)
    assert response.status_code == 200 and response.is_streamed
    chunks = iter(response.response)
    first = next(chunks)
    assert first.startswith(b"PK\x03\x04") and read[0] < total // 4, read[0]
    data = first + b"".join(chunks)
    response.close()
    assert read[0] == total
    wb = load_workbook(io.BytesIO(data), read_only=True)
    assert len(list(wb["coop_diagnostic"].iter_rows())) == total + 1


def test_cli_export_writes_the_same_zip(
    app: Flask, client: FlaskClient, session: Session, personas: Personas, coop_form: PublishedForm, tmp_path: Path
) -> None:
    current = _store_examples(client, session, personas, coop_form)
    out = tmp_path / "coop.zip"
    runner = app.test_cli_runner()
    from server.scheduler import export_command

    result = runner.invoke(
        export_command,
        [
            "--project",
            str(personas.project_id),
            "--form",
            "coop_diagnostic",
            "--out",
            str(out),
            "--lang",
            "fr",
            "--opt",
            "labels=labels",
        ],
    )
    assert result.exit_code == 0, result.output
    root = table_rows(zip_tables(out.read_bytes())["coop_diagnostic.csv"])
    assert sorted(r["KEY"] for r in root) == sorted(current)
    assert "Souss-Massa" in {r["location-region"] for r in root}
    bad = runner.invoke(
        export_command,
        ["--project", str(personas.project_id), "--form", "coop_diagnostic", "--out", str(out), "--opt", "lang=xx"],
    )
    assert bad.exit_code != 0 and "lang" in bad.output


SNAKE_NAMES = {
    "group_paths": "groupPaths",
    "split_select_multiple": "splitSelectMultiples",
    "split_geopoint": "splitGeopoint",
    "review_state": "reviewState",
    "include_edits": "includeEdits",
    "include_deleted": "includeDeleted",
    "include_rejected": "includeRejected",
    "geojson_field": "geojsonField",
}


@pytest.mark.parametrize(("snake", "camel"), SNAKE_NAMES.items(), ids=list(SNAKE_NAMES))
@pytest.mark.parametrize("route", ["export.zip", "export.xlsx", "export.geojson", "submissions.csv.zip"])
def test_e8_a_snake_case_option_is_400_naming_its_camel_case(
    client: FlaskClient, personas: Personas, coop_form: PublishedForm, snake: str, camel: str, route: str
) -> None:
    url = f"/v1/projects/{personas.project_id}/forms/{coop_form.xml_form_id}/{route}?{snake}=true"
    response = client.get(url, headers=personas.analyst.headers)
    assert response.status_code == 400
    body = response.get_json()
    assert body["details"]["problem"] == "export_option_invalid"
    assert body["details"]["field"] == snake
    if route != "submissions.csv.zip" or snake != "geojson_field":  # csv.zip has no geojsonField
        assert body["message"] == f"Unknown export parameter {snake!r}: did you mean {camel!r}?"


def test_e8_camel_case_options_apply(
    client: FlaskClient, session: Session, personas: Personas, coop_form: PublishedForm
) -> None:
    _store_examples(client, session, personas, coop_form)
    query = "groupPaths=false&splitSelectMultiples=true&splitGeopoint=false&reviewState=received&includeEdits=true"
    response = client.get(_url(personas, coop_form, query=query), headers=personas.analyst.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    headers = next(iter(table_rows(zip_tables(response.get_data())["coop_diagnostic.csv"])))
    assert "region" in headers and "location-region" not in headers  # groupPaths=false
    assert any(h.startswith("needs/") for h in headers)  # splitSelectMultiples
    assert "gps" in headers and "gps-Latitude" not in headers  # splitGeopoint=false


def test_e8_a_preset_with_a_snake_case_option_is_400(
    client: FlaskClient, personas: Personas, coop_form: PublishedForm
) -> None:
    base = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-presets"
    body = {"name": "old", "options": {"review_state": "received"}}
    response = client.post(base, json=body, headers=personas.manager.headers)
    assert response.status_code == 400
    assert response.get_json()["message"] == "Unknown export parameter 'review_state': did you mean 'reviewState'?"


def test_e8_a_preset_stored_in_snake_case_is_served_and_applied_in_camel_case(
    app: Flask, client: FlaskClient, session: Session, personas: Personas, coop_form: PublishedForm
) -> None:
    from datetime import timedelta

    from server.db.base import utcnow
    from server.services import exports as svc
    from server.store import get_store

    _store_examples(client, session, personas, coop_form)
    form = q.get_form(session, personas.project_id, "coop_diagnostic")
    assert form is not None
    old = {"labels": ["labels"], "lang": ["ar"], "split_select_multiple": ["true"], "review_state": ["has_issues"]}
    assert q.insert_preset(session, form.id, "old", old, "user:1", utcnow()) is not None
    session.commit()

    base = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-presets"
    (listed,) = client.get(base, headers=personas.analyst.headers).get_json()
    assert listed["options"] == {
        "labels": ["labels"],
        "lang": ["ar"],
        "splitSelectMultiples": ["true"],
        "reviewState": ["has_issues"],
    }
    applied = client.get(_url(personas, coop_form, query="preset=old&reviewState=received"),
                         headers=personas.analyst.headers)  # fmt: skip
    assert applied.status_code == 200, applied.get_data(as_text=True)
    root = table_rows(zip_tables(applied.get_data())["coop_diagnostic.csv"])
    assert root and any(h.startswith("support_needs-needs/") for h in root[0])  # split, from the old preset
    assert "سوس - ماسة" in {r["location-region"] for r in root}

    schedules = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-schedules"
    made = client.post(schedules, json={"cron": "0 6 * * 1", "preset": "old"}, headers=personas.manager.headers)
    assert made.status_code == 201, made.get_data(as_text=True)
    with app.app_context():
        (outcome,) = svc.run_due_exports(
            get_store().sessions, Path(app.config["EXPORT_DIR"]), now=utcnow() + timedelta(days=8)
        )
    assert outcome.status == "done", outcome.error
    (schedule,) = client.get(schedules, headers=personas.analyst.headers).get_json()
    assert set(schedule) >= {"id", "cron", "preset", "folder", "keep", "format", "enabled", "nextRunAt", "createdBy",
                             "createdAt", "runs"}  # fmt: skip
    assert set(schedule["runs"][0]) == {"scheduledFor", "status", "claimedBy", "finishedAt", "fileName", "records",
                                        "error"}  # fmt: skip
