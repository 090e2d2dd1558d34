"""JSON sync push: batches of 200 ~2 KB submissions, as our own clients upload an outbox.

One client pushes ``push_batches`` batches per round, each with its own ``Idempotency-Key``; every
item must come back ``created`` (checked). Items/s = items / wall time. Raw reference: the same rows
inserted with batched ``executemany`` in pipeline mode, one transaction per 200 rows, in the same
run. Target (issue 5): at least 25% of the raw batched-insert rate. A second series pushes from N
clients at once (devices syncing together), compared with N connections inserting raw batches at
once, and feeds the cost model.
"""

from __future__ import annotations

from collections import Counter

import requests

from bench.harness import Context, EndpointMissing
from bench.load import LoadResult, PreparedRequest, run_load
from bench.payloads import generate_submissions, push_body
from bench.raw import ensure_raw
from bench.results import BenchmarkResult, Figure, Reference, Target
from bench.stats import latency, spread

NAME = "push"
TITLE = "JSON sync push (batches of 200)"
DEVICE_ID = "bench-device-1"


def push_requests(context: Context, batches: int, tag: str) -> list[PreparedRequest]:
    """Return ``batches`` prepared push requests of ``push_batch_size`` fresh submissions each."""
    size = context.settings.push_batch_size
    subs = list(generate_submissions(batches * size, run_tag=f"push-{tag}"))
    path = f"/v1/projects/{context.project_id}/sync/push"
    prepared = []
    for index in range(batches):
        batch_id = f"bench-{tag}-{index}"
        body = push_body(subs[index * size : (index + 1) * size], device_id=DEVICE_ID, batch_id=batch_id)
        headers = {**context.device_headers(), "Content-Type": "application/json", "Idempotency-Key": batch_id}
        prepared.append(PreparedRequest("POST", path, headers, body))
    return prepared


def _check_outcomes(context: Context, request: PreparedRequest) -> Counter[str]:
    """Replay one batch (idempotent: the stored reply comes back) and count its item statuses."""
    response = requests.post(context.base_url + request.path, data=request.body, headers=request.headers, timeout=120)
    body = response.json()
    items = body.get("results") or body.get("items") or []
    return Counter(str(item.get("status")) for item in items)


def _load(context: Context, items: list[PreparedRequest], clients: int = 1) -> LoadResult:
    result = run_load(context.base_url, items, clients=clients, mode=context.settings.client_mode)
    if result.unexpected:
        raise RuntimeError(f"{result.unexpected} pushes were not answered 200: {result.sample_error}")
    return result


def run(context: Context) -> BenchmarkResult:
    """Measure push items/s against the raw batched-insert rate."""
    if not context.has_route(r"/sync/push$", "POST"):
        raise EndpointMissing("the sync push route is not registered yet")
    settings = context.settings
    context.ensure_bench_form(0)
    raw = ensure_raw(context)
    size = settings.push_batch_size
    batches = settings.push_batches

    for warm in range(settings.warmup):
        # From as many clients as there are workers, so that (most likely) every gunicorn worker has
        # served a batch before the clock starts: a worker's first batch compiles its statements.
        warm_requests = push_requests(context, 2 * settings.workers, f"warm{warm}")
        _load(context, warm_requests, settings.workers)
    statuses = _check_outcomes(context, warm_requests[0]) if settings.warmup else Counter()
    rounds = [_load(context, push_requests(context, batches, f"r{i}")) for i in range(settings.rounds)]
    per_item = [r.per_second * size for r in rounds]
    body_bytes = len(push_requests(context, 1, "size")[0].body or b"")

    result = BenchmarkResult(NAME, TITLE)
    reference = Reference(f"executemany, 1 txn per {size} rows", raw["median"]["batched"], "rows/s")
    result.figures.append(
        Figure(
            name=f"push, 1 client, {size} items per batch",
            unit="items/s",
            spread=spread(per_item),
            latency=latency([lat for r in rounds for lat in r.latencies]),
            reference=reference,
            target=Target("≥ 25% of the raw batched-insert rate", 0.25, "ratio_at_least"),
            extra={"batches_per_round": batches, "body_bytes": body_bytes},
        )
    )
    clients = min(settings.clients, 4)
    # Each client pushes as many batches as the one client of a round: one batch each (a quarter of a
    # second) left this figure to chance, from 0.12x to 0.42x between runs of the same code.
    concurrent_batches = clients * batches
    concurrent = _load(context, push_requests(context, concurrent_batches, f"c{clients}"), clients)
    result.figures.append(
        Figure(
            name=f"push, {clients} clients at once",
            unit="items/s",
            spread=spread([concurrent.per_second * size]),
            latency=latency(concurrent.latencies),
            # Like for like: the same number of connections inserting raw batches at once.
            reference=Reference(
                f"executemany, {raw.get('batched_connections', clients)} connections at once",
                raw["median"].get("batched_n", raw["median"]["batched"]),
                "rows/s",
            ),
            extra={"batches": concurrent_batches},
        )
    )
    if statuses and set(statuses) != {"created"}:
        result.notes.append(f"Item statuses of a replayed warm-up batch: {dict(statuses)} (expected all created).")
    elif statuses:
        result.notes.append(f"A replayed batch returned its stored reply: {statuses['created']} items `created`.")
    result.notes.append(
        f"{batches} batches of {size} submissions per round (~{body_bytes / 1024:,.0f} KiB of JSON each, XML as "
        "strings, no gzip), one Idempotency-Key per batch; latency columns are per batch."
    )
    result.data["by_clients"] = {1: spread(per_item).median, clients: concurrent.per_second * size}
    result.data["replayed_statuses"] = dict(statuses)
    return result
