"""Role matrix rows for webhook subscriptions, their delivery log and replay (managers and admins only)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.role_matrix import Case, statuses

MANAGERS = ("admin", "manager")
_BASE = "/v1/projects/{pid}/webhooks"
_RULE = "/v1/projects/<int:project_id>/webhooks"
_ONE = _BASE + "/{sub}"
_ONE_RULE = _RULE + "/<int:subscription_id>"


def subscription_with_delivery(app: Flask, personas: Personas) -> dict[str, Any]:
    """A subscription of the personas' project with one queued delivery."""
    from server.db.models.webhooks import Event
    from server.services import webhook_dispatch, webhooks
    from server.store import get_store

    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    with app.app_context():
        session = get_store().sessions()
        try:
            view = webhooks.create_subscription(
                session,
                personas.project_id,
                {"url": "http://127.0.0.1:9/hook", "events": ["form.published"]},
                actor="test",
            )
            with session.begin():
                session.add(Event(project_id=personas.project_id, kind="form.published", subject="form:x", payload={}))
            webhook_dispatch.fan_out(session, webhook_dispatch.DispatchSettings())
            delivery = webhooks.list_deliveries(session, personas.project_id, view.subscription.id)[0]
            return {"sub": view.subscription.id, "delivery": delivery.delivery.id, "event": delivery.event.id}
        finally:
            session.close()


def _case(method: str, path: str, rule: str, ok: int, **kwargs: Any) -> Case:
    return Case(method, path, rule, statuses(ok, allowed=MANAGERS), setup="subscription_with_delivery", **kwargs)


CASES = [
    _case("GET", _BASE, _RULE, 200),
    _case("POST", _BASE, _RULE, 201, json={"url": "https://hooks.example.org/{persona}", "events": ["form.published"]}),
    _case("GET", _ONE, _ONE_RULE, 200),
    _case("PATCH", _ONE, _ONE_RULE, 200, json={"name": "CRM {persona}"}),
    _case("DELETE", _ONE, _ONE_RULE, 200),
    _case("POST", _ONE + "/pause", _ONE_RULE + "/<any(pause, resume):action>", 200),
    _case("POST", _ONE + "/resume", _ONE_RULE + "/<any(pause, resume):action>", 200),
    _case("POST", _ONE + "/rotate-secret", _ONE_RULE + "/rotate-secret", 200),
    _case("GET", _ONE + "/deliveries", _ONE_RULE + "/deliveries", 200),
    _case("GET", _ONE + "/deliveries?status=dead", _ONE_RULE + "/deliveries", 200),
    _case("GET", _ONE + "/deliveries/{delivery}", _ONE_RULE + "/deliveries/<int:delivery_id>", 200),
    _case("POST", _ONE + "/replay", _ONE_RULE + "/replay", 202, json={"eventId": "{event}"}),
]
