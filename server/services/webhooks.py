"""Webhook subscription use cases: create, read, change, pause and resume, rotate the secret, delete;
the delivery log and dead letters; manual replay of one event or a range.

The secret is shown once, in the answer of the call that made it (create, rotate). A rotation keeps
the previous secret signing beside the new one for ``PREVIOUS_SECRET_GRACE``, so a receiver can
switch without dropping messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import insert
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.webhooks import EVENT_KINDS, Event, WebhookAttempt, WebhookDelivery, WebhookSubscription
from server.db.queries import audit
from server.db.queries import webhooks as q
from server.db.queries.submissions import get_form_pk
from server.db.transaction import transaction
from server.errors import ApiError, bad_request, not_found
from server.services.webhook_signing import new_secret
from server.services.webhook_transport import TargetRefused, check_literal_host, parse_target

PREVIOUS_SECRET_GRACE = timedelta(hours=24)
MAX_REPLAY = 10_000


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """A subscription with its queue counts, and its secret only when it was just made."""

    subscription: WebhookSubscription
    counts: Mapping[str, int]
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery with its event and its attempts, oldest first."""

    delivery: WebhookDelivery
    event: Event
    attempts: Sequence[WebhookAttempt]


def _allow_private() -> bool:
    return bool(current_app.config.get("WEBHOOKS_ALLOW_PRIVATE"))


def _check_url(url: str) -> None:
    try:
        check_literal_host(parse_target(url), _allow_private())
    except TargetRefused as exc:
        raise bad_request("invalid_webhook_url", f"The webhook URL cannot be used: {exc}", url=url) from None


def _check_form(session: Session, project_id: int, form_id: str | None) -> None:
    if form_id is not None and get_form_pk(session, project_id, form_id) is None:
        raise bad_request("unknown_form", f"The project has no form {form_id!r}", form_id=form_id)


def _check_events(events: Sequence[str]) -> None:
    unknown = sorted(set(events) - set(EVENT_KINDS))
    if unknown or not events:
        raise bad_request("invalid_events", "Name at least one known event kind", unknown=unknown)


def _get(session: Session, project_id: int, subscription_id: int) -> WebhookSubscription:
    found = q.get_subscription(session, project_id, subscription_id)
    if found is None:
        raise not_found("webhook subscription", id=subscription_id)
    return found


def _view(session: Session, subscription: WebhookSubscription, secret: str | None = None) -> SubscriptionView:
    return SubscriptionView(subscription, q.queue_counts(session, [subscription.id])[subscription.id], secret)


