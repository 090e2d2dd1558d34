"""``docs/benchmarks.md`` from ``bench/results.json``: machine, versions, one table per benchmark, cost model.

Rendering is a pure function of the results dict, so a partial run (``python -m bench formlist``)
merges its figures into the stored results and the whole page is rendered again.
"""

from __future__ import annotations

from typing import Any

from bench.cost_model import render_cost_model

ORDER = ("raw", "formlist", "upload", "ingest", "push", "export")


def format_number(value: float | None, unit: str = "") -> str:
    """Format a figure for a table: thousands separators, fewer decimals for big numbers."""
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:,.1f}"
    elif magnitude >= 1:
        text = f"{value:,.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def format_ratio(value: float | None) -> str:
    """Format a ratio to the raw reference (``0.25×``), or a dash."""
    if value is None:
        return "—"
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def _latency_cell(latency: dict[str, Any] | None) -> str:
    if not latency:
        return "—"
    return f"{latency['p50_ms']:.1f} / {latency['p95_ms']:.1f} / {latency['p99_ms']:.1f}"


def _reference_cell(reference: dict[str, Any] | None) -> str:
    if not reference:
        return "—"
    return f"{reference['name']}: {format_number(reference['value'], reference['unit'])}"


def figure_row(figure: dict[str, Any]) -> str:
    """Return the markdown table row of one figure."""
    unit = figure["unit"]
    target = figure["target"]["text"] if figure.get("target") else "—"
    cells = [
        figure["name"],
        f"**{format_number(figure['median'], unit)}**",
        f"{format_number(figure['minimum'])} – {format_number(figure['maximum'])}",
        f"{format_number(figure['q1'])} – {format_number(figure['q3'])}",
        _latency_cell(figure.get("latency")),
        _reference_cell(figure.get("reference")),
        format_ratio(figure.get("ratio")),
        target,
        figure["status"],
    ]
    return "| " + " | ".join(cells) + " |"


TABLE_HEAD = (
    "| Figure | Median | Spread (min – max) | IQR (q1 – q3) | Latency p50 / p95 / p99 (ms) "
    "| Raw DB reference (same run) | Ratio to raw | Target | Status |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def render_benchmark(bench: dict[str, Any]) -> str:
    """Return the section of one benchmark."""
    lines = [f"## {bench['title']}", ""]
    if not bench["available"]:
        lines.append(f"**Not available** — {bench.get('reason') or 'no reason recorded'}.")
        lines.append("")
        return "\n".join(lines)
    if bench.get("measured_at"):
        lines.append(f"_Measured {bench['measured_at']} at commit `{bench.get('commit', '?')}`._")
        lines.append("")
    lines.append(TABLE_HEAD)
    lines.extend(figure_row(f) for f in bench["figures"])
    lines.append("")
    for note in bench.get("notes", []):
        lines.append(f"- {note}")
    if bench.get("notes"):
        lines.append("")
    return "\n".join(lines)


def render_summary(benchmarks: dict[str, dict[str, Any]]) -> str:
    """Return the table of every figure that has a target, with its status."""
    lines = [
        "## Targets at a glance",
        "",
        "| Benchmark | Figure | Median | Ratio to raw DB | Target | Status |",
        "|---|---|---|---|---|---|",
    ]
    for name in _ordered(benchmarks):
        bench = benchmarks[name]
        if not bench["available"]:
            lines.append(f"| {bench['title']} | — | — | — | — | not available |")
            continue
        for figure in bench["figures"]:
            if figure.get("target"):
                lines.append(
                    f"| {bench['title']} | {figure['name']} | {format_number(figure['median'], figure['unit'])} "
                    f"| {format_ratio(figure.get('ratio'))} | {figure['target']['text']} | **{figure['status']}** |"
                )
    lines.append("")
    return "\n".join(lines)


def _ordered(benchmarks: dict[str, dict[str, Any]]) -> list[str]:
    known = [name for name in ORDER if name in benchmarks]
    return known + sorted(name for name in benchmarks if name not in ORDER)


def render_markdown(results: dict[str, Any]) -> str:
    """Return the whole ``docs/benchmarks.md``."""
    meta = results["meta"]
    versions = meta["versions"]
    version_text = ", ".join(f"{k} {v}" for k, v in versions.items())
    settings = meta.get("settings", {})
    out = [
        "# Fieldsync benchmarks",
        "",
        "Written by the bench harness (`make bench`, or `.venv/bin/python -m bench [NAME ...]`); do not edit by "
        "hand. Every server figure is a median over several rounds after a warm-up, shown with its spread and "
        "next to the **raw PostgreSQL reference measured in the same run** on the same machine: these machines "
        "are shared and noisy, so the ratio is the figure to trust, the absolute number the one to quote.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {meta['cpu']} ({meta['cores']} cores usable) |",
        f"| RAM | {meta['ram_gib']} GiB |",
        f"| OS | {meta['os']} |",
        f"| Versions | {version_text} |",
        f"| Date | {meta['date']} |",
        f"| Commit | `{meta['commit']}` |",
        f"| Server | gunicorn, {settings.get('workers', '?')} workers × {settings.get('threads', '?')} threads "
        "(gthread, as `fieldsync serve`), access log off, on the same machine as the clients |",
        f"| Rounds | {settings.get('rounds', '?')} measured after {settings.get('warmup', '?')} warm-up |",
        f"| Run time | {meta.get('total_seconds', 0) / 60:,.1f} min for "
        + ("every benchmark" if meta.get("full_run") else "the benchmarks run")
        + " (database set-up, server start and teardown included) |",
        *(
            f"| Partial re-run | {', '.join(p['names'])} on {p['date']} at `{p['commit']}` |"
            for p in meta.get("partial_runs", [])
        ),
        "",
        "How to run: `make bench` (everything, < 15 min on 2 cores) or `.venv/bin/python -m bench formlist ingest` "
        "(some benchmarks; their figures replace those in `bench/results.json` and this page is rendered again). "
        "Sizes: `python -m bench --help` (flags) or `FIELDSYNC_BENCH_*` environment variables.",
        "",
        render_summary(results["benchmarks"]),
    ]
    for name in _ordered(results["benchmarks"]):
        out.append(render_benchmark(results["benchmarks"][name]))
    out.append(render_cost_model(results))
    return "\n".join(out).rstrip() + "\n"
