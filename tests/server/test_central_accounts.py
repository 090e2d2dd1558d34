"""ODK Central's accounts API: sessions by email, users, projects, role assignments, app users.

- CA1 ``POST /v1/sessions {email, password}`` is 200 with ``token``, ``csrf``, ``expiresAt``, ``createdAt``;
  a username in ``email`` works too; a wrong password is 401 with code 401.2; ``DELETE /v1/sessions/{token}``
  ends the session (the token is then 401).
- CA2 every list is a bare JSON array with ``X-Total-Count``; fields are camelCase.
- CA3 errors carry Central's numeric code and Fieldsync's name in ``details.problem``.
- CA4 ``/projects/{id}/assignments/{roleId}/{actorId}`` gives Central's role (by id or system name) as the
  Fieldsync role it maps to, and DELETE takes it away.
- CA5 an app user sees only its assigned forms in its formList; a phone set up in the console sees all.
- CA6 an app user can neither download (XForm, manifest, media) nor submit a form it was not given:
  403 ``form_not_assigned`` and nothing stored; its assigned form works, and so does a console phone.
- CA7 Fieldsync's ``POST /v1/users/current/password`` takes camelCase ``currentPassword``/``newPassword``
  (204, the new one signs in); the snake_case names are unknown fields (400, nothing changed).
"""

from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient

from tests.conftest import PERSONA_PASSWORD, Personas
from tests.server.fixtures_forms import PublishedForm, published_coop, published_entrepreneur  # noqa: F401


def _new_user(client: FlaskClient, personas: Personas, email: str, **extra: str) -> dict[str, object]:
    response = client.post(
        "/v1/users", json={"email": email, "password": "long enough pw", **extra}, headers=personas.admin.headers
    )
    assert response.status_code == 200, response.get_json()
    body: dict[str, object] = response.get_json()
    return body


def test_ca1_sessions_by_email_and_logout(client: FlaskClient, personas: Personas) -> None:
    user = _new_user(client, personas, "amina@example.org", displayName="Amina Ouali")
    assert (user["email"], user["displayName"], user["type"]) == ("amina@example.org", "Amina Ouali", "user")
    login = client.post("/v1/sessions", json={"email": "amina@example.org", "password": "long enough pw"})
    assert login.status_code == 200
    body = login.get_json()
    assert set(body) == {"token", "csrf", "expiresAt", "createdAt"}
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/v1/users/current", headers=bearer).get_json()["email"] == "amina@example.org"
    by_username = client.post("/v1/sessions", json={"email": "analyst-persona", "password": PERSONA_PASSWORD})
    assert by_username.status_code == 200
    wrong = client.post("/v1/sessions", json={"email": "amina@example.org", "password": "not the password"})
    assert (wrong.status_code, wrong.get_json()["code"]) == (401, 401.2)
    assert client.delete(f"/v1/sessions/{body['token']}", headers=bearer).get_json() == {"success": True}
    assert client.get("/v1/users/current", headers=bearer).status_code == 401


