"""Golden files, one per export option, through ``GET .../export.zip`` (small form, exact CSV text).

Rules:
- G1 each option of EXPORTS.md changes the export exactly as the inline expected CSV shows; the
  submissions go through the OpenRosa door with the server clock pinned (``received_at``), so every
  column, ``SubmissionDate`` included, is compared.
- G2 the data: a two-version form (v2 adds ``phone``) with a group, a select_one and a select_multiple
  labelled in en/fr/ar, a geopoint and a repeat; A (coach, January, edited once), B (manager,
  February, reviewed hasIssues), C (coach, March, version 2, approved), D (coach, March, rejected).
- G3 the default export is compared whole (both tables and the cleaning report); each option's golden
  shows ``KEY`` and the columns that option changes (the other columns are the default's), so the
  expected text stays readable.
"""

# ruff: noqa: E501  (golden CSV lines are as wide as the files they stand for)

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime
from functools import lru_cache

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.fixtures_exports import post_submission_xml, zip_tables
from tests.server.fixtures_forms import publish_form, xlsform

FORM_MD = """
| survey   |
|          | type                  | name    | label::English (en) | label::Français (fr) | label::العربية (ar) |
|          | begin_group           | loc     | Location            | Lieu                 | المكان              |
|          | select_one region     | region  | Region              | Région               | الجهة               |
|          | geopoint              | gps     | GPS                 | GPS                  | GPS                 |
|          | end_group             |         |                     |                      |                     |
|          | select_multiple need  | needs   | Needs               | Besoins              | الاحتياجات          |
|          | integer               | members | Members             | Membres              | الأعضاء             |
PHONE
|          | begin_repeat          | product | Product             | Produit              | منتج                |
|          | text                  | pname   | Name                | Nom                  | الاسم               |
|          | end_repeat            |         |                     |                      |                     |
| choices  |
|          | list_name | name     | label::English (en) | label::Français (fr) | label::العربية (ar) |
|          | region    | sm       | Souss               | Souss-Massa          | سوس ماسة            |
|          | region    | or       | East                | Oriental             | الشرق               |
|          | need      | credit   | Credit              | Crédit               | تمويل               |
|          | need      | training | Training            | Formation            | تكوين               |
| settings |
|          | form_id | version | default_language |
|          | golden  | VERSION | English (en)     |
"""
PHONE_ROW = (
    "|          | text                  | phone   | Phone               | Téléphone            | الهاتف              |"
)


@lru_cache(maxsize=2)
def _form(version: str) -> bytes:
    """The workbook of a version, built once (openpyxl stamps the time: same bytes, cached conversion)."""
    phone = PHONE_ROW if version == "2" else ""
    return xlsform(FORM_MD.replace("PHONE", phone).replace("VERSION", version))


def _xml(
    instance: str,
    region: str,
    gps: str,
    needs: str,
    members: str,
    products: list[str],
    *,
    version: str = "1",
    phone: str | None = None,
    deprecated: str | None = None,
) -> bytes:
    repeat = "".join(f"<product><pname>{p}</pname></product>" for p in products)
    extra = f"<phone>{phone}</phone>" if phone is not None else ""
    dep = f"<deprecatedID>{deprecated}</deprecatedID>" if deprecated else ""
    return (
        f'<data id="golden" version="{version}"><loc><region>{region}</region><gps>{gps}</gps></loc>'
        f"<needs>{needs}</needs><members>{members}</members>{extra}{repeat}"
        f"<meta><instanceID>{instance}</instanceID>{dep}</meta></data>"
    ).encode()


def _at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 9, 30, tzinfo=UTC)


@pytest.fixture
def golden(app: Flask, client: FlaskClient, personas: Personas) -> str:
    """Publish the two versions and POST A, A's edit, B, C, D; return the export URL."""
    publish_form(app, personas.project_id, _form("1"), "golden_v1.xlsx")
    a = _xml("uuid:a", "sm", "29.7 -9.8 38 5", "credit training", "12", ["argan oil", "honey"])
    post_submission_xml(client, personas, a, when=_at(1, 10))
    post_submission_xml(
        client,
        personas,
        _xml("uuid:b", "or", "", "training", "7", []),
        when=_at(2, 10),
        submitter=personas.manager,
        review_state="hasIssues",
    )
    edit = _xml("uuid:a2", "sm", "29.7 -9.8 38 5", "credit training", "13", ["argan oil", "honey"], deprecated="uuid:a")
    post_submission_xml(client, personas, edit, when=_at(2, 20))
    publish_form(app, personas.project_id, _form("2"), "golden_v2.xlsx")
    c = _xml("uuid:c", "sm", "30.4 -9.6 0 10", "credit", "3", ["saffron"], version="2", phone="0600")
    post_submission_xml(client, personas, c, when=_at(3, 10), review_state="approved")
    d = _xml("uuid:d", "or", "", "", "1", [], version="2", phone="")
    post_submission_xml(client, personas, d, when=_at(3, 11), review_state="rejected")
    return f"/v1/projects/{personas.project_id}/forms/golden/export.zip"


