"""Contended pushes: many clients push the same submission ids at once, each in its own shuffled order.

Offices that resend the same outbox (a relay and a phone, two phones sharing a cooperative's visits, a
client retrying after a lost reply) push the same ids concurrently. For ``contention_seconds`` (60 by
default) ``contention_clients`` (16) clients meet at a barrier, then all push one generation of
``contention_batch`` submissions (the same ids for everybody, each client's own order and batch id),
and go on with the next generation. Counted: the server's 5xx, PostgreSQL's deadlock counter for the
bench database (``pg_stat_database.deadlocks``, before and after), and every id stored exactly once.

Raw reference, same run, same barrier rhythm and sizes: as many psycopg connections, each writing the
same generation in one transaction that first takes the rows' advisory locks in sorted order and then
inserts the rows that are not stored yet (what a careful hand-written writer does). The ratio compares
items offered per second.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import requests

from bench.harness import Context, EndpointMissing
from bench.payloads import BENCH_FORM_VERSION, bench_form_id, generate_submissions, push_body
from bench.raw import bench_records, raw_target
from bench.raw_reference import RawRow, create_raw_tables, relabel, row_params
from bench.results import BenchmarkResult, Figure, Reference, Target
from bench.stats import latency, spread

NAME = "contention"
TITLE = "Contended pushes (the same ids from many clients, shuffled)"

# The raw writer: a row and its version, only when the id is not stored (the rows' locks are held).
INSERT_IF_ABSENT = """
WITH s AS (
    INSERT INTO bench_raw_submissions (project_id, form_id, instance_id, current_instance_id, review_state, edits,
        submitter_id, device_token_id, attachments_expected, attachments_present, created_at, updated_at)
    SELECT %(project_id)s, %(form_id)s, %(instance_id)s::varchar, %(instance_id)s::varchar, 'received', 0,
        NULL, %(device_token_id)s, 0, 0, now(), now()
    WHERE NOT EXISTS (SELECT 1 FROM bench_raw_submission_versions v WHERE v.project_id = %(project_id)s
        AND v.form_id = %(form_id)s AND v.instance_id = %(instance_id)s::varchar)
    RETURNING id
)
INSERT INTO bench_raw_submission_versions (submission_id, project_id, form_id, form_version_id, instance_id,
    deprecated_id, form_version, xml, xml_sha256, record, instance_name, encrypted, source, received_at,
    submitter_id, device_token_id, device_id, user_agent)
SELECT s.id, %(project_id)s, %(form_id)s, %(form_version_id)s, %(instance_id)s::varchar, NULL, %(form_version)s,
    %(xml)s, %(xml_sha256)s, %(record)s::jsonb, NULL, false, 'openrosa', now(), NULL, %(device_token_id)s,
    'contention', 'bench'
