"""The dispatcher: signed messages, retries with backoff, dead letters, 410, order, leases, guarded requests.

Rules:
- D1 every message carries ``webhook-id`` (the event's, at every attempt), ``webhook-timestamp`` and a
  ``webhook-signature`` that the ``standardwebhooks`` library verifies; after a rotation both secrets sign.
- D2 the body is ``{type, timestamp, data, links}``: the record, labels in the subscription's language,
  links to the attachments; ``payload_format=kobo`` gives KoboToolbox's flat shape.
- D3 any failure (connection, timeout, 3xx, 4xx except 410, 5xx) is retried later with a backoff in
  ``[ceiling/2, ceiling]``; past ``give_up_at`` the delivery is dead and the queue moves on; ``410`` disables
  the subscription.
- D4 a subscription's next delivery waits for the previous one (delivered or dead).
- D5 a lease is exclusive until it expires; a dispatcher whose lease was taken over cannot record an outcome.
- D6 requests go only to public addresses unless allowed, follow no redirect, and time out as a whole.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from bench.webhook_receiver import Receiver
from server.db.base import utcnow
from server.db.models.webhooks import WebhookDelivery, WebhookSubscription
from server.db.queries import webhooks as q
from server.db.transaction import transaction
from server.services import webhook_dispatch as dispatch
from server.services import webhook_transport as transport
from server.services import webhooks as hooks
from server.services.outbox import record_event
from server.store import get_store
from tests.conftest import Personas

SETTINGS = dispatch.DispatchSettings(backoff_base=10.0, backoff_max=100.0, allow_private=True, timeout=2.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    yield found
    found.stop()


@pytest.fixture
def store(app: Flask) -> Iterator[Session]:
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    with app.app_context():
        session = get_store().sessions()
        yield session
        session.close()


def _subscribe(session: Session, project_id: int, url: str, **extra: Any) -> tuple[int, str]:
    fields = {"url": url, "events": ["form.published"], **extra}
    view = hooks.create_subscription(session, project_id, fields, actor="test")
    assert view.secret is not None
    return view.subscription.id, view.secret


def _events(session: Session, project_id: int, count: int) -> None:
    with transaction(session):
        for n in range(count):
            record_event(session, project_id, "form.published", f"form:f{n}", {"n": n}, form_id=f"f{n}")
    dispatch.fan_out(session, SETTINGS)


def _deliveries(session: Session, subscription_id: int) -> list[WebhookDelivery]:
    session.commit()
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.id)
        )
    )


def _send_all(session: Session, owner: str = "test") -> int:
    return dispatch.deliver_some(session, owner, SETTINGS, random.Random(1))


def test_messages_are_signed_and_verify(store: Session, personas: Personas, receiver: Receiver) -> None:
    sub, secret = _subscribe(store, personas.project_id, receiver.url)
    _events(store, personas.project_id, 1)
    assert _send_all(store) == 1
    request = receiver.requests[0]
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "form.published" and payload["data"]["n"] == 0
    assert request.headers["webhook-id"] == f"msg_{payload['event_id']}"
    rotated = hooks.rotate_secret(store, personas.project_id, sub, actor="test").secret
    assert rotated is not None
    _events(store, personas.project_id, 1)
    assert _send_all(store) == 1
    later = receiver.requests[1]
    # During the grace period both the old and the new secret verify the same message.
    assert Webhook(secret).verify(later.body, later.headers)["data"]["n"] == 0
    assert Webhook(rotated).verify(later.body, later.headers)["data"]["n"] == 0
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(secret).verify(later.body + b" ", later.headers)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (transport.Answer(200, None, 5), "delivered"),
        (transport.Answer(204, None, 5), "delivered"),
        (transport.Answer(500, None, 5), "retry"),
        (transport.Answer(503, None, 5), "retry"),
        (transport.Answer(429, None, 5, retry_after=50.0), "retry"),
        (transport.Answer(404, None, 5), "retry"),
        (transport.Answer(400, None, 5), "retry"),
        (transport.Answer(302, None, 5), "retry"),
        (transport.Answer(None, "ConnectionRefusedError: refused", 5), "retry"),
        (transport.Answer(None, "timeout", 2000), "retry"),
        (transport.Answer(410, None, 5), "gone"),
    ],
    ids=["200", "204", "500", "503", "429", "404", "400", "302", "refused", "timeout", "410"],
)
def test_what_an_answer_does(store: Session, personas: Personas, answer: transport.Answer, outcome: str) -> None:
    sub, _ = _subscribe(store, personas.project_id, "http://127.0.0.1:9/hook")
    _events(store, personas.project_id, 2)
    before = utcnow()
    sent = dispatch.deliver_some(store, "t", SETTINGS, random.Random(1), send=lambda *a, **k: answer)
    first, second = _deliveries(store, sub)
    state = store.get(WebhookSubscription, sub)
    assert state is not None
    store.refresh(state)
    if outcome == "delivered":
        assert sent == 2 and first.status == second.status == "delivered"
    elif outcome == "gone":
        assert sent == 1 and state.state == "disabled" and first.status == "pending"
    else:
        # The head waits for its retry; the next one was not sent (order).
        assert sent == 1 and first.status == "pending" and first.attempts == 1 and second.attempts == 0
        wait = (first.next_attempt_at - before).total_seconds()
        assert (answer.retry_after or SETTINGS.backoff_base / 2) - 1 <= wait <= max(answer.retry_after or 0, 10) + 1
        assert first.last_status == answer.status and first.last_error == answer.error
    log = hooks.get_delivery(store, personas.project_id, sub, first.id).attempts
    assert [(a.status_code, a.error) for a in log] == [(answer.status, answer.error)]


def test_past_its_retry_time_a_delivery_is_dead_and_the_queue_moves_on(store: Session, personas: Personas) -> None:
    sub, _ = _subscribe(store, personas.project_id, "http://127.0.0.1:9/hook")
    _events(store, personas.project_id, 2)
    with transaction(store):
        store.execute(update(WebhookDelivery).values(give_up_at=utcnow() + timedelta(seconds=1)))
    answers = iter([transport.Answer(500, None, 1), transport.Answer(200, None, 1)])
    assert dispatch.deliver_some(store, "t", SETTINGS, random.Random(1), send=lambda *a, **k: next(answers)) == 2
    assert [d.status for d in _deliveries(store, sub)] == ["dead", "delivered"]
    dead = hooks.list_deliveries(store, personas.project_id, sub, status="dead")
    assert [d.delivery.last_status for d in dead] == [500]


def test_a_lease_is_exclusive_until_it_expires(store: Session, personas: Personas) -> None:
    sub, _ = _subscribe(store, personas.project_id, "http://127.0.0.1:9/hook")
    _events(store, personas.project_id, 1)
    now = utcnow()
    with transaction(store):
        assert q.claim_subscription(store, "A", now, now + timedelta(seconds=60)) == sub
    with transaction(store):
        assert q.claim_subscription(store, "B", now, now + timedelta(seconds=60)) is None
        # A minute later A's lease has expired: B takes the queue, and A can no longer record anything.
        later = now + timedelta(seconds=61)
        assert q.claim_subscription(store, "B", later, later + timedelta(seconds=60)) == sub
    head = _deliveries(store, sub)[0]
    with transaction(store):
        assert not q.finish_attempt(store, head.id, sub, "A", {"status": "delivered"})
        assert q.finish_attempt(store, head.id, sub, "B", {"status": "delivered"})


def test_a_paused_subscription_queues_and_resumes(store: Session, personas: Personas) -> None:
    sub, _ = _subscribe(store, personas.project_id, "http://127.0.0.1:9/hook")
    hooks.set_paused(store, personas.project_id, sub, paused=True, actor="t", retry_for=60)
    _events(store, personas.project_id, 1)
    ok = transport.Answer(200, None, 1)
    assert dispatch.deliver_some(store, "t", SETTINGS, random.Random(1), send=lambda *a, **k: ok) == 0
    hooks.set_paused(store, personas.project_id, sub, paused=False, actor="t", retry_for=60)
    assert dispatch.deliver_some(store, "t", SETTINGS, random.Random(1), send=lambda *a, **k: ok) == 1


@pytest.mark.parametrize("attempts", [1, 2, 5, 30], ids=["first", "second", "fifth", "capped"])
def test_backoff_is_exponential_capped_and_jittered(attempts: int) -> None:
    ceiling = min(SETTINGS.backoff_max, SETTINGS.backoff_base * 2 ** (attempts - 1))
    delays = {dispatch.backoff_delay(attempts, SETTINGS, random.Random(seed)) for seed in range(20)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:{port}/hook", False),
        ("http://localhost:{port}/hook", False),
        ("http://[::ffff:127.0.0.1]:{port}/hook", False),
    ],
    ids=["loopback", "localhost-name", "v4-mapped"],
)
def test_private_targets_are_refused_unless_allowed(receiver: Receiver, url: str, allowed: bool) -> None:
    answer = transport.post(url.format(port=receiver.port), b"{}", {}, timeout=1.0, allow_private=allowed)
    assert answer.status is None and answer.error is not None and answer.error.startswith("refused")
    assert receiver.requests == []


def test_no_redirect_is_followed_and_slow_receivers_time_out(receiver: Receiver) -> None:
    receiver.plan = lambda _id: ("status", 302)
    assert transport.post(receiver.url, b"{}", {}, timeout=1.0, allow_private=True).status == 302
    assert len(receiver.requests) == 1  # the Location was not visited
    receiver.plan = lambda _id: ("sleep", 0.5)
    assert transport.post(receiver.url, b"{}", {}, timeout=0.2, allow_private=True).error == "timeout"
    receiver.plan = lambda _id: ("drop", None)
    dropped = transport.post(receiver.url, b"{}", {}, timeout=1.0, allow_private=True)
    assert dropped.status is None and dropped.error is not None


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.20", "169.254.169.254", "::1", "fc00::1", "0.0.0.0"])
def test_non_public_addresses(address: str) -> None:
    assert not transport.is_public(address)


def test_public_addresses() -> None:
    assert transport.is_public("93.184.216.34") and transport.is_public("2606:4700::1111")


def test_a_submission_payload_has_its_record_labels_and_attachment_links(
    app: Flask, store: Session, personas: Personas, receiver: Receiver
) -> None:
    from server.auth import Principal
    from server.services import submissions as svc
    from tests.server.fixtures_forms import COOP_XLSX, publish_form
    from tests.server.test_submissions_support import example_submission

    publish_form(app, personas.project_id, COOP_XLSX)
    fields = {"events": ["submission.created"], "language": "ar"}
    _, secret = _subscribe(store, personas.project_id, receiver.url, **fields)
    _, kobo_secret = _subscribe(store, personas.project_id, receiver.url + "/kobo", payload_format="kobo", **fields)
    principal = Principal("device", personas.device.id, "phone", project_id=personas.project_id, role="coach")
    xml = example_submission("coop_diagnostic", "01_")
    result = svc.ingest_submission(
        store, project_id=personas.project_id, xml=xml, files={}, principal=principal, device_id="d", source="openrosa"
    )
    assert result.submission_id is not None
    dispatch.fan_out(store, SETTINGS)
    while _send_all(store):
        pass
    by_path = {r.path: r for r in receiver.requests}
    body = Webhook(secret).verify(by_path["/hook"].body, by_path["/hook"].headers)
    assert body["type"] == "submission.created" and body["data"]["instance_id"] == result.instance_id
    assert body["data"]["record"]["identification"]["coop_name"]
    assert body["data"]["labels"]["questions"]["identification/coop_name"] == "اسم التعاونية"
    assert body["links"]["submission"].endswith(f"/submissions/{result.instance_id.replace(':', '%3A')}")
    assert all(link["url"].startswith(body["links"]["submission"]) for link in body["links"]["attachments"])
    flat = Webhook(kobo_secret).verify(by_path["/hook/kobo"].body, by_path["/hook/kobo"].headers)
    assert flat["meta/instanceID"] == result.instance_id and flat["_xform_id_string"] == "coop_diagnostic"
    assert flat["identification/coop_name"] == body["data"]["record"]["identification"]["coop_name"]
    assert json.loads(by_path["/hook"].body) == body


def test_a_worker_survives_a_database_error(store: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    calls: list[str] = []
    real = dispatch.fan_out

    def flaky(session: Session, settings: dispatch.DispatchSettings) -> int:
        calls.append("fan_out")
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return real(session, settings)

    monkeypatch.setattr(dispatch, "fan_out", flaky)
    quick = dispatch.DispatchSettings(poll=0.001)
    dispatch.run(get_store().sessions, "t", quick, threading.Event(), workers=1, once=True)
    assert calls == ["fan_out", "fan_out"]


def test_a_fan_out_in_another_schema_never_blocks_this_one(store: Session, personas: Personas, backend: Any) -> None:
    """Advisory locks are database-wide: the fan-out's key is the store's own (its schema's)."""
    if backend.name != "postgresql":
        pytest.skip(reason="advisory locks exist on PostgreSQL only; SQLite's one writer is its lock")
    import psycopg

    from tests.conftest import POSTGRES_URL, create_postgres_schema, drop_postgres_schema

    assert POSTGRES_URL
    schema, _ = create_postgres_schema(POSTGRES_URL, prefix="fs_other_store")
    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(plain) as other:  # another store's dispatcher, mid fan-out, holding its lock
            other.execute(f'SET search_path TO "{schema}"')
            assert other.execute(q._FANOUT_LOCK_SQL.text).fetchone() == (True,)
            subscription, _ = _subscribe(store, personas.project_id, "http://127.0.0.1:9/hook")
            _events(store, personas.project_id, 1)
            assert len(_deliveries(store, subscription)) == 1
            other.rollback()
    finally:
        drop_postgres_schema(POSTGRES_URL, schema)


def test_chain_and_entity_locks_are_the_stores_own(backend: Any) -> None:
    """The same chain or entity key in two stores of one database names two different locks."""
    if backend.name != "postgresql":
        pytest.skip(reason="advisory locks exist on PostgreSQL only; SQLite's one writer is its lock")
    import psycopg

    from server.db.queries import submissions as sq
    from server.db.queries import sync as syncq
    from tests.conftest import POSTGRES_URL, create_postgres_schema, drop_postgres_schema

    assert POSTGRES_URL
    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    key = sq.chain_lock_key(1, "coop_diagnostic", "uuid:the-same-instance")
    made = [create_postgres_schema(POSTGRES_URL, prefix=f"fs_store_{n}")[0] for n in (1, 2)]
    try:
        with psycopg.connect(plain) as first, psycopg.connect(plain) as second:
            first.execute(f'SET search_path TO "{made[0]}"')
            second.execute(f'SET search_path TO "{made[1]}"')
            first.execute(sq._LOCK_IN_ORDER.text.replace(":keys", "%s"), ([key],))
            try_same = syncq._LOCK_ONE.text.replace("pg_advisory_xact_lock", "pg_try_advisory_xact_lock")
            try_same = try_same.replace(":k", "%s")
            assert second.execute(try_same, (key,)).fetchone() == (True,)  # another store: free
            with psycopg.connect(plain) as third:  # the first store again: taken
                third.execute(f'SET search_path TO "{made[0]}"')
                assert third.execute(try_same, (key,)).fetchone() == (False,)
    finally:
        for schema in made:
            drop_postgres_schema(POSTGRES_URL, schema)
