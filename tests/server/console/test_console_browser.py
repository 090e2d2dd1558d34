"""The console in a real browser (Debian's Chromium through Playwright), told in French and in Arabic.

Stories (issue 17):
- S1 an admin signs in, creates a project, uploads a broken XLSForm and sees the error with its row, uploads
  the cooperative diagnostic, previews it in ODK Web Forms, publishes it, adds a media file, creates a phone;
  the QR code on the page decodes to Collect settings whose server URL serves the formList (a real HTTP GET
  to the live server);
- S2 a manager adds a coach to the project and revokes a phone.
- A1 every page in both directions: axe-core finds no serious or critical violation; screenshots at
  360 px and 1280 px go to var/screenshots/ for a person to look at.
- A2 every control of the main pages is reached with the Tab key.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import requests

from server.services.collect_settings import decode_settings
from tests.server.console.conftest import LiveServer, axe_violations, screenshot, sign_in
from tests.server.fixtures_forms import COOP_XLSX, media_form, xlsform

pytestmark = pytest.mark.browser

BROKEN = """
| survey   |
|          | type | name  | label      |
|          | text | coop  | Coopérative |
|          | text | coop  | Encore      |
| settings |
|          | form_id   |
|          | coop_diag_broken |
"""

WORDS = {
    "fr": {"row": "ligne 3", "published": "publié", "revoked": "révoqué", "coach": "accompagnateur"},
    "ar": {"row": "السطر 3", "published": "نُشرت", "revoked": "مُبطَل", "coach": "مؤطِّر"},
}


def _upload(page: Any, data: bytes, name: str, selector: str = "#f-file") -> None:
    page.set_input_files(selector, files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.locator(selector).locator("xpath=ancestor::form").locator("button[type=submit]").click()
    # The upload goes through console.js (progress bar) and the answer replaces the page: wait for it.
    page.wait_for_function("() => !document.querySelector('form[data-upload] progress:not([hidden])')")


def _decode_qr(page: Any) -> str:
    import zxingcpp
    from PIL import Image

    png = page.locator("#qr svg").screenshot()
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode)
    # One QR code, whose text may be found more than once (zxing also tries the image inverted and rotated).
    texts = {barcode.text for barcode in found}
    assert len(texts) == 1, texts
    text: str = texts.pop()
    return text


def test_s1_admin_sets_up_a_programme(page: Any, live_server: LiveServer, locale: str) -> None:
    words = WORDS[locale]
    sign_in(page, live_server, "admin")
    assert page.locator("html").get_attribute("lang") == locale
    assert page.locator("html").get_attribute("dir") == ("rtl" if locale == "ar" else "ltr")

    page.fill("#f-name", f"Coopératives {locale}")
    page.locator("#f-name").locator("xpath=ancestor::form").locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/projects/\d+/forms$"))
    forms_url = page.url

    _upload(page, xlsform(BROKEN), "broken.xlsx")
    error = page.locator("#upload-error")
    assert words["row"] in error.inner_text()

    _upload(page, COOP_XLSX.read_bytes(), COOP_XLSX.name)
    page.wait_for_url(re.compile(r"/forms/coop_diagnostic$"))
    page.locator("section[aria-labelledby=draft-title] a[href$='/preview']").click()
    # rendered by ODK Web Forms, in its frame
    page.frame_locator("#preview").get_by_text("Identification de la coopérative").first.wait_for()
    page.go_back()
    page.locator("section[aria-labelledby=draft-title] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/forms/coop_diagnostic$"))
    assert words["published"] in page.locator(".notice").inner_text()

    page.goto(forms_url)
    _upload(page, media_form(), "media.xlsx")
    page.wait_for_url(re.compile(r"/forms/media_test$"))
    assert "logo.png" in page.locator(".alert.warn").inner_text()
    page.select_option("#f-media-name", "logo.png")
    _upload(page, b"\x89PNG\r\n\x1a\n logo", "logo.png", "#f-media-file")
    assert "logo.png" not in page.locator(".alert.warn").inner_text()

    page.goto(forms_url.replace("/forms", "/phones"))
    page.fill("#f-name", "Coach Fatima, Tiznit")
    page.locator("#f-name").locator("xpath=ancestor::form").locator("button[type=submit]").click()
    settings = decode_settings(_decode_qr(page))
    server_url = settings["general"]["server_url"]
    assert server_url.startswith(live_server.url + "/v1/key/")
    assert settings["project"]["name"] == f"Coopératives {locale}"
    form_list = requests.get(f"{server_url}/formList", headers={"X-OpenRosa-Version": "1.0"}, timeout=10)
    assert form_list.status_code == 200
    assert "<formID>coop_diagnostic</formID>" in form_list.text


def test_s2_manager_adds_a_coach_and_revokes_a_phone(page: Any, live_server: LiveServer, locale: str) -> None:
    words = WORDS[locale]
    sign_in(page, live_server, "manager")
    page.goto(live_server.at(f"/projects/{live_server.project_id}/members"))
    page.fill("#f-username", f"coach-{locale}")
    page.select_option("#f-role", "coach")
    page.locator("#f-username").locator("xpath=ancestor::form").locator("button[type=submit]").click()
    row = page.locator("tr", has_text=f"coach-{locale}")
    assert words["coach"] in row.inner_text()

    page.goto(live_server.at(f"/projects/{live_server.project_id}/phones"))
    page.fill("#f-name", f"Lost phone {locale}")
    page.locator("#f-name").locator("xpath=ancestor::form").locator("button[type=submit]").click()
    page.goto(live_server.at(f"/projects/{live_server.project_id}/phones"))
    page.once("dialog", lambda dialog: dialog.accept())
    row = page.locator("tr", has_text=f"Lost phone {locale}")
    row.locator("button.danger").click()
    page.wait_for_load_state()
    assert words["revoked"] in page.locator("tr", has_text=f"Lost phone {locale}").inner_text()


@pytest.mark.parametrize("locale", ["ar"])
def test_s3_every_core_flow_works_without_javascript(browser: Any, live_server: LiveServer, locale: str) -> None:
    context = browser.new_context(locale=locale, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, live_server, "admin")
        page.fill("#f-name", "Sans JavaScript")
        page.locator("#f-name").locator("xpath=ancestor::form").locator("button[type=submit]").click()
        page.wait_for_url(re.compile(r"/projects/\d+/forms$"))
        page.set_input_files(
            "#f-file",
            files=[{"name": "coop.xlsx", "mimeType": "application/octet-stream", "buffer": COOP_XLSX.read_bytes()}],
        )
        page.locator("#f-file").locator("xpath=ancestor::form").locator("button[type=submit]").click()
        page.wait_for_url(re.compile(r"/forms/coop_diagnostic$"))
        page.locator("section[aria-labelledby=draft-title] button[type=submit]").click()
        page.wait_for_url(re.compile(r"/forms/coop_diagnostic$"))
        assert "نُشرت" in page.locator(".notice").inner_text()
        page.goto(page.url.split("/forms/")[0] + "/phones")
        page.fill("#f-name", "Sans JS")
        page.locator("#f-name").locator("xpath=ancestor::form").locator("button[type=submit]").click()
        assert decode_settings(_decode_qr(page))["project"]["name"] == "Sans JavaScript"
    finally:
        context.close()


P = "/projects/{pid}"
PAGES = [
    ("signin", "/signin"),
    ("projects", "/projects"),
    ("forms", f"{P}/forms"),
    ("form", f"{P}/forms/coop_diagnostic"),
    ("form-draft-media", f"{P}/forms/media_test"),
    ("phones", f"{P}/phones"),
    ("phone-qr", f"{P}/phones"),  # the page a new phone's POST answers with
    ("phone-forms", f"{P}/phones"),  # then the forms that phone sees (its link on the phones page)
    ("members", f"{P}/members"),
    ("entities", f"{P}/entities"),
    ("project-audit", f"{P}/audit"),
    ("audit", "/audit"),
    ("relay", "/relay"),
    ("users", "/users"),
    ("account", "/account"),
    ("not-found", f"{P}/forms/no_such_form"),
    ("preview", f"{P}/forms/coop_diagnostic/versions/2026112901/preview"),
    ("preview-frame", f"{P}/forms/coop_diagnostic/versions/2026112901/preview/frame"),
]
# ODK Web Forms' own markup (a third-party component, in the frame) is left out of axe on the preview page; the
# page around it is not. The frame itself is checked on its own: @getodk/web-forms 0.22.0 has icon buttons with
# no name, inputs whose visible label is not tied to them, and low-contrast captions (its own markup and theme,
# not Fieldsync's). The preview is an admin's check of a form; coaches fill forms in ODK Collect.
AXE_EXCLUDE = {"preview": "#preview"}
THIRD_PARTY_VIOLATIONS = {"preview-frame": {"button-name", "color-contrast", "label"}}
TAB_WALKED = {"projects", "forms", "form", "phones", "phone-forms", "members"}
FOCUSABLE = "a[href], button, input:not([type=hidden]), select, summary, [tabindex]:not([tabindex='-1'])"


def _tab_walk(page: Any) -> list[str]:
    """Press Tab through the page; return the visible controls Tab never reached."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    controls = page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector))
             .filter(e => e.offsetParent !== null || e.getClientRects().length)
             // a radio group is one Tab stop (arrows move within it): expect only its checked radio
             .filter(e => !(e.type === "radio" && !e.checked && e.form &&
                            e.form.querySelector(`input[type=radio][name="${e.name}"]:checked`)))
             .map((e, i) => { e.dataset.tabProbe = String(i); return String(i); })""",
        FOCUSABLE,
    )
    reached: set[str] = set()
    for _ in range(len(controls) + 5):
        page.keyboard.press("Tab")
        probe = page.evaluate("() => document.activeElement && document.activeElement.dataset.tabProbe")
        if probe is not None:
            reached.add(probe)
    return [
        page.evaluate(f"() => document.querySelector('[data-tab-probe=\"{c}\"]').outerHTML.slice(0, 120)")
        for c in controls
        if c not in reached
    ]


@pytest.mark.parametrize(("name", "path"), PAGES, ids=[name for name, _ in PAGES])
def test_a1_a2_every_page_is_accessible_and_photographed(
    admin_page: Any, live_server: LiveServer, locale: str, name: str, path: str
) -> None:
    page = admin_page
    if name == "signin":
        page.context.clear_cookies()
    page.goto(live_server.at(path.format(pid=live_server.project_id)))
    if name == "phone-qr":
        page.locator("#f-name").fill("Téléphone photo")
        page.locator("#f-name").locator("xpath=ancestor::form").locator("button[type=submit]").click()
        page.wait_for_selector("#qr svg")
    if name == "phone-forms":
        page.locator("#f-name").fill("Téléphone formulaires")
        page.locator("#f-name").locator("xpath=ancestor::form").locator("button[type=submit]").click()
        page.wait_for_selector("#qr svg")
        page.goto(live_server.at(path.format(pid=live_server.project_id)))
        page.locator("a[href*='/phones/'][href$='/forms']").first.click()
        page.wait_for_url(lambda url: url.endswith("/forms") and "/phones/" in url)
    if name == "preview-frame":
        page.get_by_text("Identification de la coopérative").first.wait_for()
    if name == "preview":
        page.frame_locator("#preview").get_by_text("Identification de la coopérative").first.wait_for()
    if name != "preview-frame":  # the frame is in the form's own language and direction
        assert page.locator("html").get_attribute("dir") == ("rtl" if locale == "ar" else "ltr")
    screenshot(page, f"{locale}-{name}")
    found = axe_violations(page, AXE_EXCLUDE.get(name))
    if name in THIRD_PARTY_VIOLATIONS:
        # Exactly the known ones: a new kind fails, and so does an upgrade that fixes them (drop the entry then).
        assert {v["id"] for v in found} == THIRD_PARTY_VIOLATIONS[name], found
    else:
        assert found == []
    if name in TAB_WALKED:
        assert _tab_walk(page) == []
