"""Dirty data end to end: what the phones sent, stored, exported clean, every fix counted, nothing lost.

Rules:
- D1 trailing spaces and NFD text are trimmed / NFC-normalised and counted (``whitespace``, ``nfc``).
- D2 ``1,5``-style decimals become ``1.5`` and are counted (``number``).
- D3 a value not among the choices is kept as sent and flagged in ``_issues`` (counted ``issue``).
- D4 the rejected submission and the superseded version of an edit are left out and counted; every
  other submission is in the export (nothing dropped that was not meant to be).
"""

from __future__ import annotations

import unicodedata

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import REPO, Personas
from tests.server.fixtures_exports import post_submission_xml, table_rows, zip_tables
from tests.server.fixtures_forms import COOP_XLSX, publish_form

EXAMPLES = REPO / "examples" / "submissions" / "coop_diagnostic"


def test_dirty_submissions_export_clean_and_counted(
    app: Flask, client: FlaskClient, session: Session, personas: Personas
) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    first, second, edit = (p.read_bytes() for p in sorted(EXAMPLES.glob("*.xml")))
    nfd_name = unicodedata.normalize("NFD", "Coopérative Nakhil — تعاونية")
    dirty = (
        second.decode("utf-8")
        .replace("<commune>", "<commune>  ", 1)
        .replace("</commune>", "   </commune>", 1)
        .replace("<revenue_last_year>", "<revenue_last_year>1", 1)
        .replace("<revenue_last_year>1", "<revenue_last_year>1234,5<!--", 1)
        .replace("</revenue_last_year>", "--></revenue_last_year>", 1)
        .replace("<region>", "<region>atlantis<!--", 1)
        .replace("</region>", "--></region>", 1)
    )
    dirty = dirty.replace("<douar>", f"<douar>{nfd_name}<!--", 1).replace("</douar>", "--></douar>", 1)
    rejected = first.decode("utf-8").replace("uuid:2f8db99c", "uuid:0ejected", 1).encode()
    for xml in (first, dirty.encode(), edit):
        post_submission_xml(client, personas, xml)
    post_submission_xml(client, personas, rejected, review_state="rejected")

    response = client.get(
        f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export.zip", headers=personas.analyst.headers
    )
    assert response.status_code == 200
    files = zip_tables(response.get_data())
    root = {r["KEY"]: r for r in table_rows(files["coop_diagnostic.csv"])}
    assert len(root) == 2  # the edited chain (current version) and the dirty one
    dirty_row = next(r for r in root.values() if r["location-region"] == "atlantis")
    assert dirty_row["location-commune"] == dirty_row["location-commune"].strip() != ""
    assert dirty_row["products-revenue_last_year"] == "1234.5"
    assert dirty_row["location-douar"] == unicodedata.normalize("NFC", nfd_name)
    assert "location-region" in dirty_row["_issues"] and "atlantis" in dirty_row["_issues"]
    report = {(r["column"], r["step"]): int(r["count"]) for r in table_rows(files["cleaning_report.csv"])}
    assert report[("location-commune", "whitespace")] == 1
    assert report[("products-revenue_last_year", "number")] == 1
    assert report[("location-douar", "nfc")] == 1
    assert report[("location-region", "issue")] == 1
    assert report[("*", "excluded:rejected")] == 1
    assert report[("*", "excluded:superseded_edit")] == 1
