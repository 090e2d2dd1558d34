"""The webhook dispatcher: fan committed events out to deliveries, then send each subscription's queue in order.

Safe to run several at once, on several hosts, against one database:

- **Fan-out** (``fan_out``) turns committed outbox events into one delivery per matching subscription,
  one dispatcher at a time (a transaction-scoped advisory lock on PostgreSQL; SQLite has one
  writer), so delivery ids follow the order in which events became visible: commit order (see
  ``q.unqueued_events``).
- **Claim** (``deliver_some``): a dispatcher leases one subscription whose oldest pending delivery
  is due (``FOR UPDATE SKIP LOCKED`` and a compare-and-set on the lease columns, with an expiry).
  Only the lease holder sends, and only the oldest pending delivery: events of one subscription go
  out in order, the next waiting until the previous is delivered or dead. A dispatcher killed
  mid-delivery leaves its lease to expire; another then sends the same message again, with the same
  ``webhook-id`` (at least once). Every write of an outcome checks the lease is still ours.
- **Retries**: any failure (connection, timeout, refused target, 3xx, 4xx except 410, 5xx) is
  retried with exponential backoff and jitter (``Retry-After`` is honoured as a minimum) until the
  delivery's ``give_up_at`` (``WEBHOOKS_RETRY_FOR`` after it was queued, 3 days by default), when it
  becomes a dead letter and the queue moves on. ``410 Gone`` disables the subscription (its queue
  stays, and is sent again when a manager resumes it).

No database transaction is held open while a request is in flight.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription
from server.db.queries import webhooks as q
from server.db.transaction import transaction
from server.services import webhook_transport as transport
from server.services.webhook_payloads import render
from server.services.webhook_signing import message_id, signed_headers

log = logging.getLogger("fieldsync.webhooks")


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """How the dispatcher retries, waits and leases (from the app's ``WEBHOOKS_*`` configuration)."""

    retry_for: float = 3 * 24 * 3600.0
    timeout: float = 10.0
    backoff_base: float = 5.0
    backoff_max: float = 3600.0
    lease: float = 60.0
    poll: float = 1.0
    allow_private: bool = False
    base_url: str = "http://127.0.0.1:5000"
    fanout_batch: int = 1000
    per_claim: int = 50  # deliveries sent under one lease before the subscription's turn passes

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DispatchSettings:
        """Read the ``WEBHOOKS_*`` keys of an app's configuration."""
        return cls(
            retry_for=float(config["WEBHOOKS_RETRY_FOR"]),
            timeout=float(config["WEBHOOKS_TIMEOUT"]),
            backoff_base=float(config["WEBHOOKS_BACKOFF_BASE"]),
            backoff_max=float(config["WEBHOOKS_BACKOFF_MAX"]),
            lease=float(config["WEBHOOKS_LEASE"]),
            poll=float(config["WEBHOOKS_POLL"]),
            allow_private=bool(config["WEBHOOKS_ALLOW_PRIVATE"]),
            base_url=str(config.get("PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/"),
        )


def backoff_delay(attempts: int, settings: DispatchSettings, rng: random.Random) -> float:
    """Seconds before the next attempt after ``attempts`` failures: exponential, capped, "equal jitter".

    Half the delay is fixed and half random, so receivers that come back are not hit by every
    dispatcher's retries at the same instant, yet no retry comes sooner than half the backoff.
    """
    ceiling = min(settings.backoff_max, settings.backoff_base * 2 ** max(0, attempts - 1))
    return ceiling / 2 + rng.random() * ceiling / 2


# ---------------------------------------------------------------------------------------------------
# Fan-out


def fan_out(session: Session, settings: DispatchSettings) -> int:
    """Queue a delivery per matching subscription for the oldest unqueued events; return how many were taken."""
    with transaction(session):
        if not q.lock_fanout(session):
            return 0  # another dispatcher is fanning out right now
        events = q.unqueued_events(session, settings.fanout_batch)
        if not events:
            return 0
        by_project: dict[int, list[WebhookSubscription]] = {}
        for subscription in q.collecting_subscriptions(session, [e[1] for e in events]):
            by_project.setdefault(subscription.project_id, []).append(subscription)
        now = utcnow()
        give_up = now + timedelta(seconds=settings.retry_for)
        rows = [
            q.delivery_row(subscription.id, event_id, now, give_up)
            for event_id, project_id, kind, form_id in events
            for subscription in by_project.get(project_id, ())
            if q.subscription_wants(subscription, kind, form_id)
        ]
        if rows:
            # One multi-row INSERT, rows in event order: delivery ids follow the fan-out order.
            session.execute(insert(WebhookDelivery), rows)
        q.mark_fanned_out(session, [e[0] for e in events])
    return len(events)


# ---------------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True, slots=True)
class _Message:
    delivery_id: int
    url: str
    body: bytes
    keys: tuple[str, ...]
    message_id: str
    attempts: int
    give_up_at: datetime


def _due_messages(session: Session, subscription_id: int, now: datetime, base_url: str, limit: int) -> list[_Message]:
    """The subscription's next pending deliveries in order, rendered, up to the first that is not due yet."""
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.state != "active":
        return []
    keys = [subscription.secret]
    if subscription.previous_secret and subscription.previous_secret_until and subscription.previous_secret_until > now:
        keys.append(subscription.previous_secret)
    messages = []
    for delivery, event in q.pending_deliveries(session, subscription_id, limit):
        if delivery.next_attempt_at > now:
            break  # the queue waits for this one's retry time
        messages.append(
            _Message(
                delivery.id,
                subscription.url,
                render(session, subscription, event, base_url),
                tuple(keys),
                message_id(event.id),
                delivery.attempts,
                delivery.give_up_at,
            )
        )
    return messages


def _outcome(answer: transport.Answer) -> str:
    """``delivered`` (2xx), ``gone`` (410: the receiver asks never to be called again) or ``retry``."""
    if answer.status is not None and 200 <= answer.status < 300:
        return "delivered"
    if answer.status == 410:
        return "gone"
    return "retry"


def _record(
    session: Session,
    subscription_id: int,
    owner: str,
    message: _Message,
    answer: transport.Answer,
    settings: DispatchSettings,
    rng: random.Random,
) -> bool:
    """Write an attempt's outcome (if the lease is still ours); ``True`` when the queue may go on."""
    now = utcnow()
    outcome = _outcome(answer)
    common = {"last_status": answer.status, "last_error": answer.error, "last_response_ms": answer.elapsed_ms}
    if outcome == "delivered":
        values = {**common, "status": "delivered", "delivered_at": now}
    elif outcome == "gone":
        values = {**common, "next_attempt_at": now}
    else:
        delay = max(
            backoff_delay(message.attempts + 1, settings, rng), min(answer.retry_after or 0, settings.backoff_max)
        )
        retry_at = now + timedelta(seconds=delay)
        dead = retry_at > message.give_up_at
        values = {**common, "status": "dead"} if dead else {**common, "next_attempt_at": retry_at}
    renew_until = now + timedelta(seconds=settings.lease)
    go_on = outcome == "delivered" or values.get("status") == "dead"
    if outcome != "gone" and session.get_bind().dialect.name == "postgresql":
        with transaction(session):
            recorded, renewed = q.record_outcome_pg(
                session,
                {
                    "delivery_id": message.delivery_id,
                    "subscription_id": subscription_id,
                    "owner": owner,
                    "at": now,
                    "status": values.get("status", "pending"),
                    "delivered_at": values.get("delivered_at"),
                    "next_attempt_at": values.get("next_attempt_at"),
                    "renew": go_on,
                    "lease_until": renew_until,
                    **common,
                },
            )
        return recorded and renewed
    with transaction(session):
        q.commit_without_waiting_for_disk(session)
        if not q.finish_attempt(session, message.delivery_id, subscription_id, owner, values):
            return False  # our lease ran out and another dispatcher took the queue: it decides now
        session.add(
            WebhookAttempt(
                delivery_id=message.delivery_id,
                at=now,
                status_code=answer.status,
                error=answer.error,
                response_ms=answer.elapsed_ms,
                dispatcher=owner,
            )
        )
        if outcome == "gone":
            subscription = session.get(WebhookSubscription, subscription_id)
            assert subscription is not None
            subscription.state = "disabled"
            subscription.state_reason = "the receiver answered 410 Gone"
            subscription.updated_at = now
            log.warning("webhook subscription %s disabled: its receiver answered 410 Gone", subscription_id)
            return False
        if go_on:
            return q.renew_lease(session, subscription_id, owner, renew_until)
    return False  # the head waits for its retry time


def deliver_some(
    session: Session,
    owner: str,
    settings: DispatchSettings,
    rng: random.Random,
    send: Callable[..., transport.Answer] = transport.post,
) -> int:
    """Claim one subscription whose head is due and send its queue in order; return the attempts made (0: none due)."""
    now = utcnow()
    with transaction(session):
        subscription_id = q.claim_subscription(session, owner, now, now + timedelta(seconds=settings.lease))
    if subscription_id is None:
        return 0
    attempts = 0
    try:
        going = True
        while going and attempts < settings.per_claim:
            # The next few deliveries are read in one query; each is still recorded with a compare-and-set.
            with transaction(session):
                batch = _due_messages(
                    session, subscription_id, utcnow(), settings.base_url, min(20, settings.per_claim - attempts)
                )
            if not batch:
                break
            for message in batch:
                headers = signed_headers(message.keys, message.message_id, int(time.time()), message.body)
                answer = send(
                    message.url,
                    message.body,
                    {**headers, "X-Fieldsync-Dispatcher": owner},
                    timeout=settings.timeout,
                    allow_private=settings.allow_private,
                )
                attempts += 1
                going = _record(session, subscription_id, owner, message, answer, settings, rng)
                if not going:
                    break
    finally:
        with transaction(session):
            q.release_lease(session, subscription_id, owner, utcnow())
    return attempts


def run(
    sessions: Callable[[], Session],
    owner: str,
    settings: DispatchSettings,
    stop: threading.Event,
    *,
    workers: int = 2,
    once: bool = False,
) -> None:
    """Fan out and deliver until ``stop`` is set (or, with ``once``, until nothing is due)."""

    def worker(index: int) -> None:
        rng = random.Random()
        name = f"{owner}/{index}"
        session = sessions()
        while not stop.is_set():
            try:
                # Every worker fans out (one at a time, by a try-lock): deliveries never wait for a busy one.
                busy = fan_out(session, settings)
                sent = deliver_some(session, name, settings, rng)
            except Exception:
                # The database went away (a restart, a power cut): keep trying, a fresh session each time.
                log.exception("webhook dispatcher worker %s: an iteration failed; retrying", name)
                session.close()
                session = sessions()
                stop.wait(min(30.0, settings.poll * 10))
                continue
            if not busy and not sent:
                if once:
                    break
                stop.wait(settings.poll * (0.5 + rng.random()))
        session.close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"webhooks-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
