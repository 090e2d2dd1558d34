"""The ``fieldsync scheduler`` and ``fieldsync export`` commands: APScheduler wiring for background jobs.

APScheduler only decides *when* to look; what is due and who runs it lives in the database
(``export_schedules.next_run_at``, ``export_runs`` claimed with ON CONFLICT DO NOTHING), so any number
of scheduler processes can run side by side and each scheduled export is written exactly once. The
scheduler is never started inside ``create_app``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask, current_app
from flask.cli import with_appcontext

from server.errors import ApiError
from server.services import exports as svc
from server.services.exports import RunOutcome
from server.store import get_store

log = logging.getLogger("fieldsync.scheduler")

EXPORT_CHECK_SECONDS = 30
EXPIRE_UPLOADS_SECONDS = 300
PURGE_SECONDS = 3600
INDICATOR_ROLLUP_SECONDS = 60


def run_exports_tick(app: Flask, now: datetime | None = None) -> list[RunOutcome]:
    """Run the scheduled exports due at ``now`` (default: the current time) for ``app``'s store."""
    with app.app_context():
        outcomes = svc.run_due_exports(get_store(app).sessions, Path(app.config["EXPORT_DIR"]), now)
    for o in outcomes:
        log.info("export schedule %s due %s: %s %s", o.schedule_id, o.scheduled_for, o.status, o.file_name or o.error)
    return outcomes


def expire_uploads_tick(app: Flask) -> None:
    """Call the sync area's ``server.jobs.expire_uploads`` when it exists (it may not be built yet)."""
    try:
        jobs = importlib.import_module("server.jobs")
    except ImportError:
        return
    job = getattr(jobs, "expire_uploads", None)
    if job is None:
        return
    with app.app_context():
        # Its signature is the sync area's: hand it the session factory when it takes an argument.
        job(get_store(app).sessions) if inspect.signature(job).parameters else job()


def build_scheduler(app: Flask, export_seconds: int = EXPORT_CHECK_SECONDS) -> BlockingScheduler:
    """A BlockingScheduler polling due exports, expiring stale uploads, running retention and keeping the
    dashboard's rollups for ``app``."""
    scheduler = BlockingScheduler(timezone=UTC)
    jobs = [
        (run_exports_tick, export_seconds, "exports", {"next_run_time": datetime.now(UTC)}),
        (expire_uploads_tick, EXPIRE_UPLOADS_SECONDS, "expire_uploads", {}),
        (purge_tick, PURGE_SECONDS, "purge", {}),
        (indicator_rollups_tick, INDICATOR_ROLLUP_SECONDS, "indicator_rollups", {}),
    ]
    for function, seconds, job_id, extra in jobs:
        # coalesce + max_instances=1: a slow export never makes this process start the check twice at once.
        scheduler.add_job(
            function,
            IntervalTrigger(seconds=seconds, timezone=UTC),
            args=[app],
            id=job_id,
            coalesce=True,
            max_instances=1,
            **extra,
        )
    return scheduler


def purge_tick(app: Flask) -> None:
    """Run retention (``fieldsync purge``) for ``app``."""
    from server.ops_cli import run_purge

    log.info("purge: %s", run_purge(app))


def indicator_rollups_tick(app: Flask) -> None:
    """Build and refresh the dashboard's rollups (``fieldsync indicators-refresh``)."""
    from server.ops_cli import run_indicator_rollups

    done = run_indicator_rollups(app)
    if done.built or done.dropped or done.recomputed:
        log.info("indicator rollups: %s", done)


def _instant(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[datetime]:
    out = []
    for text in values:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(f"expected an ISO 8601 dateTime, got {text!r}") from None
        out.append(when if when.tzinfo else when.replace(tzinfo=UTC))
    return out


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run what is due now (or at each --now) and exit.")
@click.option(
    "--now", "nows", multiple=True, callback=_instant, help="With --once: pretend the time is this (repeatable)."
)
@click.option("--interval", default=EXPORT_CHECK_SECONDS, show_default=True, type=click.IntRange(1, 3600))
@with_appcontext
def scheduler_command(once: bool, nows: list[datetime], interval: int) -> None:
    """Run scheduled exports (and upload expiry) forever; safe to run in several processes at once."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if once:
        for now in nows or [None]:
            for o in run_exports_tick(app, now):
                click.echo(
                    f"{o.schedule_id}\t{o.scheduled_for.isoformat()}\t{o.status}\t{o.file_name or o.error or ''}"
                )
        return
    if nows:
        raise click.UsageError("--now only makes sense with --once")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"scheduler started ({svc.worker_name()}); checking exports every {interval}s")
    with contextlib.suppress(KeyboardInterrupt, SystemExit):  # Ctrl-C is the normal way to stop it
        build_scheduler(app, interval).start()


@click.command("export")
@click.option("--project", "project_id", type=int, required=True)
@click.option("--form", "xml_form_id", required=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["zip", "xlsx", "geojson"]), default=None, help="Default: --out's.")
@click.option("--opt", "opts", multiple=True, help="An export option as key=value (repeatable), as in the URL.")
@click.option("--preset", default=None)
@click.option("--labels", type=click.Choice(["values", "labels"]), default=None)
@click.option("--lang", default=None)
@click.option("--since", default=None)
@click.option("--until", default=None)
@click.option("--review-state", "review_states", multiple=True)
@click.option("--split-select-multiple/--no-split-select-multiple", default=None)
@click.option("--bom/--no-bom", default=None)
@with_appcontext
def export_command(
    project_id: int,
    xml_form_id: str,
    out_path: Path,
    fmt: str | None,
    opts: tuple[str, ...],
    preset: str | None,
    labels: str | None,
    lang: str | None,
    since: str | None,
    until: str | None,
    review_states: tuple[str, ...],
    split_select_multiple: bool | None,
    bom: bool | None,
) -> None:
    """Write a form's export to a file (the same options as the HTTP export)."""
    fmt = fmt or (out_path.suffix.lstrip(".").lower() if out_path.suffix.lower() in (".xlsx", ".geojson") else "zip")
    query: dict[str, list[str]] = {}
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--opt")
        query.setdefault(key.strip(), []).append(value)
    explicit = {
        "preset": preset,
        "labels": labels,
        "lang": lang,
        "since": since,
        "until": until,
        "reviewState": ",".join(review_states) or None,
        "splitSelectMultiples": None if split_select_multiple is None else str(split_select_multiple).lower(),
        "bom": None if bom is None else str(bom).lower(),
    }
    query.update({k: [v] for k, v in explicit.items() if v is not None})
    session = get_store().sessions()
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with tmp.open("wb") as out:
            summary = svc.write_export(session, project_id, xml_form_id, query, fmt, "cli", out)
        tmp.replace(out_path)
    except ApiError as error:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"{error.message} ({error.code})") from None
    finally:
        session.close()
    click.echo(f"wrote {out_path}: {summary.records_exported} of {summary.records_read} submissions", file=sys.stderr)
