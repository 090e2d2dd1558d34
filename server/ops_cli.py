"""The operations commands: ``fieldsync purge`` (retention), ``backup``, ``restore`` and ``migrate-store``.

Registered at the end of ``server/cli.py``; each is a thin door over one service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from server.blobstore import blob_store
from server.services import retention
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
        )


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Purge old soft-deleted submissions, unreferenced blobs, expired uploads and stale staging files."""
    report = run_purge(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo(
        f"purged {report.submissions} submission(s), {report.blobs} blob(s), {report.orphan_files} orphan file(s); "
        f"expired {report.uploads_expired} upload(s); removed {report.partials} partial upload(s), "
        f"{report.staged} staging file(s)"
    )


COMMANDS = [purge_command]
