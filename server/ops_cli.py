"""The operations commands: ``fieldsync purge`` (retention), ``backup``, ``restore``, ``migrate-store`` and
``indicators-refresh`` (the dashboard's rollups).

Registered at the end of ``server/cli.py``; each is a thin door over one service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url

from server.blobstore import blob_store
from server.errors import ApiError
from server.services import backups, indicators, retention
from server.store import get_store


def run_purge(app: Flask, now: datetime | None = None) -> retention.PurgeReport:
    """Run the retention steps for ``app``'s store with its configured periods."""
    with app.app_context():
        store = get_store(app)
        return retention.purge(
            store.sessions,
            blob_store(store.storage_dir),
            store.storage_dir,
            now or datetime.now(UTC),
            purge_after=timedelta(days=float(app.config["PURGE_AFTER_DAYS"])),
            grace=timedelta(hours=float(app.config["BLOB_GRACE_HOURS"])),
            jobs_after=timedelta(days=float(app.config["JOB_RETENTION_DAYS"])),
            webhooks_after=timedelta(days=float(app.config["WEBHOOK_RETENTION_DAYS"])),
        )


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Purge old soft-deleted submissions, unreferenced blobs, expired uploads, stale staging files, old
    conversion jobs and delivered webhooks."""
    report = run_purge(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo(
        f"purged {report.submissions} submission(s), {report.blobs} blob(s), {report.orphan_files} orphan file(s); "
        f"expired {report.uploads_expired} upload(s); removed {report.partials} partial upload(s), "
        f"{report.staged} staging file(s), {report.conversion_jobs} conversion job(s), "
        f"{report.webhook_deliveries} webhook delivery(ies) and {report.webhook_events} webhook event(s)"
    )


def run_indicator_rollups(app: Flask) -> indicators.RollupRound:
    """One round of the dashboard's rollups (PostgreSQL): build new ones, refresh the others."""
    with app.app_context():
        return indicators.keep_rollups(get_store(app).sessions)


@click.command("indicators-refresh")
@with_appcontext
def indicators_refresh_command() -> None:
    """Build the dashboard's rollups of new indicator definitions and bring the others up to date
    (PostgreSQL; the scheduler does it every minute, and each read brings its own rollup up to date)."""
    done = run_indicator_rollups(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo(
        f"built {done.built} rollup(s), refreshed {done.refreshed} ({done.recomputed} submission(s) recomputed), "
        f"dropped {done.dropped}"
    )


def _fail(error: ApiError) -> click.ClickException:
    return click.ClickException(f"{error.message} ({error.code})")


@click.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@with_appcontext
def backup_command(out: Path) -> None:
    """Write a backup archive of every table's rows and every blob, taken in one snapshot."""
    store = get_store()
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("wb") as handle:
            summary = backups.write_backup(store.engine, blob_store(store.storage_dir), handle)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    click.echo(f"wrote {out}: {sum(summary.rows.values())} rows, {summary.blobs} blobs (migration {summary.revision})")


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def restore_command(archive: Path) -> None:
    """Load a backup archive into this (empty) store and its blob store."""
    store = get_store()
    try:
        summary = backups.restore_backup(store.engine, blob_store(store.storage_dir), archive)
    except ApiError as error:
        raise _fail(error) from None
    click.echo(f"restored {sum(summary.rows.values())} rows, {summary.blobs} blobs (migration {summary.revision})")


@click.command("migrate-store")
@click.option("--to", "target_url", required=True, help="The new database URL (an empty PostgreSQL database).")
@with_appcontext
def migrate_store_command(target_url: str) -> None:
    """Copy this store's rows (e.g. SQLite) into another database (e.g. PostgreSQL); blobs stay where they are.

    Rows are read in one snapshot: stop the server (or its writers) first, or writes made after the
    snapshot stay behind. Then point FIELDSYNC_DATABASE_URL at the new database.
    """
    from server.db.engine import make_engine

    target = make_engine(target_url)
    try:
        summary = backups.copy_store(get_store().engine, target)
    except ApiError as error:
        raise _fail(error) from None
    finally:
        target.dispose()
    click.echo(
        f"copied {sum(summary.rows.values())} rows to {make_url(target_url).render_as_string(hide_password=True)}"
    )
    click.echo("now set FIELDSYNC_DATABASE_URL to the new database")


COMMANDS = [purge_command, backup_command, restore_command, migrate_store_command]
