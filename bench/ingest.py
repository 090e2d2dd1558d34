"""OpenRosa ingest: ~2 KB submissions POSTed as ODK Collect does, from 1 client and from N clients.

Each request is a multipart POST of one ``xml_submission_file`` to the device-token URL, with a
unique instanceID; every answer must be ``201`` and the database must hold exactly one submission
per instance afterwards (checked). Raw references: the same rows inserted one transaction per row
from 1 and N connections (what a one-request-per-submission protocol costs the database at least).
Targets (issue 21), ratios to those references in the same run: at least 0.30x from 1 client and 0.25x
from N (8 by default) clients.
The cost model's series (clients 1 / 4 / N, form size 0 / 50 / 200 extra questions) are measured
with fewer submissions and one round each.
"""

from __future__ import annotations

import psycopg

from bench.harness import Context, EndpointMissing, PublishedForm
from bench.load import LoadResult, PreparedRequest, load_figure, run_load
from bench.payloads import generate_submissions, multipart_body
from bench.raw import ensure_raw
from bench.results import BenchmarkResult, Reference, Target
from bench.stats import spread

NAME = "ingest"
TITLE = "OpenRosa submission ingest"
ONE_CLIENT_TARGET = Target("≥ 0.30× the raw INSERT, 1 txn/row, 1 connection (issue 21)", 0.30, "ratio_at_least")
BOUNDARY = "fieldsyncbenchboundary7d0c1e"
HEADERS = {
    "X-OpenRosa-Version": "1.0",
    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    "User-Agent": "org.odk.collect.android/v2024.3.2 (bench)",
    "Accept-Language": "fr",
}


def many_clients_target(connections: int) -> Target:
    """Return the issue-21 target of ingest from several clients: 0.25x the raw per-row insert from as many."""
    return Target(f"≥ 0.25× the raw INSERT, 1 txn/row, {connections} connections (issue 21)", 0.25, "ratio_at_least")


def submission_requests(context: Context, count: int, tag: str, extra_fields: int = 0) -> list[PreparedRequest]:
    """Return ``count`` prepared submission POSTs (unique instanceIDs for ``tag``)."""
    path = f"{context.collect_prefix}/submission?deviceID=collect%3Abench"
    return [
        PreparedRequest("POST", path, HEADERS, multipart_body(sub.xml, BOUNDARY))
        for sub in generate_submissions(count, run_tag=f"ingest-{tag}", extra_fields=extra_fields)
    ]


def stored_count(context: Context, form: PublishedForm) -> int:
    """Return how many submissions the form holds."""
    with psycopg.connect(context.database.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM submissions WHERE project_id = %s AND form_id = %s",
            (context.project_id, form.form_id),
        ).fetchone()
    return int(row[0]) if row else 0


def _load(context: Context, items: list[PreparedRequest], clients: int) -> LoadResult:
    result = run_load(
        context.base_url, items, clients=clients, mode=context.settings.client_mode, expected=frozenset({201})
    )
    if result.unexpected:
        raise RuntimeError(f"{result.unexpected} submissions were not answered 201: {result.sample_error}")
    return result


