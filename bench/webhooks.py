"""Webhooks: events delivered per second to a fast receiver, the outbox's cost on OpenRosa ingest, and the
acceptance scenario (bench/webhook_chaos.py) at 10,000 events.

Delivery: events are inserted into the outbox in one statement while ``fieldsync webhooks dispatch``
processes are already running; the figure is events delivered (answered 2xx by a loopback receiver
that answers 204 at once) per second, from that commit to the last answer. With one subscription
the queue is sent strictly in order, one message at a time (the ordering promise's price); with
four, two dispatchers share them. Reference: the raw database's one-transaction-per-row rate (a
delivery commits one transaction).

Outbox cost: OpenRosa ingest from 1 client without any subscription, then with one subscription to
``submission.created`` (no dispatcher running, so every submission also writes an event row),
alternating rounds; the ratio of the two medians is the cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg

from bench.harness import Context, EndpointMissing
from bench.ingest import _load, submission_requests
from bench.raw import ensure_raw
from bench.results import BenchmarkResult, Figure, Reference, Target
from bench.stats import spread
from bench.webhook_chaos import check, dispatcher_environment, run_chaos, start_dispatcher
from bench.webhook_receiver import Receiver

NAME = "webhooks"
TITLE = "Webhooks"
SECRET = "whsec_YmVuY2gtc2VjcmV0LW5vdC1mb3ItcHJvZHVjdGlvbg=="


def _subscribe(context: Context, url: str, kinds: str, count: int) -> list[int]:
    """Add ``count`` active subscriptions of the bench project straight in the database; return their ids."""
    with psycopg.connect(context.database.url) as conn:
        rows = conn.execute(
            "INSERT INTO webhook_subscriptions (project_id, url, events, payload_format, secret, state,"
            " created_by, created_at, updated_at)"
            " SELECT %s, %s || '/' || n, %s::jsonb, 'standard', %s, 'active', 'bench', now(), now()"
            " FROM generate_series(1, %s) AS n RETURNING id",
            (context.project_id, url, kinds, SECRET, count),
        ).fetchall()
    return [int(r[0]) for r in rows]


def _unsubscribe(context: Context, ids: list[int]) -> None:
    with psycopg.connect(context.database.url) as conn:
        conn.execute("DELETE FROM webhook_subscriptions WHERE id = ANY(%s)", (ids,))


def _insert_events(context: Context, count: int) -> None:
    with psycopg.connect(context.database.url) as conn:
        conn.execute(
            "INSERT INTO events (project_id, kind, subject, payload, created_at, fanned_out)"
            " SELECT %s, 'form.published', 'form:bench', jsonb_build_object('n', n), now(), false"
            " FROM generate_series(1, %s) AS n",
            (context.project_id, count),
        )


def _delivery_rounds(context: Context, subscriptions: int, dispatchers: int, events: int) -> list[float]:
    """Deliveries per second over the rounds (plus one warm-up), with dispatchers already running."""
    receiver = Receiver(plan=lambda _headers: ("status", 204)).start()
    ids = _subscribe(context, receiver.url, '["form.published"]', subscriptions)
    var = Path(tempfile.mkdtemp(prefix="fieldsync-bench-webhooks-"))
    env = {**dispatcher_environment(context.database.sqlalchemy_url, var), "FIELDSYNC_WEBHOOKS_TIMEOUT": "10"}
    processes = [start_dispatcher(f"bench{n}", env) for n in range(dispatchers)]
    rates: list[float] = []
    try:
        for round_ in range(context.settings.warmup + context.settings.rounds):
            before = len(receiver.delivered())
            wanted = before + events * subscriptions
            started = time.monotonic()
            _insert_events(context, events)
            deadline = started + 600
            while len(receiver.delivered()) < wanted:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(receiver.delivered()) - before} of {wanted - before} delivered")
                time.sleep(0.01)
            if round_ >= context.settings.warmup:
                rates.append(events * subscriptions / (time.monotonic() - started))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
        receiver.stop()
        _unsubscribe(context, ids)
    return rates


def _ingest_cost(context: Context) -> tuple[list[float], list[float]]:
    """OpenRosa ingest rates (1 client) without and with a subscription, in alternating rounds."""
    context.ensure_bench_form(0)
    count = context.settings.ingest_submissions
    without: list[float] = []
    with_one: list[float] = []
    _load(context, submission_requests(context, max(40, count // 10), "hooks-warm"), 1)
    for round_ in range(context.settings.rounds):
        without.append(_load(context, submission_requests(context, count, f"hooks-off{round_}"), 1).per_second)
        ids = _subscribe(context, "http://127.0.0.1:9/nobody", '["submission.created"]', 1)
        try:
            with_one.append(_load(context, submission_requests(context, count, f"hooks-on{round_}"), 1).per_second)
        finally:
            _unsubscribe(context, ids)
    return without, with_one


def run(context: Context) -> BenchmarkResult:
    """Measure webhook delivery rates, the outbox's cost on ingest, and run the acceptance scenario."""
    if not context.has_route(r"/webhooks$", "POST"):
        raise EndpointMissing("the webhooks API is not registered yet")
    settings = context.settings
    raw = ensure_raw(context)
    per_row = Reference("INSERT, 1 txn/row, 1 connection", raw["median"]["per_row_1"], "rows/s")
    events = settings.webhook_events
    result = BenchmarkResult(NAME, TITLE)
    for subscriptions, dispatchers in ((1, 1), (4, 2)):
        rates = _delivery_rounds(context, subscriptions, dispatchers, events // subscriptions)
        result.figures.append(
            Figure(
                f"events delivered, {subscriptions} subscription(s), {dispatchers} dispatcher(s) × 2 workers",
                "events/s",
                spread(rates),
                reference=per_row,
                extra={"events_per_round": events},
            )
        )
    without, with_one = _ingest_cost(context)
    off = spread(without)
    result.figures.append(Figure("ingest, 1 client, no subscription", "submissions/s", off, reference=per_row))
    result.figures.append(
        Figure(
            "ingest, 1 client, one subscription (outbox row per submission)",
            "submissions/s",
            spread(with_one),
            reference=Reference("ingest, 1 client, no subscription", off.median, "submissions/s"),
            target=Target("≥ 0.85× the rate without a subscription", 0.85, "ratio_at_least"),
        )
    )
    result.notes.append(
        f"Delivery: {events} events per round to a loopback receiver answering 204, dispatchers started "
        "beforehand; one subscription is one ordered queue, sent one message at a time."
    )
    result.notes.append(
        f"Outbox cost: {settings.ingest_submissions} submissions per round, rounds alternating without and with "
        "one subscription to submission.created; the ratio of the second figure is its cost."
    )
    if settings.webhook_chaos_events:
        with tempfile.TemporaryDirectory(prefix="fieldsync-bench-chaos-") as var:
            chaos = run_chaos(context.database.sqlalchemy_url, Path(var), settings.webhook_chaos_events)
        problems, counts = check(chaos)
        result.data["chaos"] = {"seconds": round(chaos.seconds, 1), "steps": chaos.steps, **counts}
        verdict = "every promise held" if not problems else "**FAILED**: " + "; ".join(problems[:5])
        result.notes.append(
            f"Acceptance scenario (bench/webhook_chaos.py) with {chaos.events:,} events: {verdict}. "
            f"{counts['requests']:,} requests, {counts['failed_attempts']:,} failed on purpose, "
            f"{counts['duplicates']} duplicates (same webhook-id), {chaos.seconds:.0f} s on this machine; "
            + "; ".join(chaos.steps)
            + "."
        )
    return result
