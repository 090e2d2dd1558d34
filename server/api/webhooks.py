"""JSON API for webhook subscriptions: create, list, read, change, pause and resume, rotate the secret,
delete; the delivery log (``?status=dead``: the dead letters) and manual replay.

ODK Central's conventions (docs/api-conventions.md): camelCase fields and parameters, lists as bare arrays
with ``X-Total-Count``, the log's next page in the ``Link`` header, ``{"success": true}`` for a delete.

Roles (encoded in tests/server/role_matrix_webhooks.py): managers and admins (``webhook.manage``).
A subscription's secret leaves the server only in the answer of the call that made it (create,
rotate-secret). Sending is the dispatcher's job (``fieldsync webhooks dispatch``), never a request's.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app
from marshmallow import fields, validate, validates_schema
from marshmallow.exceptions import ValidationError

from server.api.contract import ListOf, documented
from server.api.conventions import CamelSchema, StrictCamelSchema, json_list, link_next
from server.api.wire import load_json, load_query
from server.auth import require
from server.db.models.webhooks import DELIVERY_STATUSES, EVENT_KINDS, PAYLOAD_FORMATS
from server.services import webhooks as svc
from server.services.webhook_signing import message_id
from server.store import db_session

bp = Blueprint("webhooks", __name__, url_prefix="/v1")

_BASE = "/projects/<int:project_id>/webhooks"
_ONE = _BASE + "/<int:subscription_id>"
PERMISSION = "webhook.manage"


_FORM_ID = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))


class SubscriptionIn(StrictCamelSchema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    events = fields.List(
        fields.String(validate=validate.OneOf(EVENT_KINDS)), required=True, validate=validate.Length(min=1)
    )
    form_id = _FORM_ID
    language = fields.String(allow_none=True, validate=validate.Length(min=1, max=100))
    payload_format = fields.String(load_default="standard", validate=validate.OneOf(PAYLOAD_FORMATS))
    name = fields.String(allow_none=True, validate=validate.Length(max=200))


class SubscriptionPatch(StrictCamelSchema):
    url = fields.String(validate=validate.Length(min=1, max=2000))
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_KINDS)), validate=validate.Length(min=1))
    form_id = _FORM_ID
    language = fields.String(allow_none=True, validate=validate.Length(min=1, max=100))
    payload_format = fields.String(validate=validate.OneOf(PAYLOAD_FORMATS))
    name = fields.String(allow_none=True, validate=validate.Length(max=200))


class CountsOut(CamelSchema):
    pending = fields.Integer()
    delivered = fields.Integer()
    dead = fields.Integer()


class SubscriptionOut(CamelSchema):
    id = fields.Integer(attribute="subscription.id")
    project_id = fields.Integer(attribute="subscription.project_id")
    name = fields.String(attribute="subscription.name", allow_none=True)
    url = fields.String(attribute="subscription.url")
    events = fields.List(fields.String(), attribute="subscription.events")
    form_id = fields.String(attribute="subscription.form_id", allow_none=True)
    language = fields.String(attribute="subscription.language", allow_none=True)
    payload_format = fields.String(attribute="subscription.payload_format")
    state = fields.String(attribute="subscription.state")
    state_reason = fields.String(attribute="subscription.state_reason", allow_none=True)
    created_by = fields.String(attribute="subscription.created_by")
    created_at = fields.DateTime(attribute="subscription.created_at")
    updated_at = fields.DateTime(attribute="subscription.updated_at")
    deliveries = fields.Nested(CountsOut, attribute="counts")


class SubscriptionWithSecretOut(SubscriptionOut):
    secret = fields.String()


class AttemptOut(CamelSchema):
    at = fields.DateTime()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    response_ms = fields.Integer()
    dispatcher = fields.String()


class DeliveryOut(CamelSchema):
    id = fields.Integer(attribute="delivery.id")
    event_id = fields.Integer(attribute="event.id")
    webhook_id = fields.Method("_webhook_id")
    type = fields.String(attribute="event.kind")
    subject = fields.String(attribute="event.subject")
    event_at = fields.DateTime(attribute="event.created_at")
    status = fields.String(attribute="delivery.status")
    replay = fields.Boolean(attribute="delivery.replay")
    attempts = fields.Integer(attribute="delivery.attempts")
    last_status = fields.Integer(attribute="delivery.last_status", allow_none=True)
    last_error = fields.String(attribute="delivery.last_error", allow_none=True)
    last_response_ms = fields.Integer(attribute="delivery.last_response_ms", allow_none=True)
    next_attempt_at = fields.Method("_next_attempt")
    give_up_at = fields.DateTime(attribute="delivery.give_up_at")
    delivered_at = fields.DateTime(attribute="delivery.delivered_at", allow_none=True)
    log = fields.List(fields.Nested(AttemptOut), attribute="attempts")

    def _webhook_id(self, view: svc.DeliveryView) -> str:
        return message_id(view.event.id)

    def _next_attempt(self, view: svc.DeliveryView) -> str | None:
        return view.delivery.next_attempt_at.isoformat() if view.delivery.status == "pending" else None


class DeliveryQuery(StrictCamelSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(DELIVERY_STATUSES))
    before_id = fields.Integer(load_default=None, validate=validate.Range(min=1))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class ReplayIn(StrictCamelSchema):
    event_id = fields.Integer(validate=validate.Range(min=1))
    from_event_id = fields.Integer(validate=validate.Range(min=1))
    to_event_id = fields.Integer(validate=validate.Range(min=1))

    @validates_schema
    def _one_or_range(self, data: dict[str, Any], **_: Any) -> None:
        single = "event_id" in data
        ranged = "from_event_id" in data or "to_event_id" in data
        if single == ranged or (ranged and not {"from_event_id", "to_event_id"} <= set(data)):
            raise ValidationError("give eventId, or both fromEventId and toEventId")


class ReplayOut(CamelSchema):
    queued = fields.Integer()


class SuccessOut(CamelSchema):
    success = fields.Boolean()


def _retry_for() -> float:
    return float(current_app.config["WEBHOOKS_RETRY_FOR"])


@bp.post(_BASE)
@documented({201: SubscriptionWithSecretOut}, body=SubscriptionIn)
def create_subscription(project_id: int) -> tuple[dict[str, Any], int]:
    """Subscribe a URL to events of the project; the answer holds the secret, shown this once."""
    principal = require(PERMISSION, project_id)
    body = load_json(SubscriptionIn())
    view = svc.create_subscription(db_session(), project_id, body, actor=principal.actor)
    return SubscriptionWithSecretOut().dump(view), 201


@bp.get(_BASE)
@documented({200: ListOf(SubscriptionOut)})
def list_subscriptions(project_id: int) -> Response:
    """Every subscription of the project, with its queue counts (never the secret), as a bare array."""
    require(PERMISSION, project_id)
    return json_list(svc.list_subscriptions(db_session(), project_id), SubscriptionOut())


@bp.get(_ONE)
@documented({200: SubscriptionOut})
def get_subscription(project_id: int, subscription_id: int) -> dict[str, Any]:
    """One subscription with its queue counts."""
    require(PERMISSION, project_id)
    out: dict[str, Any] = SubscriptionOut().dump(svc.get_subscription(db_session(), project_id, subscription_id))
    return out


@bp.patch(_ONE)
@documented({200: SubscriptionOut}, body=SubscriptionPatch)
def update_subscription(project_id: int, subscription_id: int) -> dict[str, Any]:
    """Change a subscription's URL, events, form filter, language, payload format or name."""
    principal = require(PERMISSION, project_id)
    body = load_json(SubscriptionPatch())
    view = svc.update_subscription(db_session(), project_id, subscription_id, body, actor=principal.actor)
    out: dict[str, Any] = SubscriptionOut().dump(view)
    return out


