"""OData: a ``Submissions`` page of 1,000 rows with ``$expand=*`` at 100k submissions, and the whole feed.

100,000 submissions are seeded with ``COPY`` (as ``bench/export.py`` does) into a dedicated form. Two
figures:
- the first page, ``$top=1000&$expand=*`` (every repeat inline), p95 over ``REQUESTS`` requests a round,
  against the raw reference: the very SELECT the feed's reader runs for that page (the export's record
  query, 1,000 rows, same SQL and parameters) through psycopg alone, in the same run;
- the whole feed (no ``$top``: 100k rows streamed) in rows/s, with the server's peak RSS against the
  peak while streaming the first 10,000 rows (flat memory: within 25 %).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import requests
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from bench import export
from bench.harness import Context, EndpointMissing
from bench.raw import bench_records
from bench.raw_reference import RawTarget
from bench.results import BenchmarkResult, Figure, Reference, Target
from bench.server_process import watch_memory
from bench.stats import latency, percentile, spread

NAME = "odata"
TITLE = "OData Submissions feed at 100k submissions"
FORM_ID = "fieldsync_bench_odata"
SIZE = 100_000
PAGE = 1000
REQUESTS = 10


def _raw_statement(form_pk: int) -> tuple[str, Any]:
    """The SQL and parameters of the feed reader's first page, as the psycopg dialect sends them."""
    from exports.odata import FEED_OPTIONS
    from server.db.models.submissions import SubmissionVersion
    from server.db.queries.exports import _record_query

    statement = _record_query(form_pk, FEED_OPTIONS).order_by(SubmissionVersion.submission_id, SubmissionVersion.id)
    compiled = statement.limit(PAGE).compile(dialect=pg_dialect.dialect(), compile_kwargs={"render_postcompile": True})
    processors = compiled._bind_processors
    params = {k: (processors[k](v) if k in processors else v) for k, v in compiled.construct_params().items()}
    return str(compiled), params


def _time_raw(conn: psycopg.Connection[Any], sql: str, params: Any) -> list[float]:
    seconds = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        seconds.append(time.perf_counter() - began)
        if len(rows) != PAGE:
            raise RuntimeError(f"the raw SELECT returned {len(rows)} rows")
    return seconds


def _time_page(http: requests.Session, url: str, headers: dict[str, str]) -> list[float]:
    seconds = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        response = http.get(url, params={"$top": str(PAGE), "$expand": "*"}, headers=headers, timeout=120)
        body = response.content
        seconds.append(time.perf_counter() - began)
        if response.status_code != 200 or b"@odata.nextLink" not in body:
            raise RuntimeError(f"the feed answered {response.status_code}: {response.text[:300]}")
    return seconds


def _stream(context: Context, url: str, params: dict[str, str], stop_after: int | None) -> tuple[float, int, float]:
    """Read the feed (``stop_after`` bytes at most); return seconds, bytes and the workers' peak MiB."""
    with watch_memory(context.server.worker_pids()) as memory:
        began = time.perf_counter()
        response = requests.get(url, params=params, headers=context.admin_headers(), stream=True, timeout=1800)
        if response.status_code != 200:
            raise RuntimeError(f"the feed answered {response.status_code}: {response.text[:300]}")
        total = 0
        for chunk in response.iter_content(256 * 1024):
            total += len(chunk)
        elapsed = time.perf_counter() - began
    return elapsed, total, memory.peak_hwm_mib or memory.peak_rss_mib


def run(context: Context) -> BenchmarkResult:
    """Seed 100k submissions; time a 1,000-row expanded page against its SELECT, then stream the whole feed."""
    if not context.has_route(r"\.svc/<path:resource>$", "GET"):
        raise EndpointMissing("the OData feed (GET .../forms/<id>.svc/...) is not registered yet")
    form = context.ensure_bench_form(0, xml_form_id=FORM_ID)
    target = RawTarget(context.project_id, form.form_id, form.version_id, context.device_token_id())
    pool = bench_records(export.POOL_SIZE, "odata", xml_form_id=FORM_ID)
    seed_rate = export.seed(context, target, pool, 0, SIZE)
    url = f"{context.base_url}/v1/projects/{context.project_id}/forms/{FORM_ID}.svc/Submissions"
    headers = context.admin_headers()
    result = BenchmarkResult(NAME, TITLE)
    http = requests.Session()
    sql, params = _raw_statement(form.form_id)
    server_p95: list[float] = []
    raw_p95: list[float] = []
    every: list[float] = []
    with psycopg.connect(context.database.url) as conn:
        _time_raw(conn, sql, params)  # warm-up
        _time_page(http, url, headers)
        for _ in range(context.settings.rounds):
            raw = _time_raw(conn, sql, params)
            served = _time_page(http, url, headers)
            server_p95.append(percentile(served, 0.95) * 1000)
            raw_p95.append(percentile(raw, 0.95) * 1000)
            every.extend(served)
    result.figures.append(
        Figure(
            name=f"Submissions page of {PAGE:,} rows with $expand=*, p95",
            unit="ms",
            spread=spread(server_p95),
            latency=latency(every),
            reference=Reference(
                "the feed reader's SELECT of the page through psycopg, p95", spread(raw_p95).median, "ms"
            ),
        )
    )
    small_seconds, _, small_peak = _stream(context, url, {"$top": "10000"}, None)
    whole_seconds, whole_bytes, whole_peak = _stream(context, url, {}, None)
    result.figures.append(
        Figure(
            name=f"whole Submissions feed, {SIZE:,} rows streamed",
            unit="rows/s",
            spread=spread([SIZE / whole_seconds]),
            extra={"seconds": whole_seconds, "bytes": whole_bytes, "first_10k_seconds": small_seconds},
        )
    )
    result.figures.append(
        Figure(
            name=f"server peak RSS while streaming {SIZE:,} rows",
            unit="MiB",
            spread=spread([whole_peak]),
            target=Target(
                f"≤ {1.25 * small_peak:,.0f} MiB (flat: ≤ 1.25× the peak at 10,000 rows)", 1.25 * small_peak, "at_most"
            ),
        )
    )
    result.data["seed_rate"] = int(seed_rate)
    result.notes.append(
        f"{SIZE:,} submissions seeded with COPY at {seed_rate:,.0f} rows/s. The page is the first one; the ratio "
        "is server p95 / raw p95: HTTP, authentication, the export's cleaning, the typed entities with their "
        "repeats and JSON on top of the SELECT. `$filter` runs on the rows as the feed shows them, so a filtered "
        "page reads the form's rows until it has its page."
    )
    return result
