"""The raw-database write references of this run: per-row transactions, batched executemany, COPY.

Measured once per run (the write benchmarks compare against them), on the same ~2 KB submissions
with their parsed records, into tables shaped like the server's submission tables.
"""

from __future__ import annotations

import json
from typing import Any

from bench.harness import Context, EndpointMissing
from bench.payloads import BENCH_FORM_VERSION, build_bench_xlsform, generate_submissions
from bench.raw_reference import (
    RawRow,
    RawTarget,
    create_raw_tables,
    insert_batched,
    insert_batched_concurrently,
    insert_copy,
    insert_one_per_transaction,
    make_raw_row,
    relabel,
)
from bench.results import BenchmarkResult, Figure
from bench.stats import latency, spread

NAME = "raw"
TITLE = "Raw PostgreSQL references (same rows, psycopg 3 alone)"


def bench_records(count: int, run_tag: str, extra_fields: int = 0, xml_form_id: str | None = None) -> list[RawRow]:
    """Return ``count`` bench submissions as raw rows, records parsed by ``forms`` like the server does."""
    from forms.convert import convert_upload
    from forms.submission import parse_submission

    schema = convert_upload(build_bench_xlsform(extra_fields, xml_form_id=xml_form_id), "bench.xlsx").schema
    rows = []
    for sub in generate_submissions(count, run_tag=run_tag, extra_fields=extra_fields, xml_form_id=xml_form_id):
        record = parse_submission(sub.xml, schema)
        rows.append(make_raw_row(sub.instance_id, sub.xml, json.loads(json.dumps(record.values)), BENCH_FORM_VERSION))
    return rows


def raw_target(context: Context) -> RawTarget:
    """Ids for raw rows: the published bench form when there is one, else placeholders."""
    try:
        form = context.ensure_bench_form(0)
        form_id, version_id = form.form_id, form.version_id
    except (EndpointMissing, RuntimeError):
        form_id, version_id = 1, 1
    return RawTarget(context.project_id, form_id, version_id, context.device_token_id())


def ensure_raw(context: Context) -> dict[str, Any]:
    """Measure the raw references once per run and return their medians (rows/s)."""
    if "raw" in context.shared:
        raw: dict[str, Any] = context.shared["raw"]
        return raw
    settings = context.settings
    url = context.database.url
    create_raw_tables(url)
    target = raw_target(context)
    base = bench_records(settings.raw_rows, "raw")
    per_row_n = settings.clients
    batched_n = min(settings.clients, 4)  # as many connections as the concurrent push series has clients
    series: dict[str, list[Any]] = {"per_row_1": [], "per_row_n": [], "batched": [], "batched_n": [], "copy": []}
    # Warm-up: fill caches and the sequences once, unmeasured.
    insert_batched(url, relabel(base[:200], "warm"), target, settings.push_batch_size)
    for round_index in range(settings.rounds):
        tag = f"r{round_index}"
        series["per_row_1"].append(insert_one_per_transaction(url, relabel(base[: len(base) // 2], f"{tag}a"), target))
        series["per_row_n"].append(
            insert_one_per_transaction(url, relabel(base, f"{tag}b"), target, connections=per_row_n)
        )
        series["batched"].append(insert_batched(url, _twice(base, tag), target, settings.push_batch_size))
        series["batched_n"].append(
            insert_batched_concurrently(url, _twice(base, f"{tag}n"), target, batched_n, settings.push_batch_size)
        )
        series["copy"].append(insert_copy(url, _five_times(base, tag), target))
    raw = {
        "rows": {k: [t.rows for t in v] for k, v in series.items()},
        "per_second": {k: [t.per_second for t in v] for k, v in series.items()},
        "latencies": {k: [lat for t in v for lat in t.latencies] for k, v in series.items()},
        "connections_n": per_row_n,
        "batched_connections": batched_n,
        "batch_size": settings.push_batch_size,
        "avg_xml_bytes": sum(len(r.xml) for r in base) / len(base),
        "avg_record_bytes": sum(len(r.record_json.encode()) for r in base) / len(base),
    }
    raw["median"] = {k: spread(v).median for k, v in raw["per_second"].items()}
    context.shared["raw"] = raw
    return raw


def _twice(rows: list[RawRow], tag: str) -> list[RawRow]:
    return relabel(rows, f"{tag}c1") + relabel(rows, f"{tag}c2")


def _five_times(rows: list[RawRow], tag: str) -> list[RawRow]:
    return [row for part in range(5) for row in relabel(rows, f"{tag}d{part}")]


def run(context: Context) -> BenchmarkResult:
    """Report the raw references as a table of their own."""
    raw = ensure_raw(context)
    n = raw["connections_n"]
    labels = {
        "per_row_1": "INSERT, one transaction per row, 1 connection",
        "per_row_n": f"INSERT, one transaction per row, {n} connections",
        "batched": f"executemany (pipeline), one transaction per {raw['batch_size']} rows",
        "batched_n": f"executemany (pipeline), {raw.get('batched_connections', 4)} connections at once",
        "copy": "COPY FROM STDIN, one transaction",
    }
    result = BenchmarkResult(NAME, TITLE)
    for key, label in labels.items():
        lat = raw["latencies"][key]
        result.figures.append(
            Figure(
                name=label,
                unit="rows/s",
                spread=spread(raw["per_second"][key]),
                latency=latency(lat) if lat else None,
                extra={"rows_per_round": raw["rows"][key][0]},
            )
        )
    result.notes.append(
        f"A row is one logical submission: one row in a `submissions`-shaped table and one in a "
        f"`submission_versions`-shaped table (XML {raw['avg_xml_bytes']:.0f} B as bytea, parsed record "
        f"{raw['avg_record_bytes']:.0f} B as jsonb, unique key, the same indexes; no foreign keys). "
        "Latency columns are per row (per batch for executemany)."
    )
    result.data["median"] = raw["median"]
    return result
