"""The console's webhook subscriptions page, without a browser, on both stores, with a real receiver.

Rules:
- W1 subscribing from the console is ``create_subscription``: the answer (201) shows the secret this once,
  a later page never; a refused URL (a private address) or no event is a 400 naming it, nothing stored;
- W2 a subscription's page shows each delivery's state, attempts, last answer and error, and its dead
  letters; "Send again" queues the event again (a replay with the same webhook-id);
- W3 settings change, pause and resume, and delete go through the service.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bench.webhook_receiver import Receiver
from tests.conftest import Personas
from tests.server.console.test_console_roles import sign_in


@pytest.fixture
def manager(app: Flask, client: FlaskClient) -> str:
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    return sign_in(client, "manager-persona")


@pytest.fixture
def failing_receiver() -> Iterator[Receiver]:
    found = Receiver(plan=lambda _headers: ("status", 500)).start()
    yield found
    found.stop()


def _subscriptions(app: Flask, personas: Personas) -> list[object]:
    from server.services import webhooks as svc
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        try:
            return list(svc.list_subscriptions(session, personas.project_id))
        finally:
            session.close()


def _base(personas: Personas) -> str:
    return f"/projects/{personas.project_id}/webhooks"


def test_w1_subscribe_shows_the_secret_once(app: Flask, client: FlaskClient, personas: Personas, manager: str) -> None:
    data = {"csrf_token": manager, "url": "https://crm.example.org/hook", "name": "CRM", "events": ["form.published"]}
    response = client.post(_base(personas), data=data)
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    secret = re.search(r'<code dir="ltr" class="url" id="secret">([^<]+)</code>', response.get_data(as_text=True))
    assert secret is not None and secret.group(1).startswith("whsec_")
    (view,) = _subscriptions(app, personas)
    page = client.get(f"{_base(personas)}/{view.subscription.id}").get_data(as_text=True)  # type: ignore[attr-defined]
    assert secret.group(1) not in page and "CRM" in page
    assert "crm.example.org" in client.get(_base(personas)).get_data(as_text=True)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"url": "http://192.168.1.10/hook"}, "cannot be used"),
        ({"url": "ftp://example.org"}, "https://"),
        ({"events": []}, 'id="f-events-error"'),
    ],
    ids=["private-address", "not-http", "no-event"],
)
def test_w1_a_refused_subscription_stores_nothing(
    app: Flask, client: FlaskClient, personas: Personas, manager: str, change: dict[str, object], words: str
) -> None:
    data = {"csrf_token": manager, "url": "https://crm.example.org/hook", "events": ["form.published"], **change}
    response = client.post(_base(personas), data=data)
    assert response.status_code == 400
    assert words in response.get_data(as_text=True)
    assert _subscriptions(app, personas) == []


def test_w2_deliveries_dead_letters_and_send_again(
    app: Flask, client: FlaskClient, personas: Personas, manager: str, failing_receiver: Receiver
) -> None:
    from server.db.transaction import transaction
    from server.services import webhook_dispatch as dispatch
    from server.services import webhooks as svc
    from server.services.outbox import record_event
    from server.store import get_store

    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    # No time to retry: the first failure makes a dead letter.
    settings = dispatch.DispatchSettings(retry_for=0.0, allow_private=True, timeout=2.0)
    with app.app_context():
        session = get_store().sessions()
        try:
            sub = svc.create_subscription(
                session, personas.project_id, {"url": failing_receiver.url, "events": ["form.published"]}, actor="t"
            ).subscription.id
            with transaction(session):
                record_event(session, personas.project_id, "form.published", "form:benef", {"n": 1}, form_id="benef")
            dispatch.fan_out(session, settings)
            dispatch.deliver_some(session, "test", settings, random.Random(1))
            (delivery,) = svc.list_deliveries(session, personas.project_id, sub)
        finally:
            session.close()
    assert delivery.delivery.status == "dead"
    page = client.get(f"{_base(personas)}/{sub}?status=dead").get_data(as_text=True)
    table = page.split('id="deliveries"', 1)[1].split("</table>", 1)[0]
    assert f"msg_{delivery.event.id}" in table and "HTTP 500" in table
    assert re.search(r'class="num">1</td>', table)  # one attempt
    assert "lettre morte" in table.lower()
    assert "<dd>1</dd>" in page.split('class="facts"', 1)[1].split("</dl>", 1)[0]  # dead letters: 1
    response = client.post(
        f"{_base(personas)}/{sub}/replay", data={"csrf_token": manager, "event_id": str(delivery.event.id)}
    )
    assert response.status_code == 302
    with app.app_context():
        session = get_store().sessions()
        try:
            replayed = svc.list_deliveries(session, personas.project_id, sub, status="pending")
        finally:
            session.close()
    assert [(d.event.id, d.delivery.replay) for d in replayed] == [(delivery.event.id, True)]
    bad = client.post(f"{_base(personas)}/{sub}/replay", data={"csrf_token": manager, "from_event_id": "x"})
    assert bad.status_code == 400


def test_w3_edit_pause_resume_delete(app: Flask, client: FlaskClient, personas: Personas, manager: str) -> None:
    data = {"csrf_token": manager, "url": "https://crm.example.org/hook", "events": ["form.published"]}
    assert client.post(_base(personas), data=data).status_code == 201
    (view,) = _subscriptions(app, personas)
    one = f"{_base(personas)}/{view.subscription.id}"  # type: ignore[attr-defined]
    edit = {**data, "name": "Entrepôt", "events": ["submission.created", "submission.updated"]}
    assert client.post(one, data=edit).status_code == 302
    (view,) = _subscriptions(app, personas)
    assert view.subscription.name == "Entrepôt"  # type: ignore[attr-defined]
    assert view.subscription.events == ["submission.created", "submission.updated"]  # type: ignore[attr-defined]
    assert client.post(f"{one}/pause", data={"csrf_token": manager}).status_code == 302
    assert _subscriptions(app, personas)[0].subscription.state == "paused"  # type: ignore[attr-defined]
    assert client.post(f"{one}/resume", data={"csrf_token": manager}).status_code == 302
    assert _subscriptions(app, personas)[0].subscription.state == "active"  # type: ignore[attr-defined]
    rotated = client.post(f"{one}/rotate-secret", data={"csrf_token": manager})
    assert rotated.status_code == 200 and 'id="secret">whsec_' in rotated.get_data(as_text=True)
    assert client.post(f"{one}/delete", data={"csrf_token": manager}).status_code == 302
    assert _subscriptions(app, personas) == []
    assert client.get(one).status_code == 404
