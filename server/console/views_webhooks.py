"""Console pages of a project's webhook subscriptions: list, create, change, pause and resume, rotate the
secret, delete; each subscription's delivery log (state, attempts, last error, dead letters) and replay.

Every action is ``server.services.webhooks``' (the JSON API's ``/v1/projects/{p}/webhooks``), behind the
same ``webhook.manage`` permission; the console adds none. A secret is shown once, on the page that
answers the POST that made it (create, rotate), never after a redirect.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, redirect, request, url_for

from server.auth import require
from server.console import bp
from server.console.pages import api_field_errors, load_form, notice, render
from server.console.schemas import DeliveryFilter, ReplayForm, WebhookForm
from server.db.models.webhooks import DELIVERY_STATUSES, EVENT_KINDS, PAYLOAD_FORMATS
from server.errors import ApiError
from server.services import overview
from server.services import webhooks as svc
from server.services.webhook_signing import message_id
from server.store import db_session

PERMISSION = "webhook.manage"
PAGE = 50


def _retry_for() -> float:
    return float(current_app.config["WEBHOOKS_RETRY_FOR"])


def _posted() -> dict[str, Any]:
    """The posted form with its event boxes as a list (a browser sends one ``events`` per ticked box)."""
    data: dict[str, Any] = request.form.to_dict()
    data["events"] = request.form.getlist("events")
    return data


def _list_page(project_id: int, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    context.setdefault("values", {"events": list(EVENT_KINDS[:5]), "payload_format": "standard"})
    context.setdefault("errors", {})
    return render(
        "webhooks.html",
        status,
        project=overview.get_project(session, project_id),
        subscriptions=svc.list_subscriptions(session, project_id),
        event_kinds=EVENT_KINDS,
        formats=PAYLOAD_FORMATS,
        **context,
    )


def _subscription_page(project_id: int, subscription_id: int, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    view = context.pop("view", None) or svc.get_subscription(session, project_id, subscription_id)
    filters, errors = load_form(DeliveryFilter(), request.args)
    if errors:
        filters = {"status": None, "before_id": None}
    deliveries = svc.list_deliveries(
        session, project_id, subscription_id, status=filters["status"], before_id=filters["before_id"], limit=PAGE
    )
    sub = view.subscription
    context.setdefault(
        "values",
        {
            "url": sub.url,
            "name": sub.name or "",
            "events": list(sub.events),
            "form_id": sub.form_id or "",
            "language": sub.language or "",
            "payload_format": sub.payload_format,
        },
    )
    context.setdefault("errors", {})
    older = (
        url_for(
            "console.webhook",
            project_id=project_id,
            subscription_id=subscription_id,
            status=filters["status"],
            before_id=deliveries[-1].delivery.id,
        )
        if len(deliveries) == PAGE
        else None
    )
    return render(
        "webhook.html",
        status,
        project=overview.get_project(session, project_id),
        view=view,
        deliveries=deliveries,
        status_filter=filters["status"] or "",
        statuses=DELIVERY_STATUSES,
        older=older,
        event_kinds=EVENT_KINDS,
        formats=PAYLOAD_FORMATS,
        webhook_id=lambda d: message_id(d.event.id),
        **context,
    )


@bp.get("/projects/<int:project_id>/webhooks")
def webhooks(project_id: int) -> tuple[str, int]:
    """The project's subscriptions with their queues, and the form to add one."""
    require(PERMISSION, project_id)
    return _list_page(project_id)


@bp.post("/projects/<int:project_id>/webhooks")
def create_webhook(project_id: int) -> tuple[str, int]:
    """Subscribe a URL; the answer shows its secret, this once (201)."""
    principal = require(PERMISSION, project_id)
    values, errors = load_form(WebhookForm(), _posted())
    if errors:
        return _list_page(project_id, 400, values=_posted(), errors=errors)
    try:
        view = svc.create_subscription(db_session(), project_id, values, actor=principal.actor)
    except ApiError as error:
        return _list_page(project_id, error.status, values=_posted(), errors=api_field_errors(error), error=error)
    return _subscription_page(project_id, view.subscription.id, 201, view=view, secret=view.secret)


