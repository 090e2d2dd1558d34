"""The exports page without a browser (issue 18).

Rules:
- X1 every export option is listed with its allowed values, its default and a one-line explanation.
- X2 the preview shows the first rows of each table of the export the options describe.
- X3 a bad option comes back on the page as a 400 naming it, before any byte of a file.
- X4 the download streams the same file as the API for the same options (a preset included).
- X5 presets are saved from the options shown, loaded back into the form, deleted; a bad or taken name
  changes nothing.
- X6 schedules show their cron in words and the next run; a bad cron changes nothing; the files a run wrote
  are listed and downloaded.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.console.cron_words import cron_in_words
from tests.conftest import Personas
from tests.server.console.test_console_roles import sign_in
from tests.server.fixtures_forms import COOP_XLSX, EXAMPLES, publish_form
from tests.server.test_submissions_support import post_submission

PAGE = "/projects/{pid}/forms/coop_diagnostic/exports"
API = "/v1/projects/{pid}/forms/coop_diagnostic"


@pytest.fixture
def coop(app: Flask, client: FlaskClient, personas: Personas) -> str:
    """The coop diagnostic published with its three sample submissions; the page's path."""
    publish_form(app, personas.project_id, COOP_XLSX)
    for path in sorted((EXAMPLES.parent / "submissions" / "coop_diagnostic").glob("*.xml")):
        assert post_submission(client, personas.collect_prefix, path.read_bytes()).status_code in (201, 202)
    return PAGE.format(pid=personas.project_id)


def _presets(client: FlaskClient, personas: Personas) -> list[str]:
    body = client.get(API.format(pid=personas.project_id) + "/export-presets", headers=personas.admin.headers)
    return [p["name"] for p in body.get_json()]


def test_x1_every_option_has_its_values_and_an_explanation(client: FlaskClient, coop: str) -> None:
    from server.api.exports import ExportQuery
    from server.console.views_exports import EXPLANATIONS

    names = {f.data_key or n for n, f in ExportQuery().fields.items()}  # the wire's, camelCase
    assert names <= set(EXPLANATIONS)
    sign_in(client, "analyst-persona")
    html = client.get(coop).get_data(as_text=True)
    for name in names:
        assert f'<code dir="ltr">{name}</code>' in html
    assert "received | hasIssues | edited | approved | rejected" in html
    assert "values | labels" in html and "2026112901" in html
    assert "Commencer chaque CSV par la marque dont Excel a besoin" in html  # pages default to French


def test_x2_preview_shows_the_first_rows_of_each_table(client: FlaskClient, coop: str) -> None:
    sign_in(client, "analyst-persona")
    response = client.get(coop + "?preview=1&labels=labels&lang=")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "coop_diagnostic.csv" in html
    assert "Tiznit" in html  # a value of the first sample


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "since"), ("labels=codes", "labels"), ("preset=nope", "preset")],
    ids=["since", "labels", "preset"],
)
def test_x3_bad_option_is_a_400_on_the_page(client: FlaskClient, coop: str, query: str, field: str) -> None:
    sign_in(client, "analyst-persona")
    for path in (f"{coop}?preview=1&{query}", f"{coop}/download?format=xlsx&{query}"):
        response = client.get(path)
        assert response.status_code == 400
        assert response.mimetype == "text/html"
        assert f"Vérifiez l'option {field}." in response.get_data(as_text=True)


def test_x4_download_is_the_apis_file_with_typed_cells(client: FlaskClient, personas: Personas, coop: str) -> None:
    sign_in(client, "analyst-persona")
    response = client.get(coop + "/download?format=xlsx&labels=labels")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    workbook = openpyxl.load_workbook(io.BytesIO(response.data))
    api = client.get(API.format(pid=personas.project_id) + "/export.xlsx?labels=labels", headers=personas.admin.headers)
    other = openpyxl.load_workbook(io.BytesIO(api.data))
    assert workbook.sheetnames == other.sheetnames
    first = workbook[workbook.sheetnames[0]]
    assert [c.value for c in first[1]] == [c.value for c in other[other.sheetnames[0]][1]]
    assert first.max_row == 1 + 2  # the two submissions (the third sample is an edit)