def create_subscription(
    session: Session, project_id: int, fields: Mapping[str, Any], *, actor: str
) -> SubscriptionView:
    """Subscribe a URL to some of the project's events; the answer carries the new secret (shown once)."""
    _check_url(fields["url"])
    _check_events(fields["events"])
    with transaction(session):
        _check_form(session, project_id, fields.get("form_id"))
        secret = new_secret()
        now = utcnow()
        subscription = WebhookSubscription(
            project_id=project_id,
            name=fields.get("name"),
            url=fields["url"],
            events=sorted(set(fields["events"])),
            form_id=fields.get("form_id"),
            language=fields.get("language"),
            payload_format=fields.get("payload_format") or "standard",
            secret=secret,
            state="active",
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        session.add(subscription)
        session.flush()
        audit.record(
            session, actor, "webhook.create", project_id, f"webhook:{subscription.id}", {"url": subscription.url}
        )
        return _view(session, subscription, secret)


def list_subscriptions(session: Session, project_id: int) -> list[SubscriptionView]:
    """Every subscription of a project with its queue counts."""
    subscriptions = q.list_subscriptions(session, project_id)
    counts = q.queue_counts(session, [s.id for s in subscriptions])
    return [SubscriptionView(s, counts[s.id]) for s in subscriptions]


def get_subscription(session: Session, project_id: int, subscription_id: int) -> SubscriptionView:
    """One subscription with its queue counts (``404`` when the project has none by that id)."""
    return _view(session, _get(session, project_id, subscription_id))


def update_subscription(
    session: Session, project_id: int, subscription_id: int, changes: Mapping[str, Any], *, actor: str
) -> SubscriptionView:
    """Change a subscription's URL, events, form filter, language, payload format or name."""
    if "url" in changes:
        _check_url(changes["url"])
    if "events" in changes:
        _check_events(changes["events"])
    with transaction(session):
        subscription = _get(session, project_id, subscription_id)
        if "form_id" in changes:
            _check_form(session, project_id, changes["form_id"])
        for key, value in changes.items():
            setattr(subscription, key, sorted(set(value)) if key == "events" else value)
        subscription.updated_at = utcnow()
        audit.record(
            session, actor, "webhook.update", project_id, f"webhook:{subscription.id}", {"changed": sorted(changes)}
        )
        return _view(session, subscription)


def set_paused(
    session: Session, project_id: int, subscription_id: int, *, paused: bool, actor: str, retry_for: float
) -> SubscriptionView:
    """Pause a subscription (its events still queue) or resume it (also one disabled by a ``410``).

    Resuming sends the queue at once: its pending deliveries are due now and get a fresh
    ``retry_for`` seconds before they become dead letters.
    """
    with transaction(session):
        subscription = _get(session, project_id, subscription_id)
        target = "paused" if paused else "active"
        if subscription.state != target:
            now = utcnow()
            subscription.state = target
            subscription.state_reason = "paused by a manager" if paused else None
            subscription.updated_at = now
            if not paused:
                session.execute(
                    WebhookDelivery.__table__.update()
                    .where(WebhookDelivery.subscription_id == subscription.id, WebhookDelivery.status == "pending")
                    .values(next_attempt_at=now, give_up_at=now + timedelta(seconds=retry_for))
                )
            audit.record(
                session,
                actor,
                "webhook.pause" if paused else "webhook.resume",
                project_id,
                f"webhook:{subscription.id}",
            )
        return _view(session, subscription)


def rotate_secret(session: Session, project_id: int, subscription_id: int, *, actor: str) -> SubscriptionView:
    """Give a subscription a new secret (shown once); the previous one keeps signing too for 24 hours."""
    with transaction(session):
        subscription = _get(session, project_id, subscription_id)
        secret = new_secret()
        now = utcnow()
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_until = now + PREVIOUS_SECRET_GRACE
        subscription.secret = secret
        subscription.updated_at = now
        audit.record(session, actor, "webhook.rotate_secret", project_id, f"webhook:{subscription.id}")
        return _view(session, subscription, secret)


def delete_subscription(session: Session, project_id: int, subscription_id: int, *, actor: str) -> None:
    """Delete a subscription with its queue and log."""
    with transaction(session):
        subscription = _get(session, project_id, subscription_id)
        session.delete(subscription)
        audit.record(
            session, actor, "webhook.delete", project_id, f"webhook:{subscription_id}", {"url": subscription.url}
        )


def list_deliveries(
    session: Session,
    project_id: int,
    subscription_id: int,
    *,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[DeliveryView]:
    """A subscription's deliveries (``status="dead"``: its dead letters), newest first, with their attempts."""
    _get(session, project_id, subscription_id)
    rows = q.list_deliveries(session, subscription_id, status, before_id, limit)
    attempts = q.list_attempts(session, [d.id for d, _ in rows])
    return [DeliveryView(d, e, attempts[d.id]) for d, e in rows]


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    """A page of the delivery log: its deliveries, how many the filter keeps, and where the next page starts."""

    items: list[DeliveryView]
    total: int
    next_before_id: int | None


def delivery_page(
    session: Session,
    project_id: int,
    subscription_id: int,
    *,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> DeliveryPage:
    """A page of a subscription's deliveries, newest first, with the count of every match and the next page."""
    with transaction(session):
        items = list_deliveries(
            session, project_id, subscription_id, status=status, before_id=before_id, limit=limit + 1
        )
        total = q.count_deliveries(session, subscription_id, status)
    page = items[:limit]
    return DeliveryPage(page, total, page[-1].delivery.id if len(items) > limit else None)


def get_delivery(session: Session, project_id: int, subscription_id: int, delivery_id: int) -> DeliveryView:
    """One delivery with its event and every attempt."""
    _get(session, project_id, subscription_id)
    found = q.get_delivery(session, subscription_id, delivery_id)
    if found is None:
        raise not_found("webhook delivery", id=delivery_id)
    delivery, event = found
    return DeliveryView(delivery, event, q.list_attempts(session, [delivery.id])[delivery.id])


def replay(
    session: Session,
    project_id: int,
    subscription_id: int,
    *,
    first_event_id: int,
    last_event_id: int,
    actor: str,
    retry_for: float,
) -> int:
    """Queue the project's events ``first..last`` (those this subscription wants) again; return how many.

    Replays join the end of the queue with the events' own ``webhook-id``, so a receiver that
    already has one drops it. At most ``MAX_REPLAY`` events per call.
    """
    if last_event_id < first_event_id:
        raise bad_request("invalid_range", "to_event_id is before from_event_id")
    with transaction(session):
        subscription = _get(session, project_id, subscription_id)
        event_ids = q.events_in_range(
            session, project_id, first_event_id, last_event_id, subscription.events, subscription.form_id
        )
        if len(event_ids) > MAX_REPLAY:
            raise ApiError(
                413, "replay_too_large", f"At most {MAX_REPLAY} events per replay", {"events": len(event_ids)}
            )
        if not event_ids:
            return 0
        now = utcnow()
        give_up = now + timedelta(seconds=retry_for)
        session.execute(
            insert(WebhookDelivery),
            [q.delivery_row(subscription.id, event_id, now, give_up, replay=True) for event_id in event_ids],
        )
        audit.record(
            session,
            actor,
            "webhook.replay",
            project_id,
            f"webhook:{subscription.id}",
            {"from": first_event_id, "to": last_event_id, "queued": len(event_ids)},
        )
        return len(event_ids)