def _project(text: str, columns: tuple[str, ...]) -> str:
    """The CSV text cut down to ``columns`` (each must be in the header)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    header = next(csv.reader(io.StringIO(text)))
    missing = [c for c in columns if c not in header]
    assert not missing, f"no column(s) {missing} in {header}"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[c] for c in columns])
    return out.getvalue()


def _get(client: FlaskClient, personas: Personas, url: str) -> bytes:
    response = client.get(url, headers=personas.analyst.headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data()


DEFAULT_ROOT = """\
SubmissionDate,loc-region,loc-gps-Latitude,loc-gps-Longitude,loc-gps-Altitude,loc-gps-Accuracy,needs,members,phone,meta-instanceID,KEY,SubmitterID,DeviceID,ReviewState,AttachmentsPresent,AttachmentsExpected,Edits,FormVersion,_issues
2026-01-10T09:30:00.000Z,sm,29.7,-9.8,38,5,credit training,13,,uuid:a2,uuid:a2,coach-persona,collect:exports,received,0,0,1,1,
2026-02-10T09:30:00.000Z,or,,,,,training,7,,uuid:b,uuid:b,manager-persona,collect:exports,hasIssues,0,0,0,1,
2026-03-10T09:30:00.000Z,sm,30.4,-9.6,0,10,credit,3,0600,uuid:c,uuid:c,coach-persona,collect:exports,approved,0,0,0,2,
"""
DEFAULT_PRODUCT = """\
pname,PARENT_KEY,KEY,_issues
argan oil,uuid:a2,uuid:a2/product[1],
honey,uuid:a2,uuid:a2/product[2],
saffron,uuid:c,uuid:c/product[1],
"""
DEFAULT_REPORT = """\
table,column,step,count
*,*,excluded:rejected,1
*,*,excluded:superseded_edit,1
"""


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n")


def test_default_export_whole(client: FlaskClient, personas: Personas, golden: str) -> None:
    files = zip_tables(_get(client, personas, golden))
    assert _lines(files["golden.csv"]) == DEFAULT_ROOT  # the edit keeps its chain's first SubmissionDate
    assert _lines(files["golden-product.csv"]) == DEFAULT_PRODUCT
    assert _lines(files["cleaning_report.csv"]) == DEFAULT_REPORT


ROOT = "golden.csv"
PRODUCT = "golden-product.csv"
# (query, table, expected text of KEY and the columns the option changes)
CASES = [
    (
        "labels=labels",
        ROOT,
        "KEY,loc-region,needs\nuuid:a2,Souss,Credit; Training\nuuid:b,East,Training\nuuid:c,Souss,Credit\n",
    ),
    (
        "labels=labels&lang=fr",
        ROOT,
        "KEY,loc-region,needs\nuuid:a2,Souss-Massa,Crédit; Formation\nuuid:b,Oriental,Formation\nuuid:c,Souss-Massa,Crédit\n",
    ),
    (
        "labels=labels&lang=ar",
        ROOT,
        "KEY,loc-region,needs\nuuid:a2,سوس ماسة,تمويل; تكوين\nuuid:b,الشرق,تكوين\nuuid:c,سوس ماسة,تمويل\n",
    ),
    (
        "lang=ar",
        ROOT,
        "KEY,loc-region,needs\nuuid:a2,sm,credit training\nuuid:b,or,training\nuuid:c,sm,credit\n",
    ),  # values: lang alone changes nothing
    (
        "groupPaths=false",
        ROOT,
        "KEY,region,gps-Latitude,gps-Accuracy\nuuid:a2,sm,29.7,5\nuuid:b,or,,\nuuid:c,sm,30.4,10\n",
    ),
    # The separator joins group prefixes; a geopoint's part suffix keeps its "-".
    (
        "separator=.",
        ROOT,
        "KEY,loc.region,loc.gps-Latitude,meta.instanceID\nuuid:a2,sm,29.7,uuid:a2\nuuid:b,or,,uuid:b\nuuid:c,sm,30.4,uuid:c\n",
    ),
    (
        "splitSelectMultiples=true",
        ROOT,
        "KEY,needs,needs/credit,needs/training\nuuid:a2,credit training,1,1\nuuid:b,training,0,1\nuuid:c,credit,1,0\n",
    ),
    ("splitGeopoint=false", ROOT, "KEY,loc-gps\nuuid:a2,29.7 -9.8 38 5\nuuid:b,\nuuid:c,30.4 -9.6 0 10\n"),
    # since inclusive, until exclusive: C was received exactly at until.
    ("since=2026-02-01&until=2026-03-10T09:30:00Z", ROOT, "SubmissionDate,KEY\n2026-02-10T09:30:00.000Z,uuid:b\n"),
    ("reviewState=approved,hasIssues", ROOT, "KEY,ReviewState\nuuid:b,hasIssues\nuuid:c,approved\n"),
    ("reviewState=rejected", ROOT, "KEY,ReviewState\nuuid:d,rejected\n"),
    (
        "includeRejected=true",
        ROOT,
        "KEY,ReviewState\nuuid:a2,received\nuuid:b,hasIssues\nuuid:c,approved\nuuid:d,rejected\n",
    ),
    ("version=2", ROOT, "KEY,phone,FormVersion\nuuid:c,0600,2\n"),
    ("submitter=manager-persona", ROOT, "KEY,SubmitterID\nuuid:b,manager-persona\n"),
    (
        "includeEdits=true",
        ROOT,
        "KEY,members,Edits,Status\nuuid:a,12,1,superseded\nuuid:a2,13,1,\nuuid:b,7,0,\nuuid:c,3,0,\n",
    ),
    (
        "includeEdits=true",
        PRODUCT,
        "pname,PARENT_KEY,KEY\nargan oil,uuid:a,uuid:a/product[1]\nhoney,uuid:a,uuid:a/product[2]\nargan oil,uuid:a2,uuid:a2/product[1]\nhoney,uuid:a2,uuid:a2/product[2]\nsaffron,uuid:c,uuid:c/product[1]\n",
    ),
    ("field.loc/region=or", ROOT, "KEY,loc-region\nuuid:b,or\n"),  # D is an "or" too, but rejected
    # A field filter compares the whole value: A2's "credit training" is not "credit".
    ("field.needs=credit", ROOT, "KEY,needs\nuuid:c,credit\n"),
]
CASE_IDS = [
    "labels", "lang-fr", "lang-ar", "lang-alone", "group-paths", "separator", "split-select-multiple",
    "split-geopoint", "since-until", "review-state", "review-state-rejected", "include-rejected", "version",
    "submitter", "include-edits", "include-edits-repeat", "field-filter", "field-filter-multiple",
]  # fmt: skip


def test_option_goldens(client: FlaskClient, personas: Personas, golden: str) -> None:
    # One test over every case: the data set is built once (about a second), not once per option.
    failures = []
    for case_id, (query, table, expected) in zip(CASE_IDS, CASES, strict=True):
        files = zip_tables(_get(client, personas, f"{golden}?{query}"))
        got = _project(files[table], tuple(expected.split("\n", 1)[0].split(",")))
        if got != expected:
            failures.append(f"{case_id} ({query}) {table}:\n--- expected\n{expected}--- got\n{got}")
    assert not failures, "\n".join(failures)


def test_bom_golden(client: FlaskClient, personas: Personas, golden: str) -> None:
    with zipfile.ZipFile(io.BytesIO(_get(client, personas, f"{golden}?bom=true"))) as zf:
        assert zf.read(ROOT).startswith("\ufeffSubmissionDate,loc-region,".encode())
        assert zf.read(PRODUCT).startswith("\ufeffpname,PARENT_KEY,KEY".encode())
    with zipfile.ZipFile(io.BytesIO(_get(client, personas, golden))) as zf:
        assert zf.read(ROOT).startswith(b"SubmissionDate,")


def test_preset_golden(client: FlaskClient, personas: Personas, golden: str) -> None:
    presets = f"/v1/projects/{personas.project_id}/forms/golden/export-presets"
    body = {"name": "arabe", "options": {"labels": "labels", "lang": "ar", "reviewState": "hasIssues"}}
    assert client.post(presets, json=body, headers=personas.manager.headers).status_code == 201
    files = zip_tables(_get(client, personas, f"{golden}?preset=arabe"))
    assert (
        _project(files[ROOT], ("KEY", "loc-region", "ReviewState"))
        == "KEY,loc-region,ReviewState\nuuid:b,الشرق,hasIssues\n"
    )
    files = zip_tables(_get(client, personas, f"{golden}?preset=arabe&lang=fr&reviewState=approved"))
    assert (
        _project(files[ROOT], ("KEY", "loc-region", "ReviewState"))
        == "KEY,loc-region,ReviewState\nuuid:c,Souss-Massa,approved\n"
    )
