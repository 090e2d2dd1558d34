"""formList: how fast phones can ask which forms to download, with and without ``304 Not Modified``.

Measured through the device-token URL Collect is given (no password hashing per request), from one
client and from N clients; raw reference: the same formList SELECT run by psycopg directly, on one
and on N connections. Target (issue 7): at least 1,000 requests/s (ODK Central: about 250).
"""

from __future__ import annotations

from bench.harness import Context, EndpointMissing
from bench.load import LoadResult, PreparedRequest, load_figure, run_load
from bench.raw_reference import select_formlist
from bench.results import BenchmarkResult, Reference, Target
from bench.stats import spread

NAME = "formlist"
TITLE = "OpenRosa formList"
# Issue 21: from 8 clients, at least a quarter of what the raw formList SELECT serves over 8 connections.
TARGET = Target("≥ 0.25× the raw formList SELECT (issue 21)", 0.25, "ratio_at_least")
OPENROSA_HEADERS = {"X-OpenRosa-Version": "1.0", "Accept-Language": "fr"}


def _rounds(context: Context, request: PreparedRequest, clients: int, expected: int) -> list[LoadResult]:
    settings = context.settings
    items = [request] * settings.formlist_requests
    for _ in range(settings.warmup):
        run_load(context.base_url, items[: max(50, len(items) // 5)], clients=clients,
                 mode=settings.client_mode, expected=frozenset({expected}))  # fmt: skip
    results = []
    for _ in range(settings.rounds):
        result = run_load(
            context.base_url, items, clients=clients, mode=settings.client_mode, expected=frozenset({expected})
        )
        if result.unexpected:
            raise RuntimeError(f"formList answered unexpectedly {result.unexpected} times: {result.sample_error}")
        results.append(result)
    return results


def run(context: Context) -> BenchmarkResult:
    """Measure formList throughput and latency (200 and 304) against the raw SELECT."""
    if not context.has_route(r"/formList$"):
        raise EndpointMissing("the OpenRosa formList route is not registered yet")
    for extra in context.settings.form_sizes:
        context.ensure_bench_form(extra)
    path = f"{context.collect_prefix}/formList"
    import requests

    first = requests.get(context.base_url + path, headers=OPENROSA_HEADERS, timeout=30)
    if first.status_code != 200:
        raise RuntimeError(f"formList answered {first.status_code}: {first.text[:300]}")
    etag = first.headers.get("ETag")
    clients = context.settings.clients
    settings = context.settings

    raw_one = [select_formlist(context.database.url, context.project_id, settings.formlist_requests)
               for _ in range(settings.rounds)]  # fmt: skip
    raw_many = [select_formlist(context.database.url, context.project_id, settings.formlist_requests, clients)
                for _ in range(settings.rounds)]  # fmt: skip
    ref_one = Reference("formList SELECT, 1 connection", spread([t.per_second for t in raw_one]).median, "queries/s")
    ref_many = Reference(
        f"formList SELECT, {clients} connections", spread([t.per_second for t in raw_many]).median, "queries/s"
    )

    full = PreparedRequest("GET", path, dict(OPENROSA_HEADERS))
    result = BenchmarkResult(NAME, TITLE)
    one = _rounds(context, full, 1, 200)
    result.figures.append(load_figure("formList, 1 client (200)", "req/s", one, ref_one, None))
    many = _rounds(context, full, clients, 200)
    result.figures.append(load_figure(f"formList, {clients} clients (200)", "req/s", many, ref_many, TARGET))
    # Threads or processes for the clients? Measured every run: one Python process driving N threads
    # competes for its own GIL, which would understate the server.
    other_mode = "threads" if settings.client_mode == "processes" else "processes"
    other = [
        run_load(context.base_url, [full] * (settings.formlist_requests // 2), clients=clients, mode=other_mode)
        for _ in range(settings.rounds)
    ]
    result.data["client_modes"] = {
        settings.client_mode: result.figures[-1].spread.median,
        other_mode: spread([r.per_second for r in other]).median,
    }
    result.notes.append(
        f"Client mode check, {clients} clients (200): {settings.client_mode} {result.figures[-1].spread.median:,.0f} "
        f"req/s vs {other_mode} {result.data['client_modes'][other_mode]:,.0f} req/s; the harness uses "
        f"{settings.client_mode} (client CPU per request is in results.json)."
    )
    if etag:
        cached = PreparedRequest("GET", path, {**OPENROSA_HEADERS, "If-None-Match": etag})
        not_modified = _rounds(context, cached, clients, 304)
        result.figures.append(
            load_figure(f"formList, {clients} clients (304)", "req/s", not_modified, ref_many, TARGET)
        )
    else:
        result.notes.append("formList sent no ETag, so the 304 path could not be measured.")
    result.notes.append(
        f"{len(context.forms)} published forms listed; {settings.formlist_requests} requests per round; "
        f"clients are {settings.client_mode} with one kept-alive http.client connection each; "
        "URL with a device token in the path."
    )
    result.data["forms_listed"] = len(context.forms)
    result.data["body_bytes"] = len(first.content)
    return result
