"""The exports page in a real browser, told in French and in Arabic (issue 18).

Story X1: the coop diagnostic's samples arrive from a phone (real OpenRosa submissions); the manager has
saved a preset "Arabic labels". An analyst opens the form's exports page, loads that preset, previews the
first rows (choice labels in Arabic), downloads the Excel file through the page (streamed, with its progress
shown) and opens it with openpyxl: numbers are numbers, dates are dates, the header row is frozen.
The page passes axe-core and is photographed at 360 px and 1280 px.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import openpyxl
import pytest
import requests

from tests.server.console.conftest import LiveServer, axe_violations, screenshot, sign_in
from tests.server.fixtures_forms import EXAMPLES

pytestmark = pytest.mark.browser

COLLECT = {"X-OpenRosa-Version": "1.0", "User-Agent": "org.odk.collect.android/v2025.2.1 test"}
WORDS = {
    "fr": {"load": "Charger", "preview": "Aperçu des premières lignes", "download": "Télécharger le fichier"},
    "ar": {"load": "تحميل", "preview": "معاينة الأسطر الأولى", "download": "تنزيل الملف"},
}


@pytest.fixture(scope="module")
def coop_data(live_server: LiveServer) -> str:
    """The coop samples sent by a phone, and a preset of Arabic labels saved by the manager; its name."""
    from server.services import accounts, overview
    from server.services import exports as svc
    from server.store import get_store

    with live_server.app.app_context():
        session = get_store().sessions()
        try:
            token = accounts.create_device(session, live_server.project_id, "Téléphone Tiznit", actor="user:1").token
            assert "ar" in overview.form_languages(session, live_server.project_id, "coop_diagnostic")
            svc.create_preset(
                session,
                live_server.project_id,
                "coop_diagnostic",
                "Arabic labels",
                {"labels": "labels", "lang": "ar"},
                "user:2",
            )
        finally:
            session.close()
    for path in sorted((EXAMPLES.parent / "submissions" / "coop_diagnostic").glob("*.xml")):
        files = {"xml_submission_file": ("submission.xml", path.read_bytes(), "text/xml")}
        url = live_server.at(f"/v1/key/{token}/projects/{live_server.project_id}/submission")
        assert requests.post(url, files=files, headers=COLLECT, timeout=30).status_code in (201, 202)
    return "Arabic labels"


def test_x1_analyst_exports_with_a_preset_and_finds_typed_cells(
    page: Any, live_server: LiveServer, locale: str, coop_data: str
) -> None:
    words = WORDS[locale]
    sign_in(page, live_server, "analyst")
    page.goto(live_server.at(f"/projects/{live_server.project_id}/forms/coop_diagnostic"))
    page.locator("a[href$='/forms/coop_diagnostic/exports']").click()
    page.get_by_role("link", name=f"{words['load']} {coop_data}").click()
    assert page.locator("#o-labels").input_value() == "labels"
    page.get_by_role("button", name=words["preview"]).click()
    preview = page.locator("table caption", has_text="coop_diagnostic.csv").locator("xpath=..")
    preview.locator("tbody tr").first.wait_for()
    assert preview.locator("tbody tr").count() == 2
    assert any("\u0600" <= ch <= "\u06ff" for ch in preview.inner_text())  # Arabic choice labels
    assert axe_violations(page) == []
    screenshot(page, f"exports-{locale}")

    with page.expect_download() as download_info:
        page.get_by_role("button", name=words["download"]).click()
    download = download_info.value
    assert download.suggested_filename == "coop_diagnostic.xlsx"
    workbook = openpyxl.load_workbook(io.BytesIO(download.path().read_bytes()))  # the saved file has no extension
    sheet = workbook[workbook.sheetnames[0]]
    assert sheet.freeze_panes == "A2"
    header = [c.value for c in sheet[1]]
    row = [c.value for c in sheet[2]]
    typed = {type(v) for v in row if v is not None}
    assert dt.datetime in typed  # SubmissionDate and dateTime answers
    assert int in typed or float in typed  # integer and decimal answers
    assert header.index("SubmissionDate") >= 0
    assert page.locator("[data-progress-text]").inner_text() != ""  # the progress line said something
