"""The console without a browser: cookies only on console paths (HttpOnly, SameSite=Lax, Secure behind TLS),
CSRF on every POST, sign-in and sign-out, password change, the language of each page, pyxform's row.

Rules:
- C1 OpenRosa and JSON API responses never set a cookie; the console's cookie is HttpOnly and SameSite=Lax,
  and Secure when the request came over TLS (or a trusted proxy says so).
- C2 a POST without this session's CSRF token changes nothing (400).
- C3 API credentials never open the console; a password change signs the user's other sessions out.
- C4 the locale is the user's stored choice, else Accept-Language; Arabic pages are right to left.
- C5 a broken XLSForm comes back next to the file field with its sheet and row, in the reader's language.
- C7 a conversion that outlasts the wait becomes a job page that follows it (without JavaScript: it refreshes
  itself) to the stored draft, or to pyxform's refusal with its row; another project's job is not found.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PERSONA_PASSWORD, Backend, Personas
from tests.server.console.test_console_roles import page_csrf, sign_in
from tests.server.fixtures_forms import xlsform
from tests.server.test_forms_api import DUPLICATE_NAMES


def _cookie(response: object) -> str:
    return ";".join(response.headers.getlist("Set-Cookie"))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path", ["/healthz", "/v1/projects", "/v1/projects/{pid}/formList"], ids=["health", "api", "openrosa"]
)
def test_c1_api_and_openrosa_never_set_a_cookie(client: FlaskClient, personas: Personas, path: str) -> None:
    sign_in(client, "admin-persona")  # the browser now holds a console cookie and sends it everywhere
    response = client.get(path.format(pid=personas.project_id), headers=personas.admin.headers)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    ("path", "opened"),
    [
        ("/v1/projects", False),
        ("/v1/key/abc/projects/1/formList", False),
        ("/healthz", False),
        ("/projects", True),
        ("/", True),
    ],
    ids=["api", "openrosa", "health", "console-page", "console-home"],
)
def test_c1_sessions_open_only_on_console_paths(app: Flask, path: str, opened: bool) -> None:
    from flask import request

    with app.test_request_context(path, headers={"Cookie": "fieldsync_console=anything"}):
        assert (app.session_interface.open_session(app, request) is not None) is opened


@pytest.mark.parametrize(
    ("base_url", "headers", "trust", "secure"),
    [
        ("http://localhost", {}, False, False),
        ("https://localhost", {}, False, True),
        ("http://localhost", {"X-Forwarded-Proto": "https"}, True, True),
        ("http://localhost", {"X-Forwarded-Proto": "https"}, False, False),
    ],
    ids=["http", "tls", "trusted-proxy", "untrusted-proxy-header"],
)
def test_c1_console_cookie_flags(
    app: Flask, client: FlaskClient, base_url: str, headers: dict[str, str], trust: bool, secure: bool
) -> None:
    app.config["TRUSTED_PROXIES"] = 1 if trust else 0
    cookie = _cookie(client.get("/signin", base_url=base_url, headers=headers))
    assert "fieldsync_console=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


@pytest.mark.parametrize("token", ["", "forged-token"], ids=["none", "forged"])
def test_c2_post_without_the_csrf_token_changes_nothing(client: FlaskClient, token: str) -> None:
    sign_in(client, "admin-persona")
    response = client.post("/projects", data={"name": "Projet sans jeton", "csrf_token": token})
    assert response.status_code == 400
    assert "Projet sans jeton" not in client.get("/projects").get_data(as_text=True)


def test_c3_api_credentials_do_not_open_the_console(client: FlaskClient, personas: Personas) -> None:
    for headers in (personas.admin.headers, personas.admin.basic):
        response = client.get("/projects", headers=headers)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/signin")


@pytest.mark.parametrize(
    ("target", "landing"),
    [("/audit", "/audit"), ("//evil.example/x", "/"), ("/\\evil.example/x", "/"), ("https://evil.example/", "/")],
    ids=["local", "protocol-relative", "backslash", "absolute"],
)
def test_c3_sign_in_goes_back_only_to_local_pages(client: FlaskClient, target: str, landing: str) -> None:
    token = page_csrf(client, "/signin")
    response = client.post(
        "/signin",
        data={"csrf_token": token, "username": "admin-persona", "password": PERSONA_PASSWORD, "next": target},
    )
    assert response.headers["Location"] == landing


def test_c3_wrong_password_and_sign_out(client: FlaskClient) -> None:
    token = page_csrf(client, "/signin")
    refused = client.post("/signin", data={"csrf_token": token, "username": "admin-persona", "password": "nope"})
    assert refused.status_code == 401
    assert 'role="alert"' in refused.get_data(as_text=True)
    csrf = sign_in(client, "admin-persona")
    assert client.post("/signout", data={"csrf_token": csrf}).status_code == 302
    assert client.get("/projects").status_code == 302


def test_c3_password_change_signs_other_sessions_out(app: Flask, personas: Personas) -> None:
    here, elsewhere = app.test_client(), app.test_client()
    csrf = sign_in(here, "manager-persona")
    sign_in(elsewhere, "manager-persona")
    changed = here.post(
        "/account/password",
        data={"csrf_token": csrf, "current_password": PERSONA_PASSWORD, "new_password": "a brand new secret"},
    )
    assert changed.status_code == 302
    assert here.get("/account").status_code == 200
    assert elsewhere.get("/account").status_code == 302
    assert app.test_client().get("/v1/users/current", headers=personas.manager.basic).status_code == 401


def test_c3_password_change_errors_stay_next_to_their_fields(client: FlaskClient) -> None:
    csrf = sign_in(client, "coach-persona")
    response = client.post(
        "/account/password", data={"csrf_token": csrf, "current_password": "wrong", "new_password": "short"}
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="f-current_password-error"' in html
    assert 'id="f-new_password-error"' in html


@pytest.mark.parametrize(
    ("accept", "lang", "direction", "text"),
    [
        ("ar,fr;q=0.5", "ar", "rtl", "تسجيل الدخول"),
        ("fr-MA", "fr", "ltr", "Connexion"),
        ("en-GB", "en", "ltr", "Sign in"),
        ("de", "fr", "ltr", "Connexion"),
    ],
    ids=["ar", "fr", "en", "unknown-falls-back-to-fr"],
)
def test_c4_accept_language(client: FlaskClient, accept: str, lang: str, direction: str, text: str) -> None:
    html = client.get("/signin", headers={"Accept-Language": accept}).get_data(as_text=True)
    assert f'<html lang="{lang}" dir="{direction}">' in html
    assert text in html


def test_c4_the_users_choice_wins_and_is_stored(app: Flask) -> None:
    first = app.test_client()
    csrf = sign_in(first, "analyst-persona")
    assert first.post("/locale", data={"csrf_token": csrf, "locale": "ar", "next": "/projects"}).status_code == 302
    later = app.test_client()
    sign_in(later, "analyst-persona")
    html = later.get("/projects", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in html


def _upload(
    client: FlaskClient, project_id: int, body: bytes, lang: str = "fr", name: str = "dup.xlsx", user: str = ""
) -> Any:
    if user:
        sign_in(client, user, "long enough password")
    else:
        sign_in(client, "manager-persona")
    csrf = page_csrf(client, f"/projects/{project_id}/forms")
    return client.post(
        f"/projects/{project_id}/forms",
        data={"csrf_token": csrf, "file": (io.BytesIO(body), name)},
        content_type="multipart/form-data",
        headers={"Accept-Language": lang},
    )


def test_c5_a_broken_xlsform_shows_its_sheet_and_row(app: Flask, client: FlaskClient, personas: Personas) -> None:
    app.config["FORM_CONVERT_INLINE"] = True
    response = _upload(client, personas.project_id, xlsform(DUPLICATE_NAMES))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r"Feuille « survey », ligne 3", html)
    assert 'aria-describedby="upload-error"' in html


def test_c5_pyxforms_words_in_arabic(app: Flask, client: FlaskClient, personas: Personas) -> None:
    app.config["FORM_CONVERT_INLINE"] = True
    response = _upload(client, personas.project_id, xlsform(DUPLICATE_NAMES), lang="ar")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert '<p class="reason" lang="ar" dir="auto">[الورقة survey، السطر 3]' in html


def _follow_job(client: FlaskClient, url: str) -> Any:
    """GET the job page as its meta refresh would, until it stops refreshing."""
    for _ in range(600):
        page = client.get(url)
        if page.status_code != 200 or 'http-equiv="refresh"' not in page.get_data(as_text=True):
            return page
        threading.Event().wait(0.1)
    raise AssertionError("the conversion job never finished")


def test_c7_a_long_conversion_is_followed_on_its_page(backend: Backend, tmp_path: Path) -> None:
    from tests.server.fixtures_forms import committed_forms_app, media_form

    # The job's thread commits on its own connection: a store that requests commit to, not the test's transaction.
    with committed_forms_app(backend.name, tmp_path, {"FORM_CONVERT_INLINE": False, "FORM_CONVERT_WAIT": 0}) as made:
        app, _, project_id = made
        client = app.test_client()
        forms_url = f"/projects/{project_id}/forms"
        sent = _upload(client, project_id, media_form("7"), name="m.xlsx", user="racer")
        assert sent.status_code == 302
        job_url = sent.headers["Location"]
        assert re.fullmatch(rf"{forms_url}/jobs/\d+", job_url)
        done = _follow_job(client, job_url)
        assert done.status_code == 302
        assert done.headers["Location"] == f"{forms_url}/media_test"
        assert '<span dir="ltr">7</span>' in client.get(done.headers["Location"]).get_data(as_text=True)

        broken = _upload(client, project_id, xlsform(DUPLICATE_NAMES), user="racer")
        refused = _follow_job(client, broken.headers["Location"])
        assert refused.status_code == 400
        assert re.search(r"Feuille « survey », ligne 3", refused.get_data(as_text=True))

        elsewhere = broken.headers["Location"].replace(f"/projects/{project_id}/", f"/projects/{project_id + 1}/")
        assert client.get(elsewhere).status_code in (403, 404)


def test_c6_a_new_qr_code_retires_the_old_token(app: Flask, client: FlaskClient, personas: Personas) -> None:
    from server.services import accounts as svc
    from server.store import get_store

    csrf = sign_in(client, "manager-persona")
    with app.app_context():
        issued = svc.create_device(get_store().sessions(), personas.project_id, "Téléphone perdu")
    old_url = f"/v1/key/{issued.token}/projects/{personas.project_id}/formList"
    assert client.get(old_url).status_code == 200
    response = client.post(f"/projects/{personas.project_id}/phones/{issued.id}/reissue", data={"csrf_token": csrf})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert "<svg" in html
    new_url = re.search(r'<code dir="ltr" class="url">http://localhost(/v1/key/[^<]+)</code>', html)
    assert new_url is not None
    assert client.get(f"{new_url.group(1)}/formList").status_code == 200
    assert client.get(old_url).status_code in (401, 403)


def test_c8_a_manager_chooses_the_forms_a_phone_sees(app: Flask, client: FlaskClient, personas: Personas) -> None:
    from server.services import accounts as svc
    from server.store import get_store
    from tests.server.fixtures_forms import COOP_XLSX, media_form, publish_form

    publish_form(app, personas.project_id, COOP_XLSX)
    publish_form(app, personas.project_id, media_form())
    with app.app_context():
        phone = svc.create_device(get_store().sessions(), personas.project_id, "Coach Fatima")
    listing = f"/v1/key/{phone.token}/projects/{personas.project_id}/formList"

    def listed() -> list[str]:
        return sorted(re.findall(r"<formID>([^<]+)</formID>", client.get(listing).get_data(as_text=True)))

    assert listed() == ["coop_diagnostic", "media_test"]  # a new phone sees every open form
    sign_in(client, "manager-persona")
    page = f"/projects/{personas.project_id}/phones/{phone.id}/forms"
    html = client.get(page, headers={"Accept-Language": "ar"}).get_data(as_text=True)
    assert html.count(" checked") == 2 and 'dir="rtl"' in html
    csrf = page_csrf(client, page)
    saved = client.post(page, data={"csrf_token": csrf, "forms": ["media_test"]})
    assert saved.status_code == 302
    assert listed() == ["media_test"]  # at once: the phone's cached list follows
    refused = client.post(page, data={"csrf_token": csrf, "forms": ["media_test", "no_such_form"]})
    assert refused.status_code == 404 and listed() == ["media_test"]  # all or nothing
    other = client.get(f"/projects/{personas.project_id}/phones/{personas.device.id + 999}/forms")
    assert other.status_code == 404
