"""Browser fixtures for the console's stories: one Chromium per test process, one live server per test session.

The live server is the real app (werkzeug ``make_server`` in a thread on 127.0.0.1, a free port) over a
committed SQLite database made by ``fresh_database_url``: a browser and the server share nothing but HTTP.
Chromium is Debian's (``/usr/bin/chromium``; ``.ci/run`` installs it): Playwright never downloads a browser.
Without it the browser tests skip, except where ``FIELDSYNC_REQUIRE_BROWSER`` is set (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, fresh_database_url

CHROMIUM = os.environ.get("FIELDSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "var" / "screenshots"
PASSWORD = "console story pw"


@dataclass(frozen=True)
class LiveServer:
    """The running console: its base URL, the seeded project and the people who can sign in."""

    url: str
    project_id: int
    app: Any

    def at(self, path: str) -> str:
        """Return the absolute URL of ``path``."""
        return self.url + path


def _seed(app: Any) -> int:
    """People and a project with a published form, a draft with missing media, an entity list and a phone."""
    from server.services import accounts, forms
    from server.store import get_store
    from tests.server.fixtures_forms import COOP_XLSX, ENTREPRENEUR_XLSX, media_form

    with app.app_context():
        session = get_store().sessions()
        accounts.create_user(session, "admin", PASSWORD, is_admin=True)
        project = accounts.create_project(session, "Programme Souss-Massa — برنامج سوس ماسة")
        for name, role in (("manager", "manager"), ("analyst", "analyst")):
            accounts.create_user(session, name, PASSWORD)
            accounts.set_membership(session, project.id, name, role)
        for locale in ("fr", "ar"):
            accounts.create_user(session, f"coach-{locale}", PASSWORD)
        settings = forms.UploadSettings(convert_inline=True)
        for data, filename, publish in (
            (COOP_XLSX.read_bytes(), COOP_XLSX.name, True),
            (ENTREPRENEUR_XLSX.read_bytes(), ENTREPRENEUR_XLSX.name, True),
            (media_form(), "media.xlsx", False),
        ):
            forms.create_form_version(
                session, project.id, data, filename, publish=publish, actor="user:1", settings=settings
            )
        accounts.create_device(session, project.id, "Téléphone Aït Baha", actor="user:1")
        session.close()
        return project.id


@contextmanager
def _serve(seed: Callable[[Any], int]) -> Iterator[LiveServer]:
    """The real app over a fresh SQLite store, seeded by ``seed`` (which returns the project's id)."""
    from werkzeug.serving import make_server

    from server import create_app
    from server.db.engine import make_engine

    workdir = Path(tempfile.mkdtemp(prefix="fieldsync-console-"))
    url, cleanup = fresh_database_url("sqlite", workdir)
    app = create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(workdir / "var"),
            "SECRET_KEY": "console-browser-tests",
            "LOG_REQUESTS": False,
            "FORM_CONVERT_INLINE": True,
        }
    )
    project_id = seed(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", project_id, app)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["fieldsync.store"].engine.dispose()
        make_engine(url).dispose()
        cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """The console served over real HTTP for the whole test session (per xdist worker)."""
    with _serve(_seed) as server:
        yield server


def _seed_demo(app: Any) -> int:
    """What ``fieldsync demo`` loads: the demo project, its people, the example forms and the programme."""
    from sqlalchemy import select

    from server.db.models import Project
    from server.demo import DEMO_PROJECT, load_demo
    from server.store import get_store

    with app.app_context():
        for _line in load_demo("http://127.0.0.1"):
            pass
        session = get_store().sessions()
        try:
            project_id: int = session.scalars(select(Project.id).where(Project.name == DEMO_PROJECT)).one()
        finally:
            session.close()
        return project_id


@pytest.fixture(scope="module")
def demo_server() -> Iterator[LiveServer]:
    """The console over the demo (``fieldsync demo``): the synthetic programme and its indicators."""
    with _serve(_seed_demo) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test process."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("FIELDSYNC_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}, and FIELDSYNC_REQUIRE_BROWSER is set")
        pytest.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if not AXE.exists():
        pytest.fail("node_modules/axe-core is missing: run `make install`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(params=["fr", "ar"])
def locale(request: pytest.FixtureRequest) -> str:
    """The language a story is told in."""
    code: str = request.param
    return code


@pytest.fixture
def page(browser: Any, locale: str) -> Iterator[Any]:
    """A fresh browser context (no cookie) whose Accept-Language is ``locale``."""
    # bypass_csp: axe-core is injected as an inline script, which the console's own policy refuses.
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(scope="session")
def admin_cookies(browser: Any, live_server: LiveServer) -> list[Any]:
    """The admin's console cookie, signed in once per test process (pages then open already signed in)."""
    context = browser.new_context()
    try:
        tab = context.new_page()
        sign_in(tab, live_server, "admin")
        cookies: list[Any] = context.cookies()
        return cookies
    finally:
        context.close()


@pytest.fixture
def admin_page(page: Any, admin_cookies: list[Any]) -> Any:
    """A page in ``locale`` already signed in as the admin."""
    page.context.add_cookies(admin_cookies)
    return page


def sign_in(page: Any, server: LiveServer, username: str, password: str = PASSWORD) -> None:
    """Sign in through the form."""
    page.goto(server.at("/signin"))
    page.fill("#f-username", username)
    page.fill("#f-password", password)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(lambda url: "/signin" not in url)


def axe_violations(page: Any, exclude: str | None = None) -> list[dict[str, Any]]:
    """Run axe-core on the page (but the ``exclude`` selector); return its serious and critical violations."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async (exclude) => (await window.axe.run(exclude ? {exclude: [[exclude]]} : document, {
             resultTypes: ["violations"],
             runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
           })).violations""",
        exclude,
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Any, name: str) -> None:
    """Save the page at 360 px and at 1280 px wide under var/screenshots/ (not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (360, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
