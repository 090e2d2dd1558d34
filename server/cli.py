"""The ``fieldsync`` command line: the jobs people do from a terminal, each a thin door over one service.

Built on Flask's click integration for the app context, without Flask's own options (``-e``, ``-A``,
``--debug``): Fieldsync is configured by ``FIELDSYNC_*`` variables. Heavy modules (Alembic, pyxform,
APScheduler) are imported by the commands that need them, and the app is built without its URL
rules (``create_app(http=False)``): a command that only writes a row starts in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from server import create_app
from server.errors import ApiError
from server.serving import DEFAULT_THREADS, gunicorn_argv, worker_environment

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from server.services.accounts import IssuedToken

DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"
# Commands whose module is imported only when they run (or when --help describes them).
LAZY_COMMANDS = {
    "scheduler": "server.scheduler:scheduler_command",
    "export": "server.scheduler:export_command",
    "purge": "server.ops_cli:purge_command",
    "indicators-refresh": "server.ops_cli:indicators_refresh_command",
    "backup": "server.ops_cli:backup_command",
    "restore": "server.ops_cli:restore_command",
    "migrate-store": "server.ops_cli:migrate_store_command",
    "webhooks": "server.webhook_dispatcher:webhooks_command",
    "relay": "server.office_relay:relay_command",
}
# Flask's group options that make no sense here: the app is Fieldsync's, its configuration FIELDSYNC_*.
_FLASK_OPTIONS = {"env_file", "app", "debug"}


def _cli_app() -> Flask:
    return create_app(http=False)


class FieldsyncGroup(FlaskGroup):
    """Flask's group minus its options and plugin look-ups; commands are this module's and ``LAZY_COMMANDS``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = [p for p in self.params if p.name not in _FLASK_OPTIONS]

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Name every command without building the app (Flask's group builds it to ask for more)."""
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return a command, importing a lazy one's module on first use."""
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


def _fail(error: ApiError) -> NoReturn:
    where = ", ".join(f"{key} {error.details[key]!r}" for key in ("sheet", "row") if key in error.details)
    raise click.ClickException(f"{error.message} ({error.code}{'; ' + where if where else ''})")


@contextmanager
def _session() -> Iterator[Session]:
    """A session of the app's store for one command; an ``ApiError`` becomes a one-line error and exit 1."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from server.store import get_store

    session = get_store().sessions()
    try:
        yield session
    except ApiError as error:
        _fail(error)
    except (OperationalError, ProgrammingError) as error:
        # Most often a store that was never migrated ("no such table"): say what to run.
        reason = str(error.orig).splitlines()[0] if error.orig is not None else str(error)
        raise click.ClickException(
            f"The database cannot be used ({reason}): is FIELDSYNC_DATABASE_URL right, and was `fieldsync init-db` run?"
        ) from None
    finally:
        session.close()


def _public_url(base_url: str | None) -> str:
    return (base_url or current_app.config.get("PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in header), *(tuple(str(c) for c in row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


_base_url_option = click.option(
    "--base-url",
    default=None,
    help=f"Public URL of this server (default FIELDSYNC_PUBLIC_URL or {DEFAULT_PUBLIC_URL}).",
)
_project_option = click.option("--project", "project_id", type=int, required=True, help="The project's id.")
_qr_option = click.option("--qr/--no-qr", default=True, show_default=True, help="Draw the Collect QR code.")


def _print_device(issued: IssuedToken, base_url: str, qr: bool) -> None:
    """Print a freshly issued device token: its secret, Collect URL and (optionally) the settings QR code."""
    from server.services.collect_settings import collect_payload, qr_terminal

    url = issued.collect_url(base_url)
    click.echo(f"device {issued.id}: {issued.name}")
    click.echo(f"token: {issued.token}")
    click.echo(f"collect_url: {url}")
    if qr:
        click.echo("Scan with ODK Collect (Add project > Scan QR code):")
        click.echo(qr_terminal(collect_payload(url, issued.project_name or "Fieldsync")), nl=False)
    click.echo("The token is shown only now: it is stored hashed and cannot be shown again.")


@click.group(cls=FieldsyncGroup, create_app=_cli_app, add_default_commands=False, add_version_option=False)
@click.version_option(package_name="fieldsync", prog_name="fieldsync")
def main() -> None:
    """Fieldsync: offline-first sync server for field surveys.

    Configured by environment variables (FIELDSYNC_DATABASE_URL, FIELDSYNC_PUBLIC_URL ...; see README).
    """


@main.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the database schema to the newest migration (safe to run twice)."""
    from server.db.migrate import current_revision, head_revision, upgrade_to_head
    from server.store import get_store

    engine = get_store().engine
    before = current_revision(engine)
    upgrade_to_head(engine)
    after = current_revision(engine)
    if before == after:
        click.echo(f"database is already at the newest migration ({after})")
    elif before is None:
        click.echo(f"created the database schema (migration {after}, of {head_revision(engine)})")
    else:
        click.echo(f"upgraded the database from migration {before} to {after}")


# --------------------------------------------------------------------------------------------- users


@main.group()
def users() -> None:
    """Manage user accounts."""


def _password_option(prompt: str = "Password") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--password",
        prompt=prompt,
        hide_input=True,
        confirmation_prompt=True,
        help="At least 10 characters, not a common password (prompted when absent).",
    )


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "manager", "coach", "analyst"]), default="admin", show_default=True)
@_password_option()
@click.option("--project", "project_id", type=int, help="Project to give the role in (not for admin).")
@with_appcontext
def users_create(username: str, role: str, password: str, project_id: int | None) -> None:
    """Create a user; a non-admin role needs --project."""
    from server.services import accounts as svc

    if role != "admin" and project_id is None:
        raise click.UsageError("--project is required for the roles manager, coach and analyst")
    with _session() as session:
        user = svc.create_user(session, username, password, is_admin=role == "admin")
        if project_id is not None and role != "admin":
            svc.set_membership(session, project_id, username, role)
    click.echo(f"created user {username} (id {user.id}, role {role})")


