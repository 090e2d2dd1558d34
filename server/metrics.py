"""Prometheus metrics: what every request and ingested item counts, and ``GET /metrics`` that serves them.

Counters and histograms live in prometheus-client's module registry. Under ``fieldsync serve`` the
variable ``PROMETHEUS_MULTIPROC_DIR`` is set before gunicorn starts, so each worker writes its values to
memory-mapped files there and a scrape (answered by any worker) sums every worker's files; gunicorn's
``child_exit`` hook (``server/gunicorn_conf.py``) marks a dead worker's gauges. Without that variable
(the Flask dev server, tests) the values are this process's own.

Gauges that describe the store (quarantine size, entities in conflict, export runs, open uploads) are
read from the database at scrape time with one cheap grouped query each, so they are right whichever
worker answers and whatever process changed them. Other areas may add such gauges with
:func:`register_store_gauge` (the webhook dispatcher's backlog, for one).

Requests are labelled by URL rule (``/v1/key/<token>/projects/<int:project_id>/submission``), never
by the raw path: device tokens travel in paths and must not reach a monitoring system. The request
hooks cost a few microseconds: one ``perf_counter`` and one histogram observation on a cached child.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"

# Buckets for a server whose OpenRosa submission takes a few ms and whose exports take seconds.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUEST_SECONDS = Histogram(
    "fieldsync_http_request_duration_seconds",
    "HTTP requests by method, URL rule and status, with their latency.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
SUBMISSIONS = Counter(
    "fieldsync_submissions",
    "Submissions received, by door (openrosa, push) and outcome (created, duplicate, rejected...).",
    ["source", "outcome"],
)
SYNC_ITEMS = Counter(
    "fieldsync_sync_items", "Pushed sync items by kind (submission, entity) and outcome.", ["kind", "outcome"]
)
CONFLICTS = Counter("fieldsync_conflicts", "Conflicts detected while merging pushed items, by kind.", ["kind"])
CONVERSIONS = Counter(
    "fieldsync_form_conversions", "XLSForm conversions by outcome (ok, failed, timeout).", ["outcome"]
)


def count_submission(source: str, outcome: str) -> None:
    """Count one submission answered by a door."""
    SUBMISSIONS.labels(source, outcome).inc()


def count_sync_item(kind: str, outcome: str, conflict_kind: str | None = None) -> None:
    """Count one pushed item (and its conflict, when it made one)."""
    SYNC_ITEMS.labels(kind, outcome).inc()
    if kind == "submission":
        SUBMISSIONS.labels("push", outcome).inc()
    if conflict_kind is not None:
        CONFLICTS.labels(conflict_kind).inc()


def count_conversion(outcome: str) -> None:
    """Count one XLSForm conversion."""
    CONVERSIONS.labels(outcome).inc()


# --- gauges read from the store at scrape time ---------------------------------------------------


@dataclass(frozen=True)
class StoreGauge:
    """A gauge computed by one query at scrape time: ``read(session)`` returns (label values, value) pairs."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    read: Callable[[Session], Iterable[tuple[tuple[str, ...], float]]]


_STORE_GAUGES: dict[str, StoreGauge] = {}


def register_store_gauge(gauge: StoreGauge) -> None:
    """Add (or replace) a gauge read from the database at each scrape."""
    _STORE_GAUGES[gauge.name] = gauge


def _grouped(session: Session, column: Any, *where: Any) -> list[tuple[tuple[str, ...], float]]:
    stmt = select(column, func.count()).where(*where).group_by(column)
    return [((str(key),), float(n)) for key, n in session.execute(stmt)]


