"""The ``fieldsync`` command line (Flask's click integration)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy.engine import make_url

from server import create_app
from server.db.migrate import upgrade_to_head
from server.errors import ApiError
from server.services import accounts as svc
from server.serving import DEFAULT_THREADS, gunicorn_argv, worker_environment
from server.store import get_store


def _fail(error: ApiError) -> None:
    raise click.ClickException(f"{error.message} ({error.code})")


@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=False, add_version_option=False)
def main() -> None:
    """Fieldsync: offline-first sync server for field surveys."""


@main.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the database schema to the newest migration (safe to run twice)."""
    upgrade_to_head(get_store().engine)
    click.echo("database is at the newest migration")


@main.group()
def users() -> None:
    """Manage user accounts."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "manager", "coach", "analyst"]), default="admin", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--project", "project_id", type=int, help="Project to give the role in (not for admin).")
@with_appcontext
def users_create(username: str, role: str, password: str, project_id: int | None) -> None:
    """Create a user; a non-admin role needs --project."""
    session = get_store().sessions()
    try:
        user = svc.create_user(session, username, password, is_admin=role == "admin")
        if role != "admin":
            if project_id is None:
                raise click.UsageError("--project is required for the roles manager, coach and analyst")
            svc.set_membership(session, project_id, username, role)
    except ApiError as error:
        _fail(error)
    finally:
        session.close()
    click.echo(f"created user {username} (id {user.id}, role {role})")


@main.group()
def projects() -> None:
    """Manage projects."""


@projects.command("create")
@click.argument("name")
@with_appcontext
def projects_create(name: str) -> None:
    """Create a project and print its id."""
    session = get_store().sessions()
    try:
        project = svc.create_project(session, name)
    except ApiError as error:
        _fail(error)
    finally:
        session.close()
    click.echo(project.id)


@main.group()
def devices() -> None:
    """Manage device tokens for phones."""


@devices.command("create")
@click.option("--project", "project_id", type=int, required=True)
@click.option("--name", required=True)
@click.option("--expires", type=click.DateTime(), default=None, help="Expiry (UTC).")
@click.option(
    "--base-url",
    default=None,
    help="Public URL of this server (default FIELDSYNC_PUBLIC_URL or http://127.0.0.1:5000).",
)
@with_appcontext
def devices_create(project_id: int, name: str, expires: datetime | None, base_url: str | None) -> None:
    """Create a device token; print it and the ODK Collect server URL."""
    session = get_store().sessions()
    try:
        issued = svc.create_device(
            session, project_id, name, expires_at=expires.replace(tzinfo=UTC) if expires else None
        )
    except ApiError as error:
        _fail(error)
    finally:
        session.close()
    base = (base_url or current_app.config.get("PUBLIC_URL") or "http://127.0.0.1:5000").rstrip("/")
    click.echo(f"token: {issued.token}")
    click.echo(f"collect_url: {base}/v1/key/{issued.token}/projects/{project_id}")


@main.command("demo")
@click.option("--base-url", default="http://127.0.0.1:5000", show_default=True)
@with_appcontext
def demo(base_url: str) -> None:
    """Load the demo project, users, a device and the example forms (idempotent)."""
    from server.demo import load_demo

    for line in load_demo(base_url):
        click.echo(line)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--workers", default=None, type=int, help="gunicorn workers (PostgreSQL; SQLite always uses one process)."
)
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, type=int)
@with_appcontext
def serve(host: str, port: int, workers: int | None, threads: int) -> None:
    """Serve with gunicorn: several workers on PostgreSQL, one process on SQLite.

    Keep-alive (FIELDSYNC_KEEP_ALIVE), the silence limit for slow clients
    (FIELDSYNC_CLIENT_SILENCE_TIMEOUT) and the control socket (FIELDSYNC_CONTROL_SOCKET) come from
    the configuration; see server/serving.py for why.
    """
    config = current_app.config
    url = make_url(config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        # SQLite has one writer; several processes would only queue on its lock.
        workers = 1
    elif workers is None:
        workers = 2 * (os.cpu_count() or 1) + 1
    args = gunicorn_argv(config, host=host, port=port, workers=workers, threads=threads)
    click.echo(
        f"serving on http://{host}:{port} ({workers} worker(s) x {threads} threads, "
        f"keep-alive {config['KEEP_ALIVE']:g} s, silence limit {config['CLIENT_SILENCE_TIMEOUT']:g} s)"
    )
    sys.stdout.flush()
    os.execve(sys.executable, args, worker_environment(config))


from server.scheduler import export_command, scheduler_command  # noqa: E402  (appended: the exports area's commands)

main.add_command(scheduler_command)
main.add_command(export_command)
