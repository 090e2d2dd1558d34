"""Metrics and health checks (issue 21, "Metrics").

Rules:
- M1 ``/metrics`` is Prometheus text for an admin; 401 anonymous, 403 for others (role matrix), open to
  anyone when ``METRICS_PUBLIC`` is set.
- M2 requests are labelled by URL rule, never by raw path: a device token never appears in a scrape.
- M3 OpenRosa submissions and pushed sync items are counted by outcome; conflicts by kind.
- M4 store gauges (quarantine size, entities in conflict, soft-deleted submissions) are read at scrape time.
- M4b the webhook dispatcher's backlog (events not fanned out, pending deliveries by subscription state)
  and the age of its oldest item are gauges read at scrape time.
- M5 ``/healthz/live`` answers without a database; ``/healthz/ready`` is 503 when the store is unreachable.
- M6 under ``fieldsync serve`` (gunicorn, multiprocess mode) a scrape sums every worker's requests: in
  ``test_two_hosts.py``, whose host A runs two workers.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.sync import HeldItem
from server.db.models.webhooks import Event, WebhookDelivery, WebhookSubscription
from tests.conftest import Personas
from tests.server.fixtures_forms import published_coop  # noqa: F401  (fixture)
from tests.server.test_submissions_support import example_submission, post_submission

REPO = Path(__file__).resolve().parents[2]
SERVE = "from server.cli import main; main()"  # the ``fieldsync`` entry point, run by this interpreter


def _value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of a scrape (0 when absent); labels must all match."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def _scrape(client: FlaskClient, personas: Personas) -> str:
    response = client.get("/metrics", headers=personas.admin.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


@pytest.mark.parametrize("public", [False, True], ids=["protected", "public"])
def test_metrics_need_an_admin_unless_public(app: Flask, client: FlaskClient, personas: Personas, public: bool) -> None:
    app.config["METRICS_PUBLIC"] = public
    assert client.get("/metrics").status_code == (200 if public else 401)
    assert client.get("/metrics", headers=personas.coach.headers).status_code == (200 if public else 403)


@pytest.mark.usefixtures("published_coop")
def test_submissions_are_counted_by_route_and_outcome_without_the_token(
    client: FlaskClient, personas: Personas
) -> None:
    before = _scrape(client, personas)
    xml = example_submission("coop_diagnostic", "01")
    for _ in range(2):  # created, then the identical resend
        response = post_submission(client, personas.collect_prefix, xml, {"1796200361318.jpg": b"jpeg"})
        assert response.status_code == 201
    after = _scrape(client, personas)
    rule = "/v1/key/<token>/projects/<int:project_id>/submission"
    count = "fieldsync_http_request_duration_seconds_count"
    assert _value(after, count, route=rule, status="201") - _value(before, count, route=rule, status="201") == 2
    for outcome in ("created", "duplicate"):
        delta = _value(after, "fieldsync_submissions_total", source="openrosa", outcome=outcome) - _value(
            before, "fieldsync_submissions_total", source="openrosa", outcome=outcome
        )
        assert delta == 1, outcome
    assert personas.device.token not in after


def test_sync_items_are_counted_by_kind_and_outcome(client: FlaskClient, personas: Personas) -> None:
    before = _scrape(client, personas)
    body = {"protocol": "fieldsync/2", "deviceId": "d1", "batchId": "b-metrics", "items": [{"type": "entity"}]}
    headers = {**personas.device.headers, "Idempotency-Key": "b-metrics"}
    response = client.post(f"/v1/projects/{personas.project_id}/sync/push", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    status = response.get_json()["results"][0]["status"]
    after = _scrape(client, personas)
    name = "fieldsync_sync_items_total"
    assert _value(after, name, kind="entity", outcome=status) - _value(before, name, kind="entity", outcome=status) == 1


def test_store_gauges_are_read_at_scrape_time(client: FlaskClient, personas: Personas, session: Session) -> None:
    before = _value(_scrape(client, personas), "fieldsync_quarantine_items", outcome="quarantined")
    session.add(
        HeldItem(
            project_id=personas.project_id,
            fingerprint="f" * 64,
            kind="entity",
            raw={},
            outcome="quarantined",
            reason="unknown_entity_list",
        )
    )
    session.commit()
    after = _scrape(client, personas)
    assert _value(after, "fieldsync_quarantine_items", outcome="quarantined") == before + 1
    assert _value(after, "fieldsync_store_up") == 1


def test_webhook_backlog_and_its_age_are_gauges(client: FlaskClient, personas: Personas, session: Session) -> None:
    before = _scrape(client, personas)
    assert _value(before, "fieldsync_webhook_oldest_pending_seconds", stage="delivery") == 0
    an_hour_ago = utcnow() - timedelta(hours=1)
    subscription = WebhookSubscription(
        project_id=personas.project_id,
        url="http://127.0.0.1:9/hook",
        events=["submission.*"],
        secret="s" * 32,
        created_by="test",
    )
    waiting = Event(
        project_id=personas.project_id, kind="submission.created", subject="uuid:a", payload={}, created_at=an_hour_ago
    )
    sent = Event(
        project_id=personas.project_id,
        kind="submission.created",
        subject="uuid:b",
        payload={},
        created_at=an_hour_ago,
        fanned_out=True,
    )
    session.add_all([subscription, waiting, sent])
    session.flush()
    session.add_all(
        [
            WebhookDelivery(
                subscription_id=subscription.id,
                event_id=sent.id,
                give_up_at=utcnow(),
                created_at=an_hour_ago - timedelta(minutes=30),
            ),
            WebhookDelivery(
                subscription_id=subscription.id,
                event_id=sent.id,
                give_up_at=utcnow(),
                status="delivered",
                created_at=an_hour_ago - timedelta(days=3),
            ),
        ]
    )
    session.commit()
    after = _scrape(client, personas)
    backlog = "fieldsync_webhook_backlog"
    assert _value(after, backlog, stage="fan_out") == _value(before, backlog, stage="fan_out") + 1
    assert _value(after, backlog, stage="delivery", subscription_state="active") == 1  # the delivered one is not
    oldest = "fieldsync_webhook_oldest_pending_seconds"
    assert 3600 <= _value(after, oldest, stage="fan_out") < 3600 + 600
    assert 5400 <= _value(after, oldest, stage="delivery") < 5400 + 600


def test_liveness_needs_no_database_and_readiness_does(tmp_path: Path) -> None:
    from server import create_app

    app = create_app(
        {
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=2",  # nothing listens
            "VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "x",
            "LOG_REQUESTS": False,
        }
    )
    client = app.test_client()
    assert client.get("/healthz/live").status_code == 200
    ready = client.get("/healthz/ready")
    assert ready.status_code == 503
    assert ready.get_json()["database"] == "unreachable"
    assert client.get("/healthz").status_code == 503
