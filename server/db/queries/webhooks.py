"""Queries of the webhooks area: subscriptions, the outbox fan-out, claiming a subscription's queue, the delivery log.

Every function takes the session first and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, exists, func, literal, or_, select, text, update
from sqlalchemy.orm import Session

from server.db.advisory import STORE_SALT_SQL
from server.db.models.webhooks import Event, WebhookAttempt, WebhookDelivery, WebhookSubscription
from server.db.queries.outbox import kind_pattern

_EVENTS = cast(Table, Event.__table__)
_SUBS = cast(Table, WebhookSubscription.__table__)
_DELIVERIES = cast(Table, WebhookDelivery.__table__)


def get_subscription(session: Session, project_id: int, subscription_id: int) -> WebhookSubscription | None:
    """A subscription of a project by id."""
    return session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.id == subscription_id, WebhookSubscription.project_id == project_id
        )
    ).one_or_none()


def list_subscriptions(session: Session, project_id: int) -> Sequence[WebhookSubscription]:
    """A project's subscriptions, oldest first."""
    return session.scalars(
        select(WebhookSubscription).where(WebhookSubscription.project_id == project_id).order_by(WebhookSubscription.id)
    ).all()


def queue_counts(session: Session, subscription_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """How many deliveries each subscription has per status."""
    counts: dict[int, dict[str, int]] = {i: {"pending": 0, "delivered": 0, "dead": 0} for i in subscription_ids}
    if not subscription_ids:
        return counts
    rows = session.execute(
        select(WebhookDelivery.subscription_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.subscription_id.in_(subscription_ids))
        .group_by(WebhookDelivery.subscription_id, WebhookDelivery.status)
    )
    for subscription_id, status, count in rows:
        counts[subscription_id][status] = count
    return counts


# ---------------------------------------------------------------------------------------------------
# Fan-out: committed events become deliveries, in an order no later commit can contradict

# One fan-out at a time across the dispatchers of one store (the key is the store's: server/db/advisory.py).
_FANOUT_LOCK_SQL = text(f"SELECT pg_try_advisory_xact_lock(CAST(7102204020 AS bigint) # {STORE_SALT_SQL})")


def lock_fanout(session: Session) -> bool:
    """Take the fan-out lock for this transaction (PostgreSQL), or say another dispatcher holds it.

    SQLite has one writer: its transaction is the lock.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(_FANOUT_LOCK_SQL).scalar_one())


def unqueued_events(session: Session, limit: int) -> list[tuple[int, int, str, str | None]]:
    """The oldest events not fanned out yet, by id: ``(id, project, kind, form)``.

    Called under the fan-out lock, so each call's events are queued after every earlier call's.
    An event id is drawn before its transaction commits, so a smaller id may become visible after
    a larger one was queued: it is then queued after it, which is the order the two commits
    happened in. Changes where one follows from the other (a review of a stored submission) always
    have ids in that order, since the second read the first's committed row before drawing its id.
    """
    stmt = (
        select(_EVENTS.c.id, _EVENTS.c.project_id, _EVENTS.c.kind, _EVENTS.c.form_id)
        .where(_EVENTS.c.fanned_out.is_(False))
        .order_by(_EVENTS.c.id)
        .limit(limit)
    )
    return [(int(r[0]), int(r[1]), str(r[2]), r[3]) for r in session.execute(stmt).all()]


def collecting_subscriptions(session: Session, project_ids: Sequence[int]) -> Sequence[WebhookSubscription]:
    """The subscriptions of these projects that still collect events (active or paused)."""
    return session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.project_id.in_(sorted(set(project_ids))),
            WebhookSubscription.state.in_(("active", "paused")),
        )
    ).all()


def delivery_row(
    subscription_id: int, event_id: int, now: datetime, give_up_at: datetime, *, replay: bool = False
) -> dict[str, Any]:
    """The values of a new pending delivery, due now."""
    return {
        "subscription_id": subscription_id,
        "event_id": event_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "give_up_at": give_up_at,
        "replay": replay,
        "created_at": now,
    }


def mark_fanned_out(session: Session, event_ids: Sequence[int]) -> None:
    """Flag events as fanned out."""
    session.execute(update(Event).where(Event.id.in_(event_ids)).values(fanned_out=True))


def events_in_range(
    session: Session, project_id: int, first_id: int, last_id: int, kinds: Sequence[str], form_id: str | None
) -> list[int]:
    """Ids of a project's events in ``[first_id, last_id]`` of the given kinds (and form), in order."""
    stmt = select(Event.id).where(
        Event.project_id == project_id,
        Event.id >= first_id,
        Event.id <= last_id,
        Event.kind.in_(list(kinds)),
    )
    if form_id is not None:
        stmt = stmt.where(Event.form_id == form_id)
    return [int(i) for i in session.scalars(stmt.order_by(Event.id))]


def subscription_wants(subscription: WebhookSubscription, kind: str, form_id: str | None) -> bool:
    """Does this subscription want an event of ``kind`` about ``form_id`` (the same test as the outbox's SQL)?"""
    kind_pattern(kind)  # refuses an unknown kind
    return kind in subscription.events and (subscription.form_id is None or subscription.form_id == form_id)


# ---------------------------------------------------------------------------------------------------
# Claiming a subscription's queue


def _due_head(now: datetime) -> Any:
    """``EXISTS`` a pending delivery of the subscription that is its head (lowest id) and is due."""
    pending = _DELIVERIES.alias("pending")
    head = (
        select(func.min(pending.c.id))
        .where(pending.c.subscription_id == _SUBS.c.id, pending.c.status == "pending")
        .correlate(_SUBS)
        .scalar_subquery()
    )
    return exists().where(_DELIVERIES.c.id == head, _DELIVERIES.c.next_attempt_at <= now).correlate(_SUBS)


def claim_subscription(session: Session, owner: str, now: datetime, lease_until: datetime) -> int | None:
    """Lease one active subscription whose next delivery is due and whose lease is free or expired.

    PostgreSQL: the candidate row is locked with ``FOR UPDATE SKIP LOCKED`` (two dispatchers never
    wait on, nor take, the same row), then leased with a compare-and-set on the lease columns.
    The least recently leased candidate goes first, so every subscription gets its turn.
    """
    free = or_(_SUBS.c.lease_until.is_(None), _SUBS.c.lease_until < now)
    candidate = (
        select(_SUBS.c.id)
        .where(_SUBS.c.state == "active", free, _due_head(now))
        .order_by(_SUBS.c.lease_until.asc().nulls_first(), _SUBS.c.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True, of=_SUBS)
    found = session.execute(candidate).scalar_one_or_none()
    if found is None:
        return None
    result = session.execute(
        update(_SUBS).where(_SUBS.c.id == found, free).values(lease_owner=owner, lease_until=lease_until)
    )
    return int(found) if result.rowcount == 1 else None  # type: ignore[attr-defined]


def renew_lease(session: Session, subscription_id: int, owner: str, lease_until: datetime) -> bool:
    """Extend our lease; ``False`` when it was taken over (it expired and another dispatcher claimed it)."""
    result = session.execute(
        update(_SUBS)
        .where(_SUBS.c.id == subscription_id, _SUBS.c.lease_owner == owner, _SUBS.c.state == "active")
        .values(lease_until=lease_until)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release_lease(session: Session, subscription_id: int, owner: str, now: datetime) -> None:
    """Give the lease back (its time set to now, so the subscription goes to the back of the turn)."""
    session.execute(
        update(_SUBS)
        .where(_SUBS.c.id == subscription_id, _SUBS.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=now)
    )


def pending_deliveries(session: Session, subscription_id: int, limit: int) -> list[tuple[WebhookDelivery, Event]]:
    """The subscription's oldest pending deliveries with their events, in queue order (the head first)."""
    rows = session.execute(
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.status == "pending")
        .order_by(WebhookDelivery.id)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def holds_lease(session: Session, subscription_id: int, owner: str) -> Any:
    """A condition: the subscription is still leased by ``owner`` (fences a late dispatcher's writes)."""
    return exists().where(_SUBS.c.id == subscription_id, _SUBS.c.lease_owner == owner)


def commit_without_waiting_for_disk(session: Session) -> None:
    """Let this transaction commit without waiting for its WAL flush (PostgreSQL ``synchronous_commit``).

    For the dispatcher's outcome records only: a database crash may forget the last fraction of a
    second of them, and those messages are then simply sent again, with the same ``webhook-id``
    (delivery is at least once anyway). It saves a disk flush per message sent.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


_OUTCOME_PG = text(
    # One round trip for what a sent message changes: the delivery (compare-and-set on our lease),
    # its attempt row, the lease's renewal, and a commit that need not wait for the disk.
    "WITH d AS (UPDATE webhook_deliveries SET status = CAST(:status AS varchar),"
    " delivered_at = CAST(:delivered_at AS timestamptz),"
    " next_attempt_at = COALESCE(CAST(:next_attempt_at AS timestamptz), next_attempt_at),"
    " last_status = CAST(:last_status AS integer), last_error = CAST(:last_error AS text),"
    " last_response_ms = CAST(:last_response_ms AS integer), attempts = attempts + 1"
    " WHERE id = :delivery_id AND status = 'pending' AND EXISTS (SELECT 1 FROM webhook_subscriptions"
    " WHERE id = :subscription_id AND lease_owner = CAST(:owner AS varchar)) RETURNING id),"
    " a AS (INSERT INTO webhook_attempts (delivery_id, at, status_code, error, response_ms, dispatcher)"
    " SELECT id, CAST(:at AS timestamptz), CAST(:last_status AS integer), CAST(:last_error AS text),"
    " CAST(:last_response_ms AS integer), CAST(:owner AS varchar) FROM d),"
    " s AS (UPDATE webhook_subscriptions SET lease_until = CAST(:lease_until AS timestamptz)"
    " WHERE id = :subscription_id AND lease_owner = CAST(:owner AS varchar) AND state = 'active'"
    " AND CAST(:renew AS boolean) AND EXISTS (SELECT 1 FROM d) RETURNING id)"
    " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM s), set_config('synchronous_commit', 'off', true)"
)


def record_outcome_pg(session: Session, params: dict[str, Any]) -> tuple[bool, bool]:
    """PostgreSQL: record a sent message's outcome in one statement; (recorded, lease renewed).

    ``params``: ``delivery_id``, ``subscription_id``, ``owner``, ``at``, ``status``, ``delivered_at``,
    ``next_attempt_at`` (``None`` keeps it), ``last_status``, ``last_error``, ``last_response_ms``,
    ``renew`` and ``lease_until``.
    """
    row = session.execute(_OUTCOME_PG, params).one()
    return bool(row[0]), bool(row[1])


def finish_attempt(
    session: Session, delivery_id: int, subscription_id: int, owner: str, values: dict[str, Any]
) -> bool:
    """Write an attempt's outcome on the delivery, only if we still hold the lease (compare-and-set)."""
    result = session.execute(
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.id == delivery_id,
            _DELIVERIES.c.status == "pending",
            holds_lease(session, subscription_id, owner),
        )
        .values(**values, attempts=_DELIVERIES.c.attempts + literal(1))
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------
# The delivery log


def list_deliveries(
    session: Session, subscription_id: int, status: str | None, before_id: int | None, limit: int
) -> list[tuple[WebhookDelivery, Event]]:
    """A subscription's deliveries with their events, newest first."""
    stmt = (
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == subscription_id)
    )
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    rows = session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit)).all()
    return [(row[0], row[1]) for row in rows]


def count_deliveries(session: Session, subscription_id: int, status: str | None) -> int:
    """How many deliveries of a subscription there are (of one ``status`` when given)."""
    stmt = select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    return int(session.scalar(stmt) or 0)


def get_delivery(session: Session, subscription_id: int, delivery_id: int) -> tuple[WebhookDelivery, Event] | None:
    """One delivery of a subscription, with its event."""
    row = session.execute(
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(and_(WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id))
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


def list_attempts(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
    """The attempts of these deliveries, oldest first."""
    found: dict[int, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        for attempt in session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)).order_by(WebhookAttempt.id)
        ):
            found[attempt.delivery_id].append(attempt)
    return found