@users.command("list")
@with_appcontext
def users_list() -> None:
    """List every user."""
    from server.services import accounts as svc

    with _session() as session:
        rows = [
            (
                u.id,
                u.username,
                "admin" if u.is_admin else "-",
                "disabled" if u.disabled else "active",
                _when(u.created_at),
            )
            for u in svc.list_users(session)
        ]
    _table(("id", "username", "admin", "status", "created (UTC)"), rows)


def _set_disabled(username: str, disabled: bool) -> None:
    from server.services import accounts as svc

    with _session() as session:
        svc.set_user_disabled(session, username, disabled)
    click.echo(f"{'disabled' if disabled else 'enabled'} user {username}")


@users.command("disable")
@click.argument("username")
@with_appcontext
def users_disable(username: str) -> None:
    """Disable a user: their password, Digest login and API sessions stop working at once."""
    _set_disabled(username, True)


@users.command("enable")
@click.argument("username")
@with_appcontext
def users_enable(username: str) -> None:
    """Enable a disabled user again."""
    _set_disabled(username, False)


@users.command("set-password")
@click.argument("username")
@_password_option("New password")
@with_appcontext
def users_set_password(username: str, password: str) -> None:
    """Replace a user's password (for Digest logins too)."""
    from server.services import accounts as svc

    with _session() as session:
        svc.set_password(session, username, password)
    click.echo(f"password of {username} changed")


# ------------------------------------------------------------------------------------------ projects


@main.group()
def projects() -> None:
    """Manage projects."""


@projects.command("create")
@click.argument("name")
@with_appcontext
def projects_create(name: str) -> None:
    """Create a project and print its id."""
    from server.services import accounts as svc

    with _session() as session:
        project = svc.create_project(session, name)
    click.echo(project.id)


# ------------------------------------------------------------------------------------------- devices


