"""Messages that say what to do, and names beside ids in the audit log.

Rules: MSG-1 a 403 names the permission actually missing, the caller's role in the project and the
roles that hold it (JSON details too); MSG-2 an analyst's formList 403 says Collect needs a role
that may send forms; MSG-3 a manager's ``GET /v1/audits`` without ``project_id`` says to add it;
MSG-4 audit events carry ``actor_name``/``subject_name`` (user name, device name) beside the ids;
DEV-1 the API reissues a device token through the service the CLI uses.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import Personas


@pytest.mark.parametrize(
    ("persona", "role_words"),
    [("coach", "your role in project {pid} is coach"), ("outsider", "you have no role in project {pid}")],
    ids=["coach", "outsider"],
)
def test_a_403_names_the_missing_permission_and_what_to_do(
    client: FlaskClient, personas: Personas, persona: str, role_words: str
) -> None:
    response = client.get(f"/v1/projects/{personas.project_id}/assignments", headers=personas.all()[persona].headers)
    assert response.status_code == 403
    body = response.get_json()
    assert "'people.manage'" in body["message"] and "manager" in body["message"]
    assert role_words.format(pid=personas.project_id) in body["message"]
    assert body["details"]["permission"] == "people.manage"
    assert body["details"]["rolesWithPermission"] == ["manager"]


def test_an_analyst_s_form_list_403_says_collect_needs_a_sending_role(client: FlaskClient, personas: Personas) -> None:
    response = client.get(f"/v1/projects/{personas.project_id}/formList", headers=personas.analyst.basic)
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "Listing, downloading and sending forms needs the 'submission.create' permission" in text
    assert f"your role in project {personas.project_id} is analyst" in text
    assert "manager or coach" in text


def test_a_manager_reading_the_whole_audit_log_is_told_to_add_project_id(
    client: FlaskClient, personas: Personas
) -> None:
    response = client.get("/v1/audits", headers=personas.manager.headers)
    assert response.status_code == 403
    assert "?projectId=" in response.get_json()["message"]
    assert (
        client.get(f"/v1/audits?projectId={personas.project_id}", headers=personas.manager.headers).status_code == 200
    )


def test_audit_events_name_their_actor_and_subject(client: FlaskClient, personas: Personas) -> None:
    created = client.post(
        f"/v1/projects/{personas.project_id}/app-users",
        json={"displayName": "Tél Agadir"},
        headers=personas.manager.headers,
    )
    assert created.status_code == 200
    events = client.get(
        f"/v1/audits?projectId={personas.project_id}&action=device.create", headers=personas.manager.headers
    ).get_json()
    event = events[0]
    assert event["actor"] == f"user:{personas.manager.id}" and event["actorName"] == "manager-persona"
    assert event["subject"] == f"device:{created.get_json()['id']}" and event["subjectName"] == "Tél Agadir"
    everything = client.get("/v1/audits", headers=personas.admin.headers).get_json()
    assert all("actorName" in e and "subjectName" in e for e in everything)
    assert any(e["actor"] == "system" and e["actorName"] is None for e in everything)


def test_the_api_reissues_a_device_like_the_cli(client: FlaskClient, personas: Personas) -> None:
    """The same service as ``fieldsync devices reissue``: the old key stops, the new one works."""
    base = f"/v1/projects/{personas.project_id}/app-users"
    old = client.post(base, json={"displayName": "Tél Taroudant"}, headers=personas.manager.headers).get_json()
    new = client.post(f"{base}/{old['id']}/reissue", headers=personas.manager.headers)
    assert new.status_code == 200
    body = new.get_json()
    assert body["displayName"] == "Tél Taroudant" and body["token"] != old["token"]
    assert body["collectUrl"].endswith(f"/v1/key/{body['token']}/projects/{personas.project_id}")
    assert client.get(f"/v1/key/{old['token']}/projects/{personas.project_id}/formList").status_code == 403
    assert client.get(f"/v1/key/{body['token']}/projects/{personas.project_id}/formList").status_code == 200
    other = f"/v1/projects/{personas.other_project_id}/app-users/{body['id']}/reissue"
    assert client.post(other, headers=personas.admin.headers).status_code == 404