@bp.get("/projects/<int:project_id>/webhooks/<int:subscription_id>")
def webhook(project_id: int, subscription_id: int) -> tuple[str, int]:
    """One subscription: its settings, its actions and its delivery log (filtered by state, paged)."""
    require(PERMISSION, project_id)
    return _subscription_page(project_id, subscription_id)


@bp.post("/projects/<int:project_id>/webhooks/<int:subscription_id>")
def update_webhook(project_id: int, subscription_id: int) -> Response | tuple[str, int]:
    """Change a subscription's URL, events, form filter, language, payload format or name."""
    principal = require(PERMISSION, project_id)
    values, errors = load_form(WebhookForm(), _posted())
    if errors:
        return _subscription_page(project_id, subscription_id, 400, values=_posted(), errors=errors)
    try:
        svc.update_subscription(db_session(), project_id, subscription_id, values, actor=principal.actor)
    except ApiError as error:
        if error.status == 404:
            raise
        return _subscription_page(
            project_id, subscription_id, error.status, values=_posted(), errors=api_field_errors(error), error=error
        )
    notice("webhook_saved")
    return redirect(url_for("console.webhook", project_id=project_id, subscription_id=subscription_id))


@bp.post("/projects/<int:project_id>/webhooks/<int:subscription_id>/<any(pause, resume):action>")
def pause_webhook(project_id: int, subscription_id: int, action: str) -> Response:
    """Pause a subscription (its events keep queueing) or resume it (also one a 410 disabled)."""
    principal = require(PERMISSION, project_id)
    svc.set_paused(
        db_session(),
        project_id,
        subscription_id,
        paused=action == "pause",
        actor=principal.actor,
        retry_for=_retry_for(),
    )
    notice("webhook_paused" if action == "pause" else "webhook_resumed")
    return redirect(url_for("console.webhook", project_id=project_id, subscription_id=subscription_id))


@bp.post("/projects/<int:project_id>/webhooks/<int:subscription_id>/rotate-secret")
def rotate_webhook_secret(project_id: int, subscription_id: int) -> tuple[str, int]:
    """A new secret, shown this once; the previous one keeps signing beside it for 24 hours."""
    principal = require(PERMISSION, project_id)
    view = svc.rotate_secret(db_session(), project_id, subscription_id, actor=principal.actor)
    return _subscription_page(project_id, subscription_id, view=view, secret=view.secret, rotated=True)


@bp.post("/projects/<int:project_id>/webhooks/<int:subscription_id>/delete")
def delete_webhook(project_id: int, subscription_id: int) -> Response:
    """Delete a subscription with its queue and log."""
    principal = require(PERMISSION, project_id)
    svc.delete_subscription(db_session(), project_id, subscription_id, actor=principal.actor)
    notice("webhook_deleted")
    return redirect(url_for("console.webhooks", project_id=project_id))


@bp.post("/projects/<int:project_id>/webhooks/<int:subscription_id>/replay")
def replay_webhook(project_id: int, subscription_id: int) -> Response | tuple[str, int]:
    """Queue one event again (a delivery's "Send again"), or a range of events."""
    principal = require(PERMISSION, project_id)
    values, errors = load_form(ReplayForm())
    first = values.get("event_id") or values.get("from_event_id")
    last = values.get("event_id") or values.get("to_event_id")
    if errors or first is None or last is None:
        return _subscription_page(
            project_id,
            subscription_id,
            400,
            replay_values=request.form.to_dict(),
            replay_errors=errors or {"from_event_id": ["required"], "to_event_id": ["required"]},
        )
    try:
        svc.replay(
            db_session(),
            project_id,
            subscription_id,
            first_event_id=first,
            last_event_id=last,
            actor=principal.actor,
            retry_for=_retry_for(),
        )
    except ApiError as error:
        if error.status == 404:
            raise
        return _subscription_page(
            project_id,
            subscription_id,
            error.status,
            replay_values=request.form.to_dict(),
            replay_errors={},
            replay_error=error,
        )
    notice("webhook_replayed")
    return redirect(url_for("console.webhook", project_id=project_id, subscription_id=subscription_id))