def test_ca1_one_cannot_end_another_s_session(client: FlaskClient, personas: Personas) -> None:
    login = client.post("/v1/sessions", json={"email": "analyst-persona", "password": PERSONA_PASSWORD})
    token = login.get_json()["token"]
    other = client.delete(f"/v1/sessions/{token}", headers=personas.coach.headers)
    assert (other.status_code, other.get_json()["code"]) == (404, 404.1)
    assert client.get("/v1/users/current", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_ca2_lists_are_bare_arrays_with_a_total(client: FlaskClient, personas: Personas) -> None:
    response = client.get("/v1/projects", headers=personas.admin.headers)
    projects = response.get_json()
    assert isinstance(projects, list) and response.headers["X-Total-Count"] == str(len(projects))
    assert {"id", "name", "createdAt", "archived", "keyId", "description"} <= set(projects[0])
    users = client.get("/v1/users", headers=personas.admin.headers)
    assert isinstance(users.get_json(), list) and int(users.headers["X-Total-Count"]) == len(users.get_json()) >= 5


def test_ca2_create_project_is_200(client: FlaskClient, personas: Personas) -> None:
    response = client.post("/v1/projects", json={"name": "Programme Drâa-Tafilalet"}, headers=personas.admin.headers)
    assert response.status_code == 200
    created = response.get_json()
    assert client.get(f"/v1/projects/{created['id']}", headers=personas.admin.headers).get_json() == created


def test_ca3_errors_have_central_codes(client: FlaskClient, personas: Personas) -> None:
    missing = client.get("/v1/projects/999999", headers=personas.admin.headers)
    assert missing.status_code in (403, 404)
    assert missing.get_json()["code"] in (403.1, 404.1)
    dup = client.post("/v1/projects", json={"name": "dup"}, headers=personas.admin.headers)
    again = client.post("/v1/projects", json={"name": "dup"}, headers=personas.admin.headers)
    assert dup.status_code == 200
    assert (again.status_code, again.get_json()["code"], again.get_json()["details"]["problem"]) == (
        409,
        409.3,
        "project_name_taken",
    )
    bad = client.post("/v1/users", json={"email": "not an email", "password": "x"}, headers=personas.admin.headers)
    assert (bad.status_code, bad.get_json()["code"]) == (400, 400.8)
    assert {"email", "password"} <= set(bad.get_json()["details"]["fields"])


@pytest.mark.parametrize("role_id", ["5", "viewer"], ids=["by-id", "by-system-name"])
def test_ca4_assignments_map_onto_fieldsync_roles(client: FlaskClient, personas: Personas, role_id: str) -> None:
    user = _new_user(client, personas, "karim@example.org")
    base = f"/v1/projects/{personas.project_id}/assignments"
    assert client.post(f"{base}/{role_id}/{user['id']}", headers=personas.manager.headers).get_json() == {
        "success": True
    }
    listed = client.get(base, headers=personas.manager.headers).get_json()
    assert {"actorId": user["id"], "roleId": 5} in listed
    login = client.post("/v1/sessions", json={"email": "karim@example.org", "password": "long enough pw"})
    bearer = {"Authorization": f"Bearer {login.get_json()['token']}"}
    assert client.get(f"/v1/projects/{personas.project_id}", headers=bearer).status_code == 200
    assert client.delete(f"{base}/{role_id}/{user['id']}", headers=personas.manager.headers).status_code == 200
    assert client.get(f"/v1/projects/{personas.project_id}", headers=bearer).status_code == 403
    again = client.delete(f"{base}/{role_id}/{user['id']}", headers=personas.manager.headers)
    assert again.status_code == 404
    unknown = client.post(f"{base}/9/{user['id']}", headers=personas.manager.headers)
    assert (unknown.status_code, unknown.get_json()["code"]) == (400, 400.8)


def _form_ids(client: FlaskClient, url: str) -> list[str]:
    import re

    response = client.get(url, headers={"X-OpenRosa-Version": "1.0"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return re.findall(r"<formID>([^<]+)</formID>", response.get_data(as_text=True))


def test_ca5_app_users_see_only_their_forms(
    client: FlaskClient,
    personas: Personas,
    published_coop: PublishedForm,  # noqa: F811
    published_entrepreneur: PublishedForm,  # noqa: F811
) -> None:
    pid = personas.project_id
    created = client.post(
        f"/v1/projects/{pid}/app-users", json={"displayName": "Téléphone Tiznit"}, headers=personas.manager.headers
    )
    assert created.status_code == 200
    app_user = created.get_json()
    assert app_user["collectUrl"].endswith(f"/v1/key/{app_user['token']}/projects/{pid}")
    form_list = f"/v1/key/{app_user['token']}/projects/{pid}/formList"
    assert _form_ids(client, form_list) == []
    assign = f"/v1/projects/{pid}/forms/{published_coop.xml_form_id}/assignments/2/{app_user['id']}"
    assert client.post(assign, headers=personas.manager.headers).get_json() == {"success": True}
    assert client.post(assign, headers=personas.manager.headers).status_code == 200  # twice is harmless
    assert _form_ids(client, form_list) == [published_coop.xml_form_id]
    assert {"actorId": app_user["id"], "roleId": 2, "xmlFormId": published_coop.xml_form_id} in client.get(
        f"/v1/projects/{pid}/assignments/forms", headers=personas.manager.headers
    ).get_json()
    # The persona's phone was set up without assignments: it sees every form of the project.
    assert len(_form_ids(client, f"/v1/key/{personas.device.token}/projects/{pid}/formList")) == 2
    assert client.delete(assign, headers=personas.manager.headers).status_code == 200
    assert _form_ids(client, form_list) == []
    listed = client.get(f"/v1/projects/{pid}/app-users", headers=personas.manager.headers)
    assert app_user["id"] in [row["id"] for row in listed.get_json()]
    assert (
        client.delete(f"/v1/projects/{pid}/app-users/{app_user['id']}", headers=personas.manager.headers).status_code
        == 200
    )
    listed = client.get(f"/v1/projects/{pid}/app-users", headers=personas.manager.headers)
    assert app_user["id"] not in [row["id"] for row in listed.get_json()]


def _minimal(form: PublishedForm, instance_id: str) -> bytes:
    return (
        f'<data id="{form.xml_form_id}" version="{form.version}"><meta><instanceID>{instance_id}</instanceID>'
        "</meta></data>"
    ).encode()


def test_ca6_an_app_user_cannot_fetch_or_send_a_form_it_was_not_given(
    client: FlaskClient,
    personas: Personas,
    published_coop: PublishedForm,  # noqa: F811
    published_entrepreneur: PublishedForm,  # noqa: F811
) -> None:
    from tests.server.test_submissions_support import post_submission

    pid = personas.project_id
    app_user = client.post(
        f"/v1/projects/{pid}/app-users", json={"displayName": "Téléphone Safi"}, headers=personas.manager.headers
    ).get_json()
    assign = f"/v1/projects/{pid}/forms/{published_coop.xml_form_id}/assignments/2/{app_user['id']}"
    assert client.post(assign, headers=personas.manager.headers).status_code == 200
    key = f"/v1/key/{app_user['token']}/projects/{pid}"
    given, other = published_coop.xml_form_id, published_entrepreneur.xml_form_id
    assert client.get(f"{key}/forms/{given}.xml").status_code == 200
    for path in (f"forms/{other}.xml", f"forms/{other}/manifest", f"forms/{other}/attachments/anything.csv"):
        refused = client.get(f"{key}/{path}", headers={"X-OpenRosa-Version": "1.0"})
        assert refused.status_code == 403, path
        assert "form_not_assigned" in refused.get_data(as_text=True) or b"not given" in refused.data
    # A phone set up in the console sees every form.
    assert client.get(f"/v1/key/{personas.device.token}/projects/{pid}/forms/{other}.xml").status_code == 200

    stored = f"/v1/projects/{pid}/forms/{other}/submissions"
    before = client.get(stored, headers=personas.manager.headers).get_data()
    sent = post_submission(client, key, _minimal(published_entrepreneur, "uuid:not-given-1"))
    assert sent.status_code == 403 and b"was not given" in sent.data
    assert client.get(stored, headers=personas.manager.headers).get_data() == before
    assert post_submission(client, key, _minimal(published_coop, "uuid:given-1")).status_code == 201
    assert post_submission(client, f"/v1/key/{personas.device.token}/projects/{pid}",
                           _minimal(published_entrepreneur, "uuid:console-phone-1")).status_code == 201  # fmt: skip


def test_ca7_password_change_body_is_camel_case(client: FlaskClient, personas: Personas) -> None:
    _new_user(client, personas, "salma@example.org")
    basic = {"Authorization": "Basic " + base64.b64encode(b"salma@example.org:long enough pw").decode()}
    url = "/v1/users/current/password"
    snake = {"current_password": "long enough pw", "new_password": "a brand new secret"}
    refused = client.post(url, json=snake, headers=basic)
    assert refused.status_code == 400 and refused.get_json()["details"]["problem"] == "invalid_input"
    body = {"currentPassword": "long enough pw", "newPassword": "a brand new secret"}
    assert client.post(url, json=body, headers=basic).status_code == 204
    login = client.post("/v1/sessions", json={"email": "salma@example.org", "password": "a brand new secret"})
    assert login.status_code == 200