def _measure(context: Context, clients: int, count: int, rounds: int, label: str) -> list[LoadResult]:
    for warm in range(context.settings.warmup):
        _load(context, submission_requests(context, max(40, count // 10), f"{label}-warm{warm}"), clients)
    return [_load(context, submission_requests(context, count, f"{label}-r{i}"), clients) for i in range(rounds)]


RESEND_TARGET = Target("≥ 1.5× the new-submission rate (issue 21)", 1.5, "ratio_at_least")


def _resend_figures(
    context: Context,
    result: BenchmarkResult,
    count: int,
    clients: int,
    new: dict[int, list[LoadResult]],
    form: PublishedForm,
) -> None:
    """Send already-stored submissions again, byte for byte (what Collect does after a lost answer)."""
    before = stored_count(context, form)
    for n, label in ((1, "c1"), (clients, f"c{clients}")):
        # The rounds measured above, generated again from the same tags: identical bodies and instanceIDs.
        rounds = [
            run_load(context.base_url, submission_requests(context, count, f"{label}-r{i}"), clients=n,
                     mode=context.settings.client_mode, expected=frozenset({200, 201, 202}))
            for i in range(len(new[n]))
        ]  # fmt: skip
        if any(r.unexpected for r in rounds):
            raise RuntimeError(f"an identical resend was not accepted: {rounds[0].sample_error}")
        reference = Reference(
            f"new submissions, {n} client(s), same run", spread([r.per_second for r in new[n]]).median, "submissions/s"
        )
        name = f"identical resend, {n} client{'s' if n > 1 else ''}"
        result.figures.append(load_figure(name, "submissions/s", rounds, reference, RESEND_TARGET))
    stored = stored_count(context, form) - before
    result.notes.append(
        f"Identical resends: every stored submission of the measured rounds sent again; {stored} new rows "
        "(must be 0). Their reference is the new-submission rate of the same clients in this run."
    )


def run(context: Context) -> BenchmarkResult:
    """Measure OpenRosa ingest from 1 and N clients against raw per-row inserts."""
    if not context.has_route(r"/submission$", "POST"):
        raise EndpointMissing("the OpenRosa submission route is not registered yet")
    settings = context.settings
    form = context.ensure_bench_form(0)
    raw = ensure_raw(context)
    clients = settings.clients
    count = settings.ingest_submissions
    before = stored_count(context, form)

    one = _measure(context, 1, count, settings.rounds, "c1")
    many = _measure(context, clients, count, settings.rounds, f"c{clients}")
    sent = sum(r.count for r in one + many) + settings.warmup * (max(40, count // 10) * 2)
    stored = stored_count(context, form) - before

    result = BenchmarkResult(NAME, TITLE)
    ref_one = Reference("INSERT, 1 txn/row, 1 connection", raw["median"]["per_row_1"], "rows/s")
    ref_many = Reference(f"INSERT, 1 txn/row, {raw['connections_n']} connections", raw["median"]["per_row_n"], "rows/s")
    result.figures.append(
        load_figure(
            "ingest, 1 client",
            "submissions/s",
            one,
            ref_one,
            ONE_CLIENT_TARGET,
            {"submissions_per_round": count},
        )
    )
    result.figures.append(
        load_figure(
            f"ingest, {clients} clients",
            "submissions/s",
            many,
            ref_many,
            many_clients_target(raw["connections_n"]),
            {"submissions_per_round": count},
        )
    )
    if stored != sent:
        result.notes.append(f"**Integrity check failed**: sent {sent} distinct submissions, {stored} stored.")
    else:
        result.notes.append(f"Integrity: {sent} distinct submissions sent, exactly {stored} stored, every answer 201.")

    _resend_figures(context, result, count, clients, {1: one, clients: many}, form)

    # Cost-model series: one round each, fewer submissions.
    small = max(100, count // 2)
    by_clients: dict[int, float] = {1: spread([r.per_second for r in one]).median}
    by_clients[clients] = spread([r.per_second for r in many]).median
    middle = max(2, clients // 2)
    if middle not in by_clients:
        by_clients[middle] = _load(context, submission_requests(context, small, f"c{middle}"), middle).per_second
    by_form_size: dict[int, float] = {}
    for extra in settings.form_sizes:
        sized = context.ensure_bench_form(extra)
        items = submission_requests(context, small, f"size{extra}", extra_fields=extra)
        _load(context, items[:20], 1)  # warm the new form's schema cache
        by_form_size[extra] = _load(context, items[20:], 1).per_second
        result.data.setdefault("form_ids", {})[extra] = sized.form_id
    result.data["by_clients"] = dict(sorted(by_clients.items()))
    result.data["by_form_size"] = by_form_size
    result.data["avg_body_bytes"] = sum(len(r.body or b"") for r in submission_requests(context, 20, "size")) / 20
    result.notes.append(
        "Throughput by concurrent clients (1 round each beyond the main figures): "
        + ", ".join(f"{c} → {v:,.0f}/s" for c, v in sorted(by_clients.items()))
        + "; by form size (extra questions, 1 client): "
        + ", ".join(f"+{e} → {v:,.0f}/s" for e, v in by_form_size.items())
        + "."
    )
    result.notes.append(
        f"{count} submissions per round, multipart bodies of ~{result.data['avg_body_bytes']:,.0f} B, "
        f"clients are {settings.client_mode} with one kept-alive http.client connection each."
    )
    return result