def test_x5_preset_save_load_delete(client: FlaskClient, personas: Personas, coop: str) -> None:
    csrf = sign_in(client, "manager-persona")
    saved = client.post(
        f"{coop}/presets",
        data={"csrf_token": csrf, "name": "arabe", "labels": "labels", "bom": "true", "reviewState": "received"},
    )
    assert saved.status_code == 302
    assert _presets(client, personas) == ["arabe"]
    loaded = client.get(f"{coop}?load=arabe").get_data(as_text=True)
    assert '<option value="labels" selected>' in loaded
    assert 'value="received" checked' in loaded
    assert client.get(f"{coop}?load=nope").status_code == 404
    taken = client.post(f"{coop}/presets", data={"csrf_token": csrf, "name": "arabe"})
    assert taken.status_code == 409
    bad_name = client.post(f"{coop}/presets", data={"csrf_token": csrf, "name": "../x"})
    assert bad_name.status_code == 400
    bad_option = client.post(f"{coop}/presets", data={"csrf_token": csrf, "name": "b", "since": "never"})
    assert bad_option.status_code == 400
    assert _presets(client, personas) == ["arabe"]
    assert client.post(f"{coop}/presets/arabe/delete", data={"csrf_token": csrf}).status_code == 302
    assert _presets(client, personas) == []
    assert client.post(f"{coop}/presets/arabe/delete", data={"csrf_token": csrf}).status_code == 404


def test_x5_analysts_use_presets_but_do_not_save_them(client: FlaskClient, personas: Personas, coop: str) -> None:
    csrf = sign_in(client, "analyst-persona")
    assert client.post(f"{coop}/presets", data={"csrf_token": csrf, "name": "mine"}).status_code == 403
    assert _presets(client, personas) == []


def test_x6_schedule_in_words_runs_and_its_file_downloads(
    app: Flask, client: FlaskClient, personas: Personas, coop: str
) -> None:
    from server.db.base import utcnow
    from server.services import exports as svc
    from server.store import get_store

    csrf = sign_in(client, "manager-persona")
    bad = client.post(f"{coop}/schedules", data={"csrf_token": csrf, "cron": "every monday", "format": "xlsx"})
    assert bad.status_code == 400
    assert "Écrivez cinq champs" in bad.get_data(as_text=True)
    assert (
        client.post(f"{coop}/schedules", data={"csrf_token": csrf, "cron": "0 6 * * 1", "keep": "0"}).status_code == 400
    )
    listed = client.get(API.format(pid=personas.project_id) + "/export-schedules", headers=personas.admin.headers)
    assert listed.get_json() == []
    made = client.post(
        f"{coop}/schedules", data={"csrf_token": csrf, "cron": "0 6 * * 1", "format": "xlsx", "keep": "3"}
    )
    assert made.status_code == 302
    html = client.get(coop).get_data(as_text=True)
    assert "Chaque lundi à 06:00 UTC" in html  # the manager reads French
    with app.app_context():
        (outcome,) = svc.run_due_exports(
            get_store().sessions, Path(app.config["EXPORT_DIR"]), now=utcnow() + timedelta(days=8)
        )
    assert outcome.status == "done" and outcome.file_name
    html = client.get(coop).get_data(as_text=True)
    assert outcome.file_name in html
    schedule_id = outcome.schedule_id
    download = client.get(f"{coop}/schedules/{schedule_id}/files/{outcome.file_name}")
    assert download.status_code == 200
    assert openpyxl.load_workbook(io.BytesIO(download.data)).sheetnames
    assert client.get(f"{coop}/schedules/{schedule_id}/files/..%2Fsecret.xlsx").status_code == 404
    assert client.get(f"{coop}/schedules/{schedule_id}/files/other.xlsx").status_code == 404
    assert client.post(f"{coop}/schedules/{schedule_id}/delete", data={"csrf_token": csrf}).status_code == 302
    assert "Aucun export n'est planifié." in client.get(coop).get_data(as_text=True)


@pytest.mark.parametrize(
    ("cron", "locale", "words"),
    [
        ("0 6 * * *", "en", "Every day at 06:00 UTC"),
        ("30 7 * * 1", "en", "Every Monday at 07:30 UTC"),
        ("0 6 * * 1-5", "en", "From Monday to Friday at 06:00 UTC"),
        ("0 6 * * 0,6", "en", "Every Sunday, Saturday at 06:00 UTC"),
        ("0 6 1 * *", "en", "On day 1 of every month at 06:00 UTC"),
        ("15 * * * *", "en", "Every hour at minute 15"),
        ("*/10 * * * *", "en", "Every 10 minutes"),
        ("0 6 1 1 *", "en", "Custom schedule: 0 6 1 1 *"),
        ("0 6 * * 1-5", "fr", "Du lundi au vendredi à 06:00 UTC"),
        ("0 6 * * 5", "ar", "كل الجمعة على الساعة 06:00 UTC"),
    ],
    ids=["daily", "weekly", "weekdays", "weekend", "monthly", "hourly", "step", "custom", "fr", "ar"],
)
def test_x6_cron_in_words(app: Flask, cron: str, locale: str, words: str) -> None:
    with app.test_request_context("/", headers={"Accept-Language": locale}):
        assert cron_in_words(cron, locale) == words
