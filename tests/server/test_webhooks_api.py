"""The webhook subscriptions API: the secret shown once, checked URLs, pause and resume, rotation, the log, replay.

Rules:
- A1 creating a subscription answers its ``whsec_`` secret once; no read shows it again.
- A2 a URL that is not http(s), carries credentials, or names a private, loopback or link-local address
  (unless ``WEBHOOKS_ALLOW_PRIVATE``) is ``400 invalid_webhook_url``; unknown kinds, fields or forms are ``400``;
  nothing is stored.
- A3 pause and resume change the state; resuming makes the queue due now; rotating gives a new secret.
- A4 the delivery log lists deliveries (``?status=`` filters, ``dead`` = the dead letters) with their attempts;
  a replay of one event or a range queues them again under the same ``webhook-id``.
- A5 a subscription of another project is ``404``.
- A6 the API is in ODK Central's conventions: camelCase fields and parameters (a snake_case field is an
  unknown one), lists are bare arrays with ``X-Total-Count``, the log's next page is the ``Link`` header,
  a delete answers ``{"success": true}``.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.role_matrix_webhooks import subscription_with_delivery


def _base(personas: Personas) -> str:
    return f"/v1/projects/{personas.project_id}/webhooks"


def _create(client: FlaskClient, personas: Personas, **body: Any) -> Any:
    body = {"url": "https://hooks.example.org/in", "events": ["submission.created"], **body}
    return client.post(_base(personas), json=body, headers=personas.manager.headers)


def test_the_secret_is_shown_once(client: FlaskClient, personas: Personas) -> None:
    created = _create(client, personas, name="CRM", language="fr", payloadFormat="kobo")
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["secret"].startswith("whsec_") and body["state"] == "active"
    assert body["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}
    one = client.get(f"{_base(personas)}/{body['id']}", headers=personas.manager.headers).get_json()
    listing = client.get(_base(personas), headers=personas.manager.headers)
    listed = listing.get_json()
    assert listing.headers["X-Total-Count"] == "1" and [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in one and all("secret" not in item for item in listed)
    assert one["payloadFormat"] == "kobo" and one["language"] == "fr"
    assert {"projectId", "formId", "stateReason", "createdBy", "createdAt", "updatedAt"} <= set(one)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://example.org/x"}, "invalid_webhook_url"),
        ({"url": "https://user:pw@example.org/x"}, "invalid_webhook_url"),
        ({"url": "http://10.1.2.3/hook"}, "invalid_webhook_url"),
        ({"url": "http://127.0.0.1:8080/hook"}, "invalid_webhook_url"),
        ({"url": "http://[::1]/hook"}, "invalid_webhook_url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "invalid_webhook_url"),
        ({"url": "http://localhost/hook"}, "invalid_webhook_url"),
        ({"events": ["submission.exploded"]}, "invalid_input"),
        ({"events": []}, "invalid_input"),
        ({"formId": "no_such_form"}, "unknown_form"),
        ({"secret": "mine"}, "invalid_input"),
        ({"form_id": "no_such_form"}, "invalid_input"),
        ({"payloadFormat": "xml"}, "invalid_input"),
    ],
    ids=[
        "ftp",
        "credentials",
        "private",
        "loopback",
        "loopback-v6",
        "metadata",
        "localhost",
        "kind",
        "none",
        "form",
        "field",
        "snake-case",
        "format",
    ],
)
def test_a_bad_subscription_is_refused(
    client: FlaskClient, personas: Personas, body: dict[str, Any], code: str
) -> None:
    refused = _create(client, personas, **body)
    assert refused.status_code == 400, refused.get_json()
    assert refused.get_json()["details"]["problem"] == code
    assert client.get(_base(personas), headers=personas.manager.headers).get_json() == []


def test_an_error_names_the_wire_field(client: FlaskClient, personas: Personas) -> None:
    refused = _create(client, personas, payloadFormat="xml").get_json()
    assert list(refused["details"]["fields"]) == ["payloadFormat"]


def test_an_admin_may_allow_private_targets(app: Flask, client: FlaskClient, personas: Personas) -> None:
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    assert _create(client, personas, url="http://127.0.0.1:8080/hook").status_code == 201


def test_pause_resume_rotate_and_patch(client: FlaskClient, personas: Personas) -> None:
    created = _create(client, personas).get_json()
    url, headers = f"{_base(personas)}/{created['id']}", personas.manager.headers
    assert client.post(f"{url}/pause", headers=headers).get_json()["state"] == "paused"
    assert client.post(f"{url}/resume", headers=headers).get_json()["state"] == "active"
    rotated = client.post(f"{url}/rotate-secret", headers=headers).get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    patched = client.patch(
        url, json={"events": ["entity.created", "entity.created"], "url": "https://x.example/y"}, headers=headers
    )
    assert patched.get_json()["events"] == ["entity.created"] and patched.get_json()["url"] == "https://x.example/y"
    assert client.patch(url, json={"url": "http://192.168.1.1/"}, headers=headers).status_code == 400
    deleted = client.delete(url, headers=headers)
    assert (deleted.status_code, deleted.get_json()) == (200, {"success": True})
    assert client.get(url, headers=headers).status_code == 404


def test_the_log_and_replay(app: Flask, client: FlaskClient, personas: Personas) -> None:
    made = subscription_with_delivery(app, personas)
    url, headers = f"{_base(personas)}/{made['sub']}", personas.manager.headers
    log = client.get(f"{url}/deliveries", headers=headers)
    assert [(d["status"], d["webhookId"], d["eventId"], d["attempts"]) for d in log.get_json()] == [
        ("pending", f"msg_{made['event']}", made["event"], 0)
    ]
    assert log.headers["X-Total-Count"] == "1" and "Link" not in log.headers
    first = log.get_json()[0]
    assert first["nextAttemptAt"] is not None and first["log"] == [] and first["eventAt"] is not None
    assert {"lastStatus", "lastError", "lastResponseMs", "giveUpAt", "deliveredAt"} <= set(first)
    assert client.get(f"{url}/deliveries?status=dead", headers=headers).get_json() == []
    replayed = client.post(f"{url}/replay", json={"fromEventId": 1, "toEventId": made["event"]}, headers=headers)
    assert replayed.status_code == 202 and replayed.get_json() == {"queued": 1}
    again = client.get(f"{url}/deliveries", headers=headers).get_json()
    assert [d["replay"] for d in again] == [True, False] and {d["webhookId"] for d in again} == {f"msg_{made['event']}"}
    one = client.get(f"{url}/deliveries/{made['delivery']}", headers=headers)
    assert one.status_code == 200 and one.get_json()["type"] == "form.published"
    for bad in (
        {},
        {"eventId": 1, "fromEventId": 1},
        {"fromEventId": 1},
        {"fromEventId": 5, "toEventId": 1},
        {"event_id": made["event"]},
    ):
        assert client.post(f"{url}/replay", json=bad, headers=headers).status_code == 400, bad
    assert client.get(f"{url}/deliveries?status=lost", headers=headers).status_code == 400
    assert client.get(f"{url}/deliveries?before_id=5", headers=headers).status_code == 400


def test_the_log_pages_by_link(app: Flask, client: FlaskClient, personas: Personas) -> None:
    made = subscription_with_delivery(app, personas)
    url, headers = f"{_base(personas)}/{made['sub']}", personas.manager.headers
    for _ in range(2):
        client.post(f"{url}/replay", json={"eventId": made["event"]}, headers=headers)
    first = client.get(f"{url}/deliveries?limit=2", headers=headers)
    assert [d["replay"] for d in first.get_json()] == [True, True] and first.headers["X-Total-Count"] == "3"
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"') and "beforeId=" in link
    second = client.get(link[1 : link.index(">")], headers=headers)
    assert [d["id"] for d in second.get_json()] == [made["delivery"]] and "Link" not in second.headers
    assert second.headers["X-Total-Count"] == "3"


def test_another_projects_subscription_is_not_found(app: Flask, client: FlaskClient, personas: Personas) -> None:
    made = subscription_with_delivery(app, personas)
    other = f"/v1/projects/{personas.other_project_id}/webhooks/{made['sub']}"
    assert client.get(other, headers=personas.admin.headers).status_code == 404
    assert client.post(f"{other}/replay", json={"eventId": 1}, headers=personas.admin.headers).status_code == 404
