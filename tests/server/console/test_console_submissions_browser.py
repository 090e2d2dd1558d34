"""The submissions pages in a real browser (Debian's Chromium through Playwright), told in French and in Arabic.

Stories (issue 18):
- S3 an analyst opens a form's submissions from the forms list, filters them by region and by date, sees the
  map, opens one submission and sees its photo (the image decodes in the browser);
- S4 a reviewer marks that submission hasIssues with a comment, sees who wrote it and when, reads its edit's
  diff, then approves it.
- A1 each new page in both directions: axe-core finds no serious or critical violation; screenshots at
  360 px and 1280 px go to var/screenshots/.

Three phones' worth of submissions arrive through the real OpenRosa endpoint of the live server, with
instance ids of their own per language, so the French and the Arabic story never share a submission.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.server.console.conftest import LiveServer, axe_violations, screenshot, sign_in
from tests.server.test_submissions_support import COLLECT_HEADERS, example_submission

pytestmark = pytest.mark.browser

PHOTO_NAME = "1796200361318.jpg"
WORDS = {
    "fr": {"region": "Souss-Massa", "filter": "Filtrer", "has_issues": "problème signalé", "approved": "approuvée",
           "label": "Région", "diff": "Chiffre d'affaires de l'année dernière (MAD)"},
    "ar": {"region": "سوس - ماسة", "filter": "تصفية", "has_issues": "بها مشاكل", "approved": "مقبولة",
           "label": "الجهة", "diff": "رقم معاملات السنة الماضية (بالدرهم)"},
}  # fmt: skip


def _jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 92, 65)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _send(server: LiveServer, locale: str) -> str:
    """Send the three example submissions (the first with its photo, the third its edit) from a new phone."""
    from server.services import accounts
    from server.store import get_store

    with server.app.app_context():
        session = get_store().sessions()
        token = accounts.create_device(session, server.project_id, f"Téléphone {locale}", actor="user:1").token
        session.close()
    url = server.at(f"/v1/key/{token}/projects/{server.project_id}/submission?deviceID=collect%3A{locale}")
    for stem in ("01", "02", "03"):
        xml = example_submission("coop_diagnostic", stem).replace(b"uuid:", f"uuid:{locale}-".encode())
        files = {"xml_submission_file": ("submission.xml", xml, "text/xml")}
        if stem == "01":
            files[PHOTO_NAME] = (PHOTO_NAME, _jpeg(), "image/jpeg")
        response = requests.post(url, files=files, headers=COLLECT_HEADERS, timeout=30)
        assert response.status_code == 201, response.text
    return f"uuid:{locale}-1765513a-04a4-40e1-bacd-dae53ee2ede4"  # the edit of the first


def _check(page: Any, name: str) -> None:
    assert axe_violations(page) == []
    screenshot(page, name)


def test_s3_s4_analyst_finds_a_submission_and_a_reviewer_settles_it(
    browser: Any, page: Any, live_server: LiveServer, locale: str
) -> None:
    words = WORDS[locale]
    edited = _send(live_server, locale)
    today = datetime.now(UTC).date().isoformat()

    sign_in(page, live_server, "analyst")
    page.goto(live_server.at(f"/projects/{live_server.project_id}/forms"))
    page.locator("a[href$='/forms/coop_diagnostic/submissions']").click()
    page.wait_for_url(re.compile(r"/submissions$"))
    page.select_option("select[name='filter.location/region']", label=words["region"])
    page.fill("#f-since", today)
    page.fill("#f-until", today)
    page.get_by_role("button", name=words["filter"], exact=True).click()
    page.wait_for_url(re.compile(r"since=" + today))
    rows = page.locator("table.submissions tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):  # only Souss-Massa: the Drâa-Tafilalet cooperative is filtered out
        assert "Nakhil" not in rows.nth(i).inner_text()
    _check(page, f"submissions-table-{locale}")

    page.locator("nav.links a[href*='/submissions/map']").click()
    page.wait_for_url(re.compile(r"/submissions/map\?"))
    assert page.locator(f"svg.point-map a[href$='{edited}']").count() == 1
    _check(page, f"submissions-map-{locale}")
    page.go_back()

    page.locator(f"table.submissions a[href$='{edited}']").click()
    page.wait_for_url(re.compile(re.escape(edited) + "$"))
    assert words["region"] in page.locator("dl.answers", has_text=words["label"]).first.inner_text()
    photo = page.locator(f"img.photo[src$='{PHOTO_NAME}']")
    photo.scroll_into_view_if_needed()
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 64", arg=photo.element_handle())
    _check(page, f"submission-{locale}")

    reviewer = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        tab = reviewer.new_page()
        tab.set_default_timeout(10_000)
        sign_in(tab, live_server, "manager")
        tab.goto(page.url)
        comment = "Chiffre d'affaires à vérifier — رقم المعاملات يحتاج إلى تحقق"
        tab.select_option("#f-state", "has_issues")
        tab.fill("#f-comment", comment)
        tab.locator("#f-comment").locator("xpath=ancestor::form").locator("button[type=submit]").click()
        tab.wait_for_selector(".notice")
        assert tab.locator("#review-state").inner_text() == words["has_issues"]
        entry = tab.locator("ol.reviews li").first
        assert comment in entry.inner_text() and "manager" in entry.inner_text()
        diff = tab.locator("table.diff")
        assert words["diff"] in diff.inner_text() and "512800.0" in diff.inner_text()
        tab.select_option("#f-state", "approved")
        tab.locator("#f-comment").locator("xpath=ancestor::form").locator("button[type=submit]").click()
        tab.wait_for_selector(".notice")
        assert tab.locator("#review-state").inner_text() == words["approved"]
        _check(tab, f"submission-reviewed-{locale}")
    finally:
        reviewer.close()
