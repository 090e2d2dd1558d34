"""Issue 15 row 12: OpenRosa Digest can neither be replayed nor stand in for an admin's password.

Rules:
- D1 a captured Digest header (nonce and nc) replayed, on a GET or on a POST with a new body, is
  challenged again (401) and stores nothing; the same nonce with the next nc (what Collect does) works.
- D2 RFC 2069 Digest (no qop) is refused.
- D3 the stored HA1 alone does not log in an admin: a right Digest answer for an admin is 401 (admins use
  Basic over HTTPS or a device key); managers and coaches still use Digest.
- D4 ``DIGEST_AUTH = False`` offers and accepts only Basic on OpenRosa routes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models.submissions import Submission
from tests.conftest import PERSONA_PASSWORD, Personas
from tests.server.fixtures_forms import PublishedForm, published_coop  # noqa: F401 (fixture)
from tests.server.test_submissions_support import post_submission

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "submissions" / "coop_diagnostic"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _challenge(client: FlaskClient, url: str) -> dict[str, str]:
    response = client.get(url)
    digest = next(h for h in response.headers.getlist("WWW-Authenticate") if h.startswith("Digest "))
    return {k: v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', digest)}


def _digest(username: str, method: str, uri: str, nonce: str, *, nc: int = 1, qop: bool = True) -> str:
    ha1 = _md5(f"{username}:Fieldsync:{PERSONA_PASSWORD}")  # what the server stores: enough by itself
    ha2 = _md5(f"{method}:{uri}")
    if not qop:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
        return f'Digest username="{username}", realm="Fieldsync", nonce="{nonce}", uri="{uri}", response="{response}"'
    nc_text, cnonce = f"{nc:08x}", "5ac1e1ec0ffee"
    response = _md5(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{username}", realm="Fieldsync", nonce="{nonce}", uri="{uri}", algorithm=MD5, '
        f'response="{response}", qop=auth, nc={nc_text}, cnonce="{cnonce}"'
    )


def _submissions(session: Session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Submission)) or 0


def test_a_replayed_digest_header_is_challenged_again(client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    header = _digest("coach-persona", "GET", url, _challenge(client, url)["nonce"])
    assert client.get(url, headers={"Authorization": header}).status_code == 200
    for _ in range(3):
        replayed = client.get(url, headers={"Authorization": header})
        assert replayed.status_code == 401
        assert any(h.startswith("Digest ") for h in replayed.headers.getlist("WWW-Authenticate"))


def test_a_replayed_post_with_a_new_body_stores_nothing(
    client: FlaskClient,
    session: Session,
    personas: Personas,
    published_coop: PublishedForm,  # noqa: F811
) -> None:
    prefix = f"/v1/projects/{personas.project_id}"
    uri = f"{prefix}/submission"
    nonce = _challenge(client, f"{prefix}/formList")["nonce"]
    header = {"Authorization": _digest("coach-persona", "POST", uri, nonce)}
    first, second = sorted(SAMPLES.glob("0[12]_*.xml"))
    assert post_submission(client, prefix, first.read_bytes(), headers=header, query="").status_code == 201
    before = _submissions(session)
    replayed = post_submission(client, prefix, second.read_bytes(), headers=header, query="")
    assert replayed.status_code == 401
    assert _submissions(session) == before
    following = {"Authorization": _digest("coach-persona", "POST", uri, nonce, nc=2)}
    assert post_submission(client, prefix, second.read_bytes(), headers=following, query="").status_code == 201


def test_rfc_2069_digest_is_refused(client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    header = _digest("coach-persona", "GET", url, _challenge(client, url)["nonce"], qop=False)
    assert client.get(url, headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize(("persona", "status"), [("admin", 401), ("manager", 200)], ids=["admin", "manager"])
def test_the_stored_ha1_does_not_log_in_an_admin(
    client: FlaskClient, personas: Personas, persona: str, status: int
) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    header = _digest(f"{persona}-persona", "GET", url, _challenge(client, url)["nonce"])
    response = client.get(url, headers={"Authorization": header})
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 401:
        assert b"Admin accounts cannot use Digest" in response.get_data()
        basic = client.get(url, headers=personas.admin.basic)  # Basic (over HTTPS) still works
        assert basic.status_code == 200


def test_digest_can_be_turned_off(app: Flask, client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    nonce = _challenge(client, url)["nonce"]
    app.config["DIGEST_AUTH"] = False
    offered = client.get(url)
    assert [h.split()[0] for h in offered.headers.getlist("WWW-Authenticate")] == ["Basic"]
    assert client.get(url, headers={"Authorization": _digest("coach-persona", "GET", url, nonce)}).status_code == 401
    assert client.get(url, headers=personas.coach.basic).status_code == 200