def _quarantine(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.sync import HeldItem

    return _grouped(session, HeldItem.outcome, HeldItem.status == "open")


def _entity_conflicts(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.sync import Entity

    return _grouped(session, Entity.conflict, Entity.conflict.is_not(None), Entity.deleted.is_(False))


def _export_runs(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.exports import ExportRun

    return _grouped(session, ExportRun.status)


def _open_uploads(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.sync import Upload

    return _grouped(session, Upload.state, Upload.state == "open")


def _deleted_submissions(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.submissions import Submission

    n = session.execute(select(func.count()).where(Submission.deleted_at.is_not(None))).scalar_one()
    return [((), float(n))]


def _webhook_backlog(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.webhooks import Event, WebhookDelivery, WebhookSubscription

    # Only the backlog's rows are read (the events index on fanned_out, the deliveries index on
    # subscription and status): delivered history, however long, costs the scrape nothing.
    unfanned = session.execute(select(func.count()).where(Event.fanned_out.is_(False))).scalar_one()
    pending = session.execute(
        select(WebhookSubscription.state, func.count())
        .join(WebhookDelivery, WebhookDelivery.subscription_id == WebhookSubscription.id)
        .where(WebhookDelivery.status == "pending")
        .group_by(WebhookSubscription.state)
    ).all()
    return [(("fan_out", "active"), float(unfanned))] + [(("delivery", str(state)), float(n)) for state, n in pending]


def _webhook_oldest(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.base import utcnow
    from server.db.models.webhooks import Event, WebhookDelivery, WebhookSubscription

    oldest_event = session.execute(
        select(Event.created_at).where(Event.fanned_out.is_(False)).order_by(Event.id).limit(1)
    ).scalar_one_or_none()
    oldest_delivery = session.execute(
        select(func.min(WebhookDelivery.created_at))
        .join(WebhookSubscription, WebhookDelivery.subscription_id == WebhookSubscription.id)
        .where(WebhookDelivery.status == "pending", WebhookSubscription.state == "active")
    ).scalar_one_or_none()
    now = utcnow()
    return [
        ((stage,), max(0.0, (now - found).total_seconds()) if found is not None else 0.0)
        for stage, found in (("fan_out", oldest_event), ("delivery", oldest_delivery))
    ]


def _relay_outbox(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.relays import RelayLink, RelayOutboxRow

    pending = dict(_grouped(session, RelayOutboxRow.project_id, RelayOutboxRow.sent_at.is_(None)))
    # Every relayed project has a series, 0 when its queue is empty (an alert can tell "empty" from "absent").
    return [((str(p),), pending.get((str(p),), 0.0)) for p in session.scalars(select(RelayLink.project_id))]


def _relay_link(session: Session) -> list[tuple[tuple[str, ...], float]]:
    from server.db.models.relays import RelayLink

    links = session.execute(select(RelayLink.project_id, RelayLink.last_contact_at, RelayLink.last_error_at)).all()
    return [
        ((str(project),), 1.0 if contact is not None and (error is None or contact >= error) else 0.0)
        for project, contact, error in links
    ]


for _gauge in (
    StoreGauge("fieldsync_quarantine_items", "Held pushed items still open, by outcome.", ("outcome",), _quarantine),
    StoreGauge("fieldsync_entity_conflicts", "Live entities in conflict, by kind.", ("kind",), _entity_conflicts),
    StoreGauge("fieldsync_export_runs", "Scheduled export runs by status.", ("status",), _export_runs),
    StoreGauge("fieldsync_uploads", "Resumable uploads not finished yet.", ("state",), _open_uploads),
    StoreGauge(
        "fieldsync_submissions_soft_deleted", "Soft-deleted submissions awaiting purge.", (), _deleted_submissions
    ),
    StoreGauge(
        "fieldsync_webhook_backlog",
        "Webhook dispatcher backlog: events not fanned out yet, and pending deliveries by subscription state.",
        ("stage", "subscription_state"),
        _webhook_backlog,
    ),
    StoreGauge(
        "fieldsync_webhook_oldest_pending_seconds",
        "Age of the oldest event not fanned out, and of the oldest pending delivery of an active subscription.",
        ("stage",),
        _webhook_oldest,
    ),
    StoreGauge(
        "fieldsync_relay_outbox",
        "Office relay: stored submissions not yet acknowledged by the upstream server, by local project.",
        ("project",),
        _relay_outbox,
    ),
    StoreGauge(
        "fieldsync_relay_link",
        "Office relay: 1 when the last round reached the upstream server, 0 when it failed, by local project.",
        ("project",),
        _relay_link,
    ),
):
    register_store_gauge(_gauge)


class _StoreCollector(Collector):
    """Reads every registered store gauge in one short read-only session."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("fieldsync_store_up", "1 when the scrape could read the store's gauges.")
        families: list[Metric] = []
        session = self.sessions()
        try:
            for gauge in _STORE_GAUGES.values():
                family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=list(gauge.labels))
                for labels, value in gauge.read(session):
                    family.add_metric(list(labels), value)
                families.append(family)
            up.add_metric([], 1.0)
        except Exception:  # the store is down: the process metrics still answer, with store_up 0
            families = []
            up.add_metric([], 0.0)
        finally:
            session.rollback()
            session.close()
        yield from families
        yield up


def scrape(sessions: Callable[[], Session]) -> bytes:
    """Render every metric (all workers' when multiprocess) plus the store gauges, in text format."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessRegistry())
    registry.register(_StoreCollector(sessions))
    return generate_latest(registry)


class _ProcessRegistry(Collector):
    """This process's own metrics (no multiprocess directory): the module registry's."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


# --- the request hooks and the endpoint ---------------------------------------------------------

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Serve the metrics in Prometheus text format (an admin's credential, or FIELDSYNC_METRICS_PUBLIC=1)."""
    if not current_app.config.get("METRICS_PUBLIC"):
        from server.auth import require_admin

        require_admin()
    from server.store import get_store

    return Response(scrape(get_store().sessions), mimetype=CONTENT_TYPE_LATEST)


_CHILDREN: dict[tuple[str, str, int], Any] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request under its URL rule and status (also for answers made before Flask)."""
    key = (method, route, status)
    child = _CHILDREN.get(key)
    if child is None:
        # labels() validates and locks; the child it returns is reused for every later request.
        child = _CHILDREN[key] = REQUEST_SECONDS.labels(method, route, str(status))
    child.observe(seconds)


def init_app(app: Flask) -> None:
    """Time every request of ``app`` by URL rule and status, and register ``/metrics``."""
    app.register_blueprint(bp)

    @app.before_request
    def _start_metrics_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe_request(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            rule = request.url_rule
            observe_request(
                request.method,
                rule.rule if rule is not None else UNMATCHED_ROUTE,
                response.status_code,
                time.perf_counter() - started,
            )
        return response


def reset_multiprocess_dir(path: str) -> None:
    """Empty (create) the multiprocess directory before a server starts: stale workers' files would count."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))


def mark_worker_dead(pid: int) -> None:
    """Tell the multiprocess collector a worker exited (its live gauges stop counting)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