@main.group()
def devices() -> None:
    """Manage device tokens for phones (ODK Collect)."""


@devices.command("create")
@_project_option
@click.option("--name", required=True)
@click.option("--expires", type=click.DateTime(), default=None, help="Expiry (UTC).")
@_base_url_option
@_qr_option
@with_appcontext
def devices_create(project_id: int, name: str, expires: datetime | None, base_url: str | None, qr: bool) -> None:
    """Create a device token; print it, its ODK Collect server URL and QR code."""
    from server.services import accounts as svc

    with _session() as session:
        issued = svc.create_device(
            session, project_id, name, expires_at=expires.replace(tzinfo=UTC) if expires else None
        )
    _print_device(issued, _public_url(base_url), qr)


@devices.command("list")
@_project_option
@with_appcontext
def devices_list(project_id: int) -> None:
    """List a project's devices (their tokens are never shown again)."""
    from server.auth import token_is_live
    from server.services import accounts as svc

    with _session() as session:
        rows = [
            (
                d.id,
                d.name,
                "live" if token_is_live(d) else "revoked" if d.revoked_at else "expired",
                _when(d.created_at),
                _when(d.expires_at),
                _when(d.last_used_at),
            )
            for d in svc.list_devices(session, project_id)
        ]
    _table(("id", "name", "status", "created (UTC)", "expires", "last used"), rows)


@devices.command("revoke")
@_project_option
@click.argument("device_id", type=int)
@with_appcontext
def devices_revoke(project_id: int, device_id: int) -> None:
    """Revoke a device's token: the phone gets 403 and is told to ask for a new QR code."""
    from server.services import accounts as svc

    with _session() as session:
        token = svc.revoke_device(session, project_id, device_id)
    click.echo(f"revoked device {token.id} ({token.name})")


@devices.command("reissue")
@_project_option
@click.argument("device_id", type=int)
@_base_url_option
@_qr_option
@with_appcontext
def devices_reissue(project_id: int, device_id: int, base_url: str | None, qr: bool) -> None:
    """Replace a device's token (lost phone or URL): revoke it, print the new Collect URL and QR code."""
    from server.services import accounts as svc

    with _session() as session:
        issued = svc.reissue_device(session, project_id, device_id)
    click.echo(f"revoked the token of device {device_id}")
    _print_device(issued, _public_url(base_url), qr)


# --------------------------------------------------------------------------------------------- forms


@main.group()
def relays() -> None:
    """Manage the credentials of office relays (on the national server)."""


@relays.command("issue")
@click.option("--name", required=True, help="The office's name (unique).")
@click.option(
    "--project", "project_ids", type=int, multiple=True, required=True, help="A project it may relay (repeatable)."
)
@with_appcontext
def relays_issue(name: str, project_ids: tuple[int, ...]) -> None:
    """Issue an office relay's credential for some projects; print its token once."""
    from server.services import relays as svc

    with _session() as session:
        issued = svc.issue_relay(session, name, list(project_ids))
    click.echo(f"relay {issued.id}: {issued.name} (projects {', '.join(str(p) for p in issued.project_ids)})")
    click.echo(f"token: {issued.token}")
    click.echo("The token is shown only now: it is stored hashed and cannot be shown again.")


@relays.command("list")
@with_appcontext
def relays_list() -> None:
    """List the office relays, their projects and when each was last used."""
    from server.services import relays as svc

    with _session() as session:
        rows = [
            (
                r.id,
                r.name,
                ",".join(str(p) for p in r.project_ids),
                "revoked" if r.revoked_at else "live",
                _when(r.created_at),
                _when(r.last_used_at),
            )
            for r in svc.list_relays(session)
        ]
    _table(("id", "name", "projects", "status", "created (UTC)", "last used"), rows)


@relays.command("revoke")
@click.argument("name")
@with_appcontext
def relays_revoke(name: str) -> None:
    """Revoke an office relay's credential: its next request is refused (401)."""
    from server.services import relays as svc

    with _session() as session:
        info = svc.revoke_relay(session, name)
    click.echo(f"revoked relay {info.id} ({info.name})")


