"""Issue 15 row 4 and the headers: what a hostile page can make a browser do, and what every response says.

Rules:
- C1 the reproduced attack: another site's HTML form (``enctype=text/plain``) posting a JSON-looking body
  to ``POST /v1/users`` with the admin's Basic credentials creates nobody: ``403`` for its ``Origin``,
  ``403`` for ``Sec-Fetch-Site: cross-site``, and ``415`` for its content type even without those headers.
- C2 a JSON body needs ``Content-Type: application/json`` (415 naming what was sent), the push too.
- C3 requests from the server's own origin (or its ``PUBLIC_URL``), and requests without ``Origin``
  (phones, scripts), still work; OpenRosa routes are not origin-checked.
- C4 the JSON API's 401 sends no ``WWW-Authenticate``; OpenRosa's 401 keeps its Digest and Basic challenges.
- H1 every response carries the CSP (``default-src 'self'``, ``frame-ancestors 'none'``, no
  'unsafe-inline'), ``nosniff``, ``Referrer-Policy``; HSTS only over TLS; a view's own CSP is kept.
"""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas

ATTACK_BODY = json.dumps(
    {"email": "mallory@example.org", "username": "mallory", "password": "owned-by-mallory", "isAdmin": True}
)
EVIL = "https://evil.example"


def _user_exists(client: FlaskClient, personas: Personas, name: str) -> bool:
    users = client.get("/v1/users", headers=personas.admin.headers).get_json()
    return any(u["username"] == name for u in users)


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Origin": EVIL}, 403, "cross_origin_refused"),
        ({"Origin": "null"}, 403, "cross_origin_refused"),
        ({"Sec-Fetch-Site": "cross-site"}, 403, "cross_origin_refused"),
        ({"Sec-Fetch-Site": "same-site"}, 403, "cross_origin_refused"),
        ({}, 415, "unsupported_media_type"),
    ],
    ids=["origin", "null-origin", "fetch-cross-site", "fetch-same-site", "no-origin-text-plain"],
)
def test_a_cross_site_form_cannot_create_an_admin(
    client: FlaskClient, personas: Personas, headers: dict[str, str], status: int, code: str
) -> None:
    response = client.post(
        "/v1/users", data=ATTACK_BODY, content_type="text/plain", headers={**personas.admin.basic, **headers}
    )
    assert (response.status_code, response.get_json()["details"]["problem"]) == (status, code), response.get_data(
        as_text=True
    )
    assert not _user_exists(client, personas, "mallory")


def test_a_cross_origin_delete_without_body_is_refused(client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/app-users/{personas.device.id}"
    response = client.delete(url, headers={**personas.admin.basic, "Origin": EVIL})
    assert response.status_code == 403
    assert (
        client.get(f"/v1/projects/{personas.project_id}/app-users", headers=personas.admin.headers).status_code == 200
    )


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", ""], ids=["text-plain", "urlencoded", "none"]
)
def test_json_bodies_need_the_json_content_type(client: FlaskClient, personas: Personas, content_type: str) -> None:
    body = json.dumps({"name": "Projet sans type"})
    response = client.post("/v1/projects", data=body, content_type=content_type, headers=personas.admin.headers)
    assert response.status_code == 415
    assert response.get_json()["details"]["expected"] == "application/json"
    push = client.post(
        f"/v1/projects/{personas.project_id}/sync/push",
        data=json.dumps({"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b", "items": []}),
        content_type=content_type,
        headers=personas.device.headers,
    )
    assert (push.status_code, push.get_json()["protocol"]) == (415, "fieldsync/2")


@pytest.mark.parametrize(
    "origin", [None, "http://localhost", "https://fieldsync.example"], ids=["no-origin", "own", "public-url"]
)
def test_own_origin_and_non_browsers_still_work(
    app: Flask, client: FlaskClient, personas: Personas, origin: str | None
) -> None:
    app.config["PUBLIC_URL"] = "https://fieldsync.example"
    headers = {**personas.admin.headers, **({"Origin": origin, "Sec-Fetch-Site": "same-origin"} if origin else {})}
    response = client.post("/v1/projects", json={"name": f"Projet {origin}"}, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_openrosa_routes_are_not_origin_checked(client: FlaskClient, personas: Personas) -> None:
    response = client.head(f"{personas.collect_prefix}/submission", headers={"Origin": EVIL})
    assert response.status_code == 204


def test_the_json_api_401_invites_no_basic_prompt_but_openrosa_keeps_its_challenges(
    client: FlaskClient, personas: Personas
) -> None:
    for response in (
        client.get("/v1/users"),
        client.get("/v1/users", headers={"Authorization": "Basic bWFsbG9yeTpub3BlLW5vcGU="}),
        client.post("/v1/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"}),
    ):
        assert response.status_code == 401
        assert "WWW-Authenticate" not in response.headers
    openrosa = client.get(f"/v1/projects/{personas.project_id}/formList")
    schemes = sorted(h.split()[0] for h in openrosa.headers.getlist("WWW-Authenticate"))
    assert (openrosa.status_code, schemes) == (401, ["Basic", "Digest"])


@pytest.mark.parametrize(
    ("path", "secure"),
    [("/healthz", False), ("/v1/users", False), ("/v1/projects/1/formList", False), ("/healthz", True)],
    ids=["health", "api-401", "openrosa-401", "health-tls"],
)
def test_every_response_carries_the_security_headers(client: FlaskClient, path: str, secure: bool) -> None:
    response = client.get(path, base_url="https://localhost" if secure else "http://localhost")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert ("Strict-Transport-Security" in response.headers) is secure


def test_a_views_own_csp_is_kept() -> None:
    from server import web_security

    small = Flask(__name__)
    web_security.init_app(small)

    @small.get("/own")
    def _own() -> tuple[str, int, dict[str, str]]:
        return "ok", 200, {"Content-Security-Policy": "default-src 'none'"}

    response = small.test_client().get("/own")
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
