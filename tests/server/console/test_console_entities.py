"""Console pages of entities, conflicts and held payloads, without a browser (issue 18).

Rules:
- E1 an entity list is a table of its live entities (deleted ones on their own view), paged by id.
- E2 an entity's page shows its values and every update: who, from which phone, based on which version.
- E3 delete and restore go through the entity service with the version the reviewer saw (stale → 409).
- E4 the conflicts queue shows each competing value with its writer, capture time and base, the provisional
  winner first; the reviewer picks or types the value and the entity is resolved.
- E5 held payloads are listed, inspected raw with why they were held, released or discarded; refused
  submissions are listed, inspected byte for byte, released as an edit or discarded.
- Bad input is a 4xx that says what is wrong, and the store is unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.console.test_console_roles import page_csrf
from tests.server.console.test_console_roles import sign_in as sign_in_fr
from tests.server.role_matrix_sync import with_held_item
from tests.server.sync_fixtures import entity_item

LIST = "entrepreneurs"


def sign_in(client: FlaskClient, username: str) -> str:
    """Sign in and read the pages in English (the words these tests look for)."""
    csrf = sign_in_fr(client, username)
    assert client.post("/locale", data={"csrf_token": csrf, "locale": "en", "next": "/projects"}).status_code == 302
    return csrf


def _push(client: FlaskClient, personas: Personas, device: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    import json

    body = {"protocol": "fieldsync/2", "deviceId": device, "batchId": f"{device}-{items[0]['opId']}", "items": items}
    response = client.post(
        f"/v1/projects/{personas.project_id}/sync/push",
        data=json.dumps(body),
        headers={**personas.admin.headers, "Idempotency-Key": body["batchId"], "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def _declare(app: Flask, personas: Personas) -> None:
    from forms.schema import EntityDeclaration
    from server.db.transaction import transaction
    from server.services import entities
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        with transaction(session):
            declared = EntityDeclaration(list_name=LIST, properties={"phone": "phone", "village": "village"})
            entities.declare_entity_lists(session, personas.project_id, [declared])
        session.close()


@pytest.fixture
def conflicted(app: Flask, client: FlaskClient, personas: Personas) -> dict[str, Any]:
    """Awa, created by the office, then changed offline by two phones from the same version: one hard conflict."""
    _declare(app, personas)
    created = _push(client, personas, "office", [entity_item("office", 1, "awa", {"phone": "0"}, label="Awa")])
    rev = created["results"][0]["entity"]["rev"]
    _push(client, personas, "phoneA", [entity_item("phoneA", 1, "awa", {"phone": "0611"}, base_rev=rev, hlc=1000)])
    _push(
        client,
        personas,
        "phoneB",
        [entity_item("phoneB", 1, "awa", {"phone": "0622", "village": "Tafraout"}, base_rev=rev, hlc=2000)],
    )
    return _api_entity(client, personas, "awa")


def _api_entity(client: FlaskClient, personas: Personas, entity_id: str) -> dict[str, Any]:
    response = client.get(
        f"/v1/projects/{personas.project_id}/entities/{LIST}/{entity_id}", headers=personas.admin.headers
    )
    assert response.status_code == 200
    result: dict[str, Any] = response.get_json()
    return result


def test_e1_entity_lists_link_to_a_table_of_live_entities(
    client: FlaskClient, personas: Personas, conflicted: dict[str, Any]
) -> None:
    sign_in(client, "analyst-persona")
    lists = client.get(f"/projects/{personas.project_id}/entities").get_data(as_text=True)
    assert f'/projects/{personas.project_id}/entities/{LIST}"' in lists
    table = client.get(f"/projects/{personas.project_id}/entities/{LIST}")
    assert table.status_code == 200
    html = table.get_data(as_text=True)
    assert "Awa" in html and "0622" in html and "Tafraout" in html
    deleted = client.get(f"/projects/{personas.project_id}/entities/{LIST}?deleted=true").get_data(as_text=True)
    assert "Awa" not in deleted


@pytest.mark.parametrize(
    "query", ["deleted=maybe", "conflict=big", f"after={'x' * 300}"], ids=["deleted", "conflict", "after"]
)
def test_e1_bad_table_parameters_are_400(
    client: FlaskClient, personas: Personas, conflicted: dict[str, Any], query: str
) -> None:
    sign_in(client, "analyst-persona")
    assert client.get(f"/projects/{personas.project_id}/entities/{LIST}?{query}").status_code == 400


def test_e1_unknown_list_is_404(client: FlaskClient, personas: Personas) -> None:
    sign_in(client, "analyst-persona")
    assert client.get(f"/projects/{personas.project_id}/entities/nope").status_code == 404


def test_e2_entity_page_shows_who_which_phone_and_base_version(
    client: FlaskClient, personas: Personas, conflicted: dict[str, Any]
) -> None:
    sign_in(client, "analyst-persona")
    response = client.get(f"/projects/{personas.project_id}/entities/{LIST}/awa")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for phone in ("office", "phoneA", "phoneB"):
        assert phone in html
    assert "admin-persona" in html  # the user the pushes authenticated as
    bases = [h["baseVersion"] for h in conflicted["history"]]
    assert sorted(bases, key=lambda b: -1 if b is None else b) == [None, 1, 1]  # both phones saw version 1
    assert "Delete" not in html  # analysts do not resolve


def test_e3_delete_then_restore_and_a_stale_base_changes_nothing(
    client: FlaskClient, personas: Personas, conflicted: dict[str, Any]
) -> None:
    csrf = sign_in(client, "manager-persona")
    base = f"/projects/{personas.project_id}/entities/{LIST}/awa"
    stale = client.post(f"{base}/delete", data={"csrf_token": csrf, "base_version": conflicted["version"] - 1})
    assert stale.status_code == 409
    assert "changed since you loaded" in stale.get_data(as_text=True)
    assert _api_entity(client, personas, "awa")["deleted"] is False
    assert client.post(f"{base}/delete", data={"csrf_token": csrf}).status_code == 400  # no base_version
    deleted = client.post(f"{base}/delete", data={"csrf_token": csrf, "base_version": conflicted["version"]})
    assert deleted.status_code == 302
    after = _api_entity(client, personas, "awa")
    assert after["deleted"] is True
    html = client.get(f"/projects/{personas.project_id}/entities/{LIST}?deleted=true").get_data(as_text=True)
    assert "Awa" in html
    restored = client.post(f"{base}/restore", data={"csrf_token": csrf, "base_version": after["version"]})
    assert restored.status_code == 302
    assert _api_entity(client, personas, "awa")["deleted"] is False


def test_e4_queue_shows_every_competing_value_with_its_writer_and_the_winner_first(
    client: FlaskClient, personas: Personas, conflicted: dict[str, Any]
) -> None:
    sign_in(client, "analyst-persona")
    html = client.get(f"/projects/{personas.project_id}/conflicts").get_data(as_text=True)
    assert [c["field"] for c in conflicted["conflictFields"]] == ["phone"]
    first, second = html.index("0622"), html.index("0611")
    assert first < second  # the provisional winner (latest capture) comes first
    assert "provisional winner" in html and "phoneA" in html and "phoneB" in html
    assert "Resolve with these values" not in html  # analysts read the queue only


@pytest.mark.parametrize(
    ("form", "expected"),
    [({"pick.phone": "0611"}, "0611"), ({"pick.phone": "__typed__", "typed.phone": "0699"}, "0699")],
    ids=["picked", "typed"],
)
def test_e4_reviewer_picks_or_types_the_value(
    client: FlaskClient, personas: Personas, conflicted: dict[str, Any], form: dict[str, str], expected: str
) -> None:
    csrf = sign_in(client, "manager-persona")
    url = f"/projects/{personas.project_id}/conflicts/{LIST}/awa/resolve"
    data = {"csrf_token": csrf, "base_version": conflicted["version"], "base_rev": conflicted["rev"], **form}
    response = client.post(url, data=data)
    assert response.status_code == 302
    resolved = _api_entity(client, personas, "awa")
    assert resolved["properties"]["phone"] == expected
    assert resolved["conflict"] is None
    assert "No conflict is waiting" in client.get(f"/projects/{personas.project_id}/conflicts").get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({}, 400),  # no choice for phone
        ({"pick.phone": "__typed__", "typed.phone": "  "}, 400),
        ({"pick.phone": "0611", "base_version": "x"}, 400),
        ({"pick.phone": "0611", "base_version": "1"}, 409),  # stale
    ],
    ids=["no-choice", "empty-typed", "bad-base", "stale-base"],
)
def test_e4_bad_resolutions_change_nothing(
    client: FlaskClient, personas: Personas, conflicted: dict[str, Any], form: dict[str, str], status: int
) -> None:
    csrf = sign_in(client, "manager-persona")
    url = f"/projects/{personas.project_id}/conflicts/{LIST}/awa/resolve"
    data = {"csrf_token": csrf, "base_version": str(conflicted["version"]), **form}
    response = client.post(url, data=data)
    assert response.status_code == status
    after = _api_entity(client, personas, "awa")
    assert (after["version"], after["conflict"]) == (conflicted["version"], "hard")


def test_e4_coach_cannot_resolve(client: FlaskClient, personas: Personas, conflicted: dict[str, Any]) -> None:
    csrf = sign_in(client, "coach-persona")
    url = f"/projects/{personas.project_id}/conflicts/{LIST}/awa/resolve"
    data = {"csrf_token": csrf, "base_version": conflicted["version"], "pick.phone": "0611"}
    assert client.post(url, data=data).status_code == 403
    assert _api_entity(client, personas, "awa")["conflict"] == "hard"


def test_e5_held_item_listed_inspected_and_discarded_once(app: Flask, client: FlaskClient, personas: Personas) -> None:
    held = with_held_item(app, personas)["held"]
    csrf = sign_in(client, "manager-persona")
    listing = client.get(f"/projects/{personas.project_id}/quarantine").get_data(as_text=True)
    assert "unparseable_item" in listing
    page = client.get(f"/projects/{personas.project_id}/quarantine/{held}").get_data(as_text=True)
    assert "&#34;type&#34;: &#34;entity&#34;" in page or '"type": "entity"' in page
    url = f"/projects/{personas.project_id}/quarantine/{held}/discard"
    assert client.post(url, data={"csrf_token": csrf}).status_code == 302
    again = client.post(url, data={"csrf_token": csrf})
    assert again.status_code == 409
    assert "already decided" in again.get_data(as_text=True)
    api = client.get(f"/v1/projects/{personas.project_id}/quarantine/{held}", headers=personas.admin.headers)
    assert api.get_json()["status"] == "discarded"


def test_e5_release_reprocesses_and_an_unknown_item_is_404(app: Flask, client: FlaskClient, personas: Personas) -> None:
    held = with_held_item(app, personas)["held"]
    csrf = sign_in(client, "manager-persona")
    released = client.post(f"/projects/{personas.project_id}/quarantine/{held}/release", data={"csrf_token": csrf})
    assert released.status_code == 302  # processed again, and held again: still open
    api = client.get(f"/v1/projects/{personas.project_id}/quarantine/{held}", headers=personas.admin.headers)
    assert api.get_json()["status"] == "open"
    assert client.get(f"/projects/{personas.project_id}/quarantine/999999").status_code == 404
    assert client.get(f"/projects/{personas.project_id}/quarantine?status=maybe").status_code == 400
    assert (
        client.post(f"/projects/{personas.project_id}/quarantine/999999/discard", data={"csrf_token": csrf}).status_code
        == 404
    )


def test_e5_analyst_sees_no_held_payloads(app: Flask, client: FlaskClient, personas: Personas) -> None:
    held = with_held_item(app, personas)["held"]
    sign_in(client, "analyst-persona")
    assert client.get(f"/projects/{personas.project_id}/quarantine").status_code == 403
    assert client.get(f"/projects/{personas.project_id}/quarantine/{held}").status_code == 403
    assert client.get(f"/projects/{personas.project_id}/refused").status_code == 403


def test_e5_refused_submission_listed_and_read_byte_for_byte(
    client: FlaskClient, personas: Personas, app: Flask
) -> None:
    from tests.server.role_matrix_refused_submissions import with_refused

    refused_id = with_refused(app, personas)["refused_id"]
    sign_in(client, "manager-persona")
    listing = client.get(f"/projects/{personas.project_id}/refused")
    assert listing.status_code == 200
    page = client.get(f"/projects/{personas.project_id}/refused/{refused_id}").get_data(as_text=True)
    assert "different content" in page
    xml = client.get(f"/projects/{personas.project_id}/refused/{refused_id}/xml")
    api = client.get(
        f"/v1/projects/{personas.project_id}/refused-submissions/{refused_id}/xml", headers=personas.admin.headers
    )
    assert xml.data == api.data and xml.data.startswith(b"<")
    assert client.get(f"/projects/{personas.project_id}/refused?after_id=-1").status_code == 400


@pytest.mark.parametrize("action", ["release", "discard"])
def test_e5_a_refused_submission_is_released_or_discarded_without_javascript(
    client: FlaskClient, personas: Personas, app: Flask, action: str
) -> None:
    from tests.server.role_matrix_refused_submissions import with_refused

    refused_id = with_refused(app, personas)["refused_id"]
    csrf = sign_in(client, "manager-persona")
    page_url = f"/projects/{personas.project_id}/refused/{refused_id}"
    assert f"{page_url}/{action}" in client.get(page_url).get_data(as_text=True)
    assert client.post(f"{page_url}/{action}", data={}).status_code == 400  # no CSRF token: nothing decided
    api = f"/v1/projects/{personas.project_id}/refused-submissions/{refused_id}"
    assert client.get(api, headers=personas.admin.headers).get_json()["state"] == "held"
    answer = client.post(f"{page_url}/{action}", data={"csrf_token": csrf})
    assert answer.status_code == 302 and answer.headers["Location"].endswith(page_url)
    state = client.get(api, headers=personas.admin.headers).get_json()
    assert state["state"] == {"release": "released", "discard": "discarded"}[action]
    shown = client.get(page_url).get_data(as_text=True)
    assert {"release": "stored as the edit", "discard": "discarded"}[action] in shown
    assert f"{page_url}/release" not in shown and f"{page_url}/discard" not in shown  # decided: no buttons
    other = "discard" if action == "release" else "release"
    refused_again = client.post(f"{page_url}/{other}", data={"csrf_token": csrf})
    assert refused_again.status_code == 409 and "already" in refused_again.get_data(as_text=True)


def test_pages_carry_a_csrf_token(client: FlaskClient, personas: Personas, conflicted: dict[str, Any]) -> None:
    sign_in(client, "manager-persona")
    assert page_csrf(client, f"/projects/{personas.project_id}/conflicts")
