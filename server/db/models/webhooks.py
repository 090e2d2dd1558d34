"""Tables of the webhooks area: the transactional outbox (``events``), subscriptions, deliveries and attempts.

An ``events`` row is written in the transaction of the change it describes, so it exists if and only
if that change committed. A dispatcher later fans each event out to a ``webhook_deliveries`` row per
matching subscription; a subscription's deliveries are sent in ``id`` order, one at a time, under a
lease on the subscription row (``lease_owner``/``lease_until``) that any dispatcher may take over once
it expires (a dispatcher killed mid-delivery leaves a lease that simply runs out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow

SUBSCRIPTION_STATES = ("active", "paused", "disabled")
DELIVERY_STATUSES = ("pending", "delivered", "dead")
PAYLOAD_FORMATS = ("standard", "kobo")
# Subscriptions that still collect events (a paused one is delivered when it resumes).
COLLECTING_STATES = ("active", "paused")
EVENT_KINDS = (
    "submission.created",
    "submission.updated",
    "submission.reviewed",
    "submission.deleted",
    "submission.restored",
    "entity.created",
    "entity.updated",
    "entity.conflicted",
    "entity.resolved",
    "entity.deleted",
    "entity.restored",
    "form.published",
)


class Event(Base):
    """One committed change, as the outbox keeps it until the fan-out has queued it for every subscription.

    ``fanned_out`` rows stay: a manager may replay them (retention is a later concern).
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_fanned_out_id", "fanned_out", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(300))
    form_id: Mapped[str | None] = mapped_column(String(255))  # the XForm id the change belongs to, if any
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    fanned_out: Mapped[bool] = mapped_column(Boolean, default=False)


class WebhookSubscription(Base):
    """Where a project's events go: a URL, the event kinds, an optional form filter, the signing secret."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        CheckConstraint("state IN ('active', 'paused', 'disabled')", name="state"),
        CheckConstraint("payload_format IN ('standard', 'kobo')", name="payload_format"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    form_id: Mapped[str | None] = mapped_column(String(255))
    language: Mapped[str | None] = mapped_column(String(100))
    payload_format: Mapped[str] = mapped_column(String(10), default="standard")
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret signs too, for a while, so receivers can switch without a gap.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(10), default="active")
    state_reason: Mapped[str | None] = mapped_column(String(300))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event owed to one subscription: pending until delivered, or dead once its retry time ran out."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
        Index("ix_webhook_deliveries_subscription_id_status_id", "subscription_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("events.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_response_ms: Mapped[int | None] = mapped_column(Integer)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replay: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: what the receiver answered (or why nothing came back), and how fast."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_ms: Mapped[int] = mapped_column(Integer)
    dispatcher: Mapped[str] = mapped_column(String(100))