@main.group()
def forms() -> None:
    """Upload, list and publish forms (XLSForm .xlsx/.xls or XForm .xml)."""


@forms.command("upload")
@_project_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--publish", is_flag=True, help="Publish at once (else the upload is a draft).")
@click.option("--form-id", "form_id", default=None, help="Form id when the settings sheet has none.")
@with_appcontext
def forms_upload(project_id: int, path: Path, publish: bool, form_id: str | None) -> None:
    """Convert and store a form; print its form id and version (pyxform's sheet and row on an error)."""
    from server.services import forms as forms_svc

    # A terminal has no request to keep responsive: convert in this process and wait for it.
    settings = dataclasses.replace(forms_svc.upload_settings(), convert_inline=True)
    with _session() as session:
        result = forms_svc.create_form_version(
            session,
            project_id,
            path.read_bytes(),
            path.name,
            publish=publish,
            actor="cli",
            settings=settings,
            default_form_id=form_id,
        )
    state = result.status if result.created else f"{result.status}, unchanged"
    click.echo(f"form {result.xml_form_id} version {result.version} ({state})")
    for warning in result.warnings:
        click.echo(f"warning: {warning}")
    if result.missing_attachments:
        click.echo("media still to upload: " + ", ".join(result.missing_attachments))


@forms.command("list")
@_project_option
@with_appcontext
def forms_list(project_id: int) -> None:
    """List a project's forms with their published and draft versions."""
    from server.services import forms as forms_svc

    with _session() as session:
        rows = [
            (f.xml_form_id, f.state, f.current_version or "-", f.draft_version or "-", f.title)
            for f in forms_svc.list_form_details(session, project_id)
        ]
    _table(("form id", "state", "published", "draft", "title"), rows)


@forms.command("publish")
@_project_option
@click.argument("xml_form_id")
@with_appcontext
def forms_publish(project_id: int, xml_form_id: str) -> None:
    """Publish a form's draft: phones download it from then on."""
    from server.services import forms as forms_svc

    with _session() as session:
        result = forms_svc.publish_draft(session, project_id, xml_form_id, actor="cli")
    click.echo(f"form {result.xml_form_id} version {result.version} published")


# ------------------------------------------------------------------------------------- demo and serve


@main.command("demo")
@click.option("--base-url", default=DEFAULT_PUBLIC_URL, show_default=True)
@_qr_option
@with_appcontext
def demo(base_url: str, qr: bool) -> None:
    """Load the demo project, users, a device and the example forms (idempotent: the device URL stays)."""
    from server.demo import load_demo

    for line in load_demo(base_url, qr=qr):
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
    from sqlalchemy.engine import make_url

    config = current_app.config
    url = make_url(config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite":
        # SQLite has one writer; several processes would only queue on its lock.
        workers = 1
    elif workers is None:
        workers = 2 * (os.cpu_count() or 1) + 1
    _prepare_metrics_dir()
    args = gunicorn_argv(config, host=host, port=port, workers=workers, threads=threads)
    click.echo(
        f"serving on http://{host}:{port} ({workers} worker(s) x {threads} threads, "
        f"keep-alive {config['KEEP_ALIVE']:g} s, silence limit {config['CLIENT_SILENCE_TIMEOUT']:g} s)"
    )
    sys.stdout.flush()
    os.environ.update(worker_environment(config))  # the workers read the silence limit from it
    os.execv(sys.executable, args)


def _prepare_metrics_dir() -> None:
    """Point prometheus-client's multiprocess mode at an emptied folder under VAR_DIR (before gunicorn imports it)."""
    from server.metrics import MULTIPROC_ENV, reset_multiprocess_dir

    path = os.environ.get(MULTIPROC_ENV) or os.path.join(current_app.config["VAR_DIR"], "metrics")
    reset_multiprocess_dir(path)
    os.environ[MULTIPROC_ENV] = path