FROM s
"""
LOCK_SORTED = "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY 1) AS keys"


def _deadlocks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0


def _lock_key(instance_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(instance_id.encode(), digest_size=8).digest(), "big", signed=True)


def _rounds(clients: int, seconds: float, step: Callable[[int, int], None]) -> tuple[int, float]:
    """Run ``step(client, generation)`` in ``clients`` threads, a barrier before each generation, for
    ``seconds``; return the generations completed and the wall time."""
    barrier = threading.Barrier(clients)
    deadline = time.perf_counter() + seconds
    stop = threading.Event()
    done = [0]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        generation = 0
        while True:
            barrier.wait()
            if stop.is_set():
                return
            try:
                step(index, generation)
            except BaseException as exc:  # reported after the run, never swallowed
                errors.append(exc)
                stop.set()
            generation += 1
            if index == 0:
                done[0] = generation
                if time.perf_counter() >= deadline:
                    stop.set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return done[0], time.perf_counter() - start


def _server(context: Context, clients: int, seconds: float, size: int) -> dict[str, Any]:
    form_id = bench_form_id(0)
    url = f"{context.base_url}/v1/projects/{context.project_id}/sync/push"
    sessions = [requests.Session() for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: list[Counter[int]] = [Counter() for _ in range(clients)]
    items: list[Counter[str]] = [Counter() for _ in range(clients)]
    generations: dict[int, list[Any]] = {}
    lock = threading.Lock()

    def submissions(generation: int) -> list[Any]:
        with lock:
            if generation not in generations:
                generations[generation] = list(generate_submissions(size, run_tag=f"contention-{generation}"))
            return generations[generation]

    def step(index: int, generation: int) -> None:
        subs = list(submissions(generation))
        random.Random(f"{index}:{generation}").shuffle(subs)
        batch_id = f"contention-{generation}-{index}"
        body = push_body(subs, device_id=f"contention-{index}", batch_id=batch_id, form_id=form_id,
                         version=BENCH_FORM_VERSION)  # fmt: skip
        headers = {**context.device_headers(), "Content-Type": "application/json", "Idempotency-Key": batch_id}
        t0 = time.perf_counter()
        response = sessions[index].post(url, data=body, headers=headers, timeout=300)
        latencies[index].append(time.perf_counter() - t0)
        statuses[index][response.status_code] += 1
        if response.status_code == 200:
            items[index].update(str(r.get("status")) for r in response.json().get("results", []))

    before = _deadlocks(context.database.url)
    done, elapsed = _rounds(clients, seconds, step)
    deadlocks = _deadlocks(context.database.url) - before
    ids = [s.instance_id for g in range(done) for s in generations[g]]
    with psycopg.connect(context.database.url) as conn:
        stored = Counter(
            conn.execute("SELECT instance_id FROM submission_versions WHERE instance_id = ANY(%s)", (ids,)).fetchall()
        )
    return {
        "generations": done,
        "elapsed": elapsed,
        "latencies": [lat for part in latencies for lat in part],
        "statuses": sum(statuses, Counter()),
        "items": sum(items, Counter()),
        "deadlocks": deadlocks,
        "stored_once": sum(1 for count in stored.values() if count == 1),
        "stored_twice": sum(1 for count in stored.values() if count > 1),
        "ids": len(ids),
    }


def _raw(context: Context, clients: int, seconds: float, size: int) -> dict[str, Any]:
    create_raw_tables(context.database.url)
    target = raw_target(context)
    base = bench_records(size, "contention-raw")
    conns = [psycopg.connect(context.database.url) for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]

    def step(index: int, generation: int) -> None:
        rows: list[RawRow] = relabel(base, f"g{generation}")
        random.Random(f"{index}:{generation}").shuffle(rows)
        params = [row_params(r, target) for r in rows]
        conn = conns[index]
        t0 = time.perf_counter()
        conn.execute(LOCK_SORTED, ([_lock_key(r.instance_id) for r in rows],))
        with conn.cursor() as cur:
            cur.executemany(INSERT_IF_ABSENT, params)
        conn.commit()
        latencies[index].append(time.perf_counter() - t0)

    before = _deadlocks(context.database.url)
    try:
        done, elapsed = _rounds(clients, seconds, step)
    finally:
        for conn in conns:
            conn.close()
    return {
        "generations": done,
        "elapsed": elapsed,
        "latencies": [lat for part in latencies for lat in part],
        "deadlocks": _deadlocks(context.database.url) - before,
    }


def run(context: Context) -> BenchmarkResult:
    """Measure contended pushes of the same ids against a raw writer doing the same work."""
    if not context.has_route(r"/sync/push$", "POST"):
        raise EndpointMissing("the sync push route is not registered yet")
    settings = context.settings
    clients, seconds, size = settings.contention_clients, settings.contention_seconds, settings.contention_batch
    context.ensure_bench_form(0)
    server = _server(context, clients, seconds, size)
    raw = _raw(context, clients, seconds, size)
    offered = server["generations"] * clients * size / server["elapsed"]
    raw_offered = raw["generations"] * clients * size / raw["elapsed"]
    errors = sum(n for status, n in server["statuses"].items() if status >= 500)
    result = BenchmarkResult(NAME, TITLE)
    result.figures.append(
        Figure(
            name=f"{clients} clients pushing the same {size} ids, shuffled",
            unit="items/s",
            spread=spread([offered]),
            latency=latency(server["latencies"]),
            reference=Reference(
                f"{clients} connections, sorted advisory locks + insert-if-absent", raw_offered, "rows/s"
            ),
            extra={
                "seconds": round(server["elapsed"], 1),
                "generations": server["generations"],
                "deadlocks": server["deadlocks"],
                "raw_deadlocks": raw["deadlocks"],
                "server_errors": errors,
                "statuses": dict(server["statuses"]),
                "item_statuses": dict(server["items"]),
            },
        )
    )
    result.figures.append(
        Figure(
            name="deadlocks during the contended pushes (pg_stat_database)",
            unit="deadlocks",
            spread=spread([float(server["deadlocks"])]),
            target=Target("0 deadlocks (issue 15 row 10)", 0, "at_most"),
        )
    )
    result.figures.append(
        Figure(
            name="5xx answers during the contended pushes",
            unit="answers",
            spread=spread([float(errors)]),
            target=Target("0 × 5xx", 0, "at_most"),
        )
    )
    lost = server["ids"] - server["stored_once"] - server["stored_twice"]
    result.figures.append(
        Figure(
            name="ids lost or stored twice",
            unit="ids",
            spread=spread([float(lost + server["stored_twice"])]),
            target=Target("0 (nothing lost, nothing duplicated)", 0, "at_most"),
            extra={"ids": server["ids"], "lost": lost, "stored_twice": server["stored_twice"]},
        )
    )
    result.notes.append(
        f"{clients} clients × {server['generations']} generations of {size} submissions in "
        f"{server['elapsed']:.0f} s; every client pushes each generation in its own order, with its own batch id; "
        f"item outcomes {json.dumps(dict(server['items']))}; latency columns are per batch (the p99 is the "
        "figure issue 15 asks for)."
    )
    return result
