"""``python -m bench [NAME ...]``: run the benchmarks against a fresh PostgreSQL database and write the report.

Without names every benchmark runs and ``bench/results.json`` is rewritten; with names only those
run and their figures replace the stored ones (the page is rendered again from the merged results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from bench import (
    contention,
    dashboard,
    export,
    formlist,
    ingest,
    memory,
    odata,
    push,
    raw,
    relay,
    submission_table,
    upload,
    webhooks,
)
from bench.database import ensure_postgres_running, fresh_database, server_version
from bench.harness import Benchmark, Context, Settings, run_benchmark
from bench.machine import describe_machine, git_commit
from bench.report import render_markdown
from bench.server_process import create_accounts, running_server, server_environment

REPO = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO / "bench" / "results.json"
REPORT_PATH = REPO / "docs" / "benchmarks.md"

BENCHMARKS: dict[str, tuple[str, Benchmark]] = {
    raw.NAME: (raw.TITLE, raw.run),
    formlist.NAME: (formlist.TITLE, formlist.run),
    upload.NAME: (upload.TITLE, upload.run),
    ingest.NAME: (ingest.TITLE, ingest.run),
    push.NAME: (push.TITLE, push.run),
    contention.NAME: (contention.TITLE, contention.run),
    export.NAME: (export.TITLE, export.run),
    webhooks.NAME: (webhooks.TITLE, webhooks.run),
    submission_table.NAME: (submission_table.TITLE, submission_table.run),
    dashboard.NAME: (dashboard.TITLE, dashboard.run),
    memory.NAME: (memory.TITLE, memory.run),
    odata.NAME: (odata.TITLE, odata.run),
    relay.NAME: (relay.TITLE, relay.run),
}


def _parse_args(argv: list[str]) -> tuple[list[str], Settings, argparse.Namespace]:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all): " + ", ".join(BENCHMARKS))
    for item in fields(Settings):
        if item.name in ("admin_url", "keep_database"):
            continue
        value = getattr(settings, item.name)
        flag = "--" + item.name.replace("_", "-")
        env = "FIELDSYNC_BENCH_" + item.name.upper()
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=value,
                                help=f"(env {env}, default {value})")  # fmt: skip
        elif isinstance(value, tuple):
            parser.add_argument(flag, type=lambda s: tuple(int(v) for v in s.split(",")), default=value,
                                help=f"comma-separated (env {env}, default {','.join(map(str, value))})")  # fmt: skip
        elif isinstance(value, int):
            parser.add_argument(flag, type=int, default=value, help=f"(env {env}, default {value})")
        else:
            parser.add_argument(flag, default=value, help=f"(env {env}, default {value})")
    parser.add_argument("--admin-url", default=settings.admin_url, help="libpq URL of the maintenance database")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the bench database at the end")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--report", type=Path, default=REPORT_PATH)
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose among {', '.join(BENCHMARKS)}")
    for item in fields(Settings):
        setattr(settings, item.name, getattr(args, item.name))
    names = args.names or list(BENCHMARKS)
    return names, settings, args


def _app_routes(env: dict[str, str]) -> list[tuple[str, frozenset[str]]]:
    """Read the app's URL map in a subprocess-free way: build the app with the bench environment."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from server import create_app

        app = create_app()
        return [(rule.rule, frozenset(rule.methods or ())) for rule in app.url_map.iter_rules()]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _load_previous(path: Path) -> dict[str, Any]:
    try:
        previous: dict[str, Any] = json.loads(path.read_text())
        return previous
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and write ``bench/results.json`` and ``docs/benchmarks.md``."""
    names, settings, args = _parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    ensure_postgres_running(settings.admin_url)
    results: dict[str, Any] = {"benchmarks": {}}
    with (
        fresh_database(settings.admin_url, keep=args.keep_database) as database,
        tempfile.TemporaryDirectory(prefix="fieldsync-bench-") as tmp,
    ):
        work_dir = Path(tmp)
        env = server_environment(database.sqlalchemy_url, work_dir)
        accounts = create_accounts(env)
        routes = _app_routes(env)
        meta = describe_machine(server_version(database.url))
        meta["settings"] = settings.as_dict()
        print(f"bench: database {database.name}, {settings.workers} workers; running {', '.join(names)}", flush=True)
        with running_server(env, work_dir, settings.workers, settings.threads) as server:
            context = Context(settings, database, server, accounts, routes)
            for name in names:
                title, benchmark = BENCHMARKS[name]
                print(f"bench: {name} ...", flush=True)
                load_before = os.getloadavg()
                result = run_benchmark(name, title, benchmark, context)
                load_after = os.getloadavg()
                entry = result.as_dict()
                # The machine is shared: the load says how far the absolute figures can be trusted.
                entry.setdefault("data", {})["load_average"] = {"start": load_before, "end": load_after}
                entry.setdefault("notes", []).append(
                    "Load average (1 / 5 / 15 min) at the start: "
                    + " / ".join(f"{v:.2f}" for v in load_before)
                    + "; at the end: "
                    + " / ".join(f"{v:.2f}" for v in load_after)
                    + f" ({os.cpu_count()} CPUs): compare the ratios of one run, not absolute figures across runs."
                )
                entry["measured_at"] = meta["date"]
                entry["commit"] = meta["commit"]
                results["benchmarks"][name] = entry
                status = "ok" if result.available else f"not available ({result.reason})"
                print(f"bench: {name} {status} in {result.data.get('wall_seconds')} s", flush=True)
                for figure in entry["figures"]:
                    print(
                        f"    {figure['name']}: {figure['median']:.1f} {figure['unit']}"
                        + (f" (ratio {figure['ratio']:.3f})" if figure.get("ratio") else "")
                        + f" {figure['status']}",
                        flush=True,
                    )
    meta["total_seconds"] = round(time.monotonic() - started, 1)
    meta["commit"] = git_commit()
    results["meta"] = meta
    previous = _load_previous(args.results) if args.names else {}
    if previous.get("meta"):
        # A partial run keeps the full run's header and notes itself; each benchmark carries its own date.
        merged = previous.get("benchmarks", {})
        merged.update(results["benchmarks"])
        results = {"meta": previous["meta"], "benchmarks": merged}
        partial = {"names": names, "date": meta["date"], "commit": meta["commit"], "seconds": meta["total_seconds"]}
        results["meta"]["partial_runs"] = [*previous["meta"].get("partial_runs", []), partial]
    elif not args.names:
        meta["full_run"] = True
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(render_markdown(results))
    print(f"bench: wrote {args.results} and {args.report} in {meta['total_seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