@bp.delete(_ONE)
@documented({200: SuccessOut})
def delete_subscription(project_id: int, subscription_id: int) -> dict[str, Any]:
    """Delete a subscription, its queue and its log; ``success`` is true, as Central answers a deletion."""
    principal = require(PERMISSION, project_id)
    svc.delete_subscription(db_session(), project_id, subscription_id, actor=principal.actor)
    return {"success": True}


@bp.post(_ONE + "/<any(pause, resume):action>")
@documented({200: SubscriptionOut})
def pause_or_resume(project_id: int, subscription_id: int, action: str) -> dict[str, Any]:
    """Pause a subscription (events keep queueing) or resume it (also after a 410 disabled it)."""
    principal = require(PERMISSION, project_id)
    view = svc.set_paused(
        db_session(),
        project_id,
        subscription_id,
        paused=action == "pause",
        actor=principal.actor,
        retry_for=_retry_for(),
    )
    out: dict[str, Any] = SubscriptionOut().dump(view)
    return out


@bp.post(_ONE + "/rotate-secret")
@documented({200: SubscriptionWithSecretOut})
def rotate_secret(project_id: int, subscription_id: int) -> dict[str, Any]:
    """A new secret, shown once; the previous one keeps signing beside it for 24 hours."""
    principal = require(PERMISSION, project_id)
    view = svc.rotate_secret(db_session(), project_id, subscription_id, actor=principal.actor)
    out: dict[str, Any] = SubscriptionWithSecretOut().dump(view)
    return out


@bp.get(_ONE + "/deliveries")
@documented(
    {200: ListOf(DeliveryOut)},
    query=DeliveryQuery,
    response_headers={
        "X-Total-Count": "How many deliveries the status filter keeps",
        "Link": 'The next (older) page: <url>; rel="next" (absent on the last page)',
    },
)
def list_deliveries(project_id: int, subscription_id: int) -> Response:
    """The delivery log, newest first, as a bare array; ``?status=dead`` lists the dead letters."""
    require(PERMISSION, project_id)
    query = load_query(DeliveryQuery())
    page = svc.delivery_page(
        db_session(),
        project_id,
        subscription_id,
        status=query["status"],
        before_id=query["before_id"],
        limit=query["limit"],
    )
    response = json_list(page.items, DeliveryOut(), page.total)
    if page.next_before_id is not None:
        link_next(
            response,
            "webhooks.list_deliveries",
            {"beforeId": str(page.next_before_id)},
            project_id=project_id,
            subscription_id=subscription_id,
        )
    return response


@bp.get(_ONE + "/deliveries/<int:delivery_id>")
@documented({200: DeliveryOut})
def get_delivery(project_id: int, subscription_id: int, delivery_id: int) -> dict[str, Any]:
    """One delivery with every attempt (status, error, response time)."""
    require(PERMISSION, project_id)
    out: dict[str, Any] = DeliveryOut().dump(svc.get_delivery(db_session(), project_id, subscription_id, delivery_id))
    return out


@bp.post(_ONE + "/replay")
@documented({202: ReplayOut}, body=ReplayIn)
def replay(project_id: int, subscription_id: int) -> tuple[dict[str, Any], int]:
    """Queue one event (``eventId``) or a range (``fromEventId``..``toEventId``) again."""
    principal = require(PERMISSION, project_id)
    body = load_json(ReplayIn())
    first = body.get("event_id", body.get("from_event_id"))
    last = body.get("event_id", body.get("to_event_id"))
    queued = svc.replay(
        db_session(),
        project_id,
        subscription_id,
        first_event_id=first,
        last_event_id=last,
        actor=principal.actor,
        retry_for=_retry_for(),
    )
    return ReplayOut().dump({"queued": queued}), 202
