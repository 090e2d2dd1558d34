"""OpenRosa authentication on the form routes (docs/reference/peers.md §4 "Authentication").

Rules:
- AUTH-1 no credential on ``/v1/projects/<p>/...`` → 401, one ``WWW-Authenticate`` header per scheme
  (Digest with realm, qop="auth", algorithm=MD5, nonce, domain; and Basic), OpenRosa XML body and headers.
- AUTH-2 a full Digest round trip (RFC 2617, MD5, qop=auth) computed here with hashlib → 200.
- AUTH-3 Digest with a wrong password, a forged nonce, or another URI → 401 with a fresh challenge.
- AUTH-4 Digest with an expired nonce but the right password → 401 with ``stale=true``.
- AUTH-5 Digest without qop (RFC 2069) → 401 with a fresh challenge: it has no nonce count, so replays
  could not be told apart (issue 15 row 12).
- AUTH-6 Basic with the right password → 200; wrong → 401 with challenges.
- AUTH-7 token in the path → 200 without any header; unknown token → 401 (no challenge);
  revoked token → 403; both with an OpenRosa ``<message>``.
- AUTH-8 a person without a role in the project → 403.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from tests.conftest import PERSONA_PASSWORD, Personas
from tests.server.fixtures_forms import published_coop  # noqa: F401  (fixture)

OR_NS = "http://openrosa.org/http/response"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _challenge_params(header: str) -> dict[str, str]:
    return {k: v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', header)}


def _digest_header(
    username: str, password: str, method: str, uri: str, challenge: dict[str, str], *, qop: bool = True, nc: int = 1
) -> str:
    ha1 = _md5(f"{username}:{challenge['realm']}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    nonce = challenge["nonce"]
    if not qop:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
        return (
            f'Digest username="{username}", realm="{challenge["realm"]}", nonce="{nonce}", '
            f'uri="{uri}", response="{response}"'
        )
    nc_text, cnonce = f"{nc:08x}", "0a4f113b9c8e7d21"
    response = _md5(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{username}", realm="{challenge["realm"]}", nonce="{nonce}", uri="{uri}", '
        f'algorithm=MD5, response="{response}", qop=auth, nc={nc_text}, cnonce="{cnonce}", '
        f'opaque="{challenge["opaque"]}"'
    )


def _digest_challenge(client: FlaskClient, url: str) -> dict[str, str]:
    response = client.get(url)
    assert response.status_code == 401
    digest = [h for h in response.headers.getlist("WWW-Authenticate") if h.startswith("Digest ")]
    assert len(digest) == 1
    return _challenge_params(digest[0])


def _message(response_data: bytes) -> str:
    root = etree.fromstring(response_data)
    assert root.tag == f"{{{OR_NS}}}OpenRosaResponse"
    return "".join(root.find(f"{{{OR_NS}}}message").itertext())


def test_auth_1_challenge_offers_digest_and_basic(client: FlaskClient, personas: Personas) -> None:
    response = client.get(f"/v1/projects/{personas.project_id}/formList")
    assert response.status_code == 401
    challenges = response.headers.getlist("WWW-Authenticate")
    assert [c.split(" ")[0] for c in challenges] == ["Digest", "Basic"]
    digest = _challenge_params(challenges[0])
    assert digest["realm"] == "Fieldsync"
    assert digest["qop"] == "auth"
    assert digest["algorithm"] == "MD5"
    assert digest["domain"] == f"/v1/projects/{personas.project_id}/"
    assert digest["nonce"] and digest["opaque"]
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    assert response.headers["Content-Type"].startswith("text/xml")
    assert "Date" in response.headers
    assert _message(response.data)


@pytest.mark.usefixtures("published_coop")
def test_auth_2_digest_round_trip(client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    challenge = _digest_challenge(client, url)
    header = _digest_header("coach-persona", PERSONA_PASSWORD, "GET", url, challenge)
    response = client.get(url, headers={"Authorization": header})
    assert response.status_code == 200, response.data
    assert b"coop_diagnostic" in response.data
    # The same nonce with a later nc keeps working (Collect caches the challenge).
    second = _digest_header("coach-persona", PERSONA_PASSWORD, "GET", url, challenge, nc=2)
    again = client.get(url, headers={"Authorization": second})
    assert again.status_code == 200


@pytest.mark.usefixtures("published_coop")
def test_auth_2_digest_with_query_string(client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/formList?deviceID=collect%3Aabc"
    challenge = _digest_challenge(client, url)
    header = _digest_header("manager-persona", PERSONA_PASSWORD, "GET", url, challenge)
    assert client.get(url, headers={"Authorization": header}).status_code == 200


def _bad_digest(case: str, url: str, other_url: str, challenge: dict[str, str]) -> str:
    if case == "wrong_password":
        return _digest_header("coach-persona", "not the password", "GET", url, challenge)
    if case == "forged_nonce":
        forged = dict(challenge, nonce=f"{int(time.time())}.{'0' * 32}")
        return _digest_header("coach-persona", PERSONA_PASSWORD, "GET", url, forged)
    if case == "other_uri":
        return _digest_header("coach-persona", PERSONA_PASSWORD, "GET", other_url, challenge)
    if case == "unknown_user":
        return _digest_header("nobody", PERSONA_PASSWORD, "GET", url, challenge)
    return 'Digest username="coach-persona"'  # malformed


@pytest.mark.parametrize(
    "case",
    ["wrong_password", "forged_nonce", "other_uri", "unknown_user", "malformed"],
    ids=["wrong-password", "forged-nonce", "other-uri", "unknown-user", "malformed"],
)
def test_auth_3_bad_digest_is_challenged_again(client: FlaskClient, personas: Personas, case: str) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    other = f"/v1/projects/{personas.project_id}/forms/x.xml"
    challenge = _digest_challenge(client, url)
    response = client.get(url, headers={"Authorization": _bad_digest(case, url, other, challenge)})
    assert response.status_code == 401
    assert any(h.startswith("Digest ") for h in response.headers.getlist("WWW-Authenticate"))
    assert "stale" not in response.headers["WWW-Authenticate"]
    assert _message(response.data)


def test_auth_4_expired_nonce_is_stale(app: Flask, client: FlaskClient, personas: Personas) -> None:
    from server.openrosa.auth import NONCE_LIFETIME_SECONDS, make_nonce

    url = f"/v1/projects/{personas.project_id}/formList"
    challenge = _digest_challenge(client, url)
    with app.app_context():
        old = make_nonce(time.time() - NONCE_LIFETIME_SECONDS - 10)
    header = _digest_header("coach-persona", PERSONA_PASSWORD, "GET", url, dict(challenge, nonce=old))
    response = client.get(url, headers={"Authorization": header})
    assert response.status_code == 401
    digest = next(h for h in response.headers.getlist("WWW-Authenticate") if h.startswith("Digest "))
    assert _challenge_params(digest)["stale"] == "true"


def test_auth_5_digest_without_qop_is_refused(client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    challenge = _digest_challenge(client, url)
    header = _digest_header("coach-persona", PERSONA_PASSWORD, "GET", url, challenge, qop=False)
    response = client.get(url, headers={"Authorization": header})
    assert response.status_code == 401
    assert "qop=auth" in _message(response.data)


def test_auth_6_basic(client: FlaskClient, personas: Personas) -> None:
    url = f"/v1/projects/{personas.project_id}/formList"
    assert client.get(url, headers=personas.coach.basic).status_code == 200
    wrong = client.get(url, auth=("coach-persona", "wrong password"))
    assert wrong.status_code == 401
    assert len(wrong.headers.getlist("WWW-Authenticate")) == 2


def test_auth_7_token_in_path(client: FlaskClient, app: Flask, personas: Personas) -> None:
    assert client.get(f"{personas.collect_prefix}/formList").status_code == 200
    unknown = client.get(f"/v1/key/not-a-token/projects/{personas.project_id}/formList")
    assert unknown.status_code == 401
    assert "WWW-Authenticate" not in unknown.headers
    assert _message(unknown.data)
    assert unknown.headers["X-OpenRosa-Version"] == "1.0"

    from server.services import accounts as svc
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        issued = svc.create_device(session, personas.project_id, "phone to revoke")
        svc.revoke_device(session, personas.project_id, issued.id)
        session.close()
    revoked = client.get(f"/v1/key/{issued.token}/projects/{personas.project_id}/formList")
    assert revoked.status_code == 403
    assert "revoked" in _message(revoked.data)
    french = client.get(
        f"/v1/key/{issued.token}/projects/{personas.project_id}/formList", headers={"Accept-Language": "fr"}
    )
    assert "révoquée" in _message(french.data)


def test_auth_8_outsider_is_forbidden(client: FlaskClient, personas: Personas) -> None:
    response = client.get(f"/v1/projects/{personas.project_id}/formList", headers=personas.outsider.basic)
    assert response.status_code == 403
    assert _message(response.data)
