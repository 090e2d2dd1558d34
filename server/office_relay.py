"""``fieldsync relay``: the long-running door of an office server towards the national one.

The office runs a normal ``fieldsync serve`` (SQLite is enough) for the phones on its LAN, and this
command beside it: every ``--interval`` seconds it runs one round of ``server.services.relay_uplink``
per relayed project (forms down, stored submissions and their photos up). A failed round is written
down as the link's last error and retried at the next one; everything it needs to resume (batch keys,
upload offsets) is in the office's store, so a power cut or ``kill -9`` loses nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click
from flask.cli import with_appcontext

from server.services import relay_uplink as svc
from server.store import get_store

log = logging.getLogger("fieldsync.relay")


def _mapping(value: str) -> tuple[int, int]:
    local, sep, remote = value.partition("=")
    if not sep or not local.isdigit() or not remote.isdigit():
        raise click.BadParameter(f"{value!r}: expected LOCAL=REMOTE project ids, e.g. 1=4")
    return int(local), int(remote)


@click.command("relay")
@click.option("--upstream", required=True, help="The national server's URL.")
@click.option("--token", required=True, envvar="FIELDSYNC_RELAY_TOKEN", help="The relay credential it issued.")
@click.option("--project", "projects", multiple=True, required=True, help="LOCAL=REMOTE project ids (repeatable).")
@click.option("--interval", default=30.0, show_default=True, type=float, help="Seconds between rounds.")
@click.option("--timeout", default=30.0, show_default=True, type=float, help="Seconds to wait for the upstream.")
@click.option("--chunk-kib", default=64, show_default=True, type=click.IntRange(1, 65536), help="tus chunk size.")
@click.option("--once", is_flag=True, help="Run one round, then exit (1 if the link failed).")
@with_appcontext
def relay_command(
    upstream: str, token: str, projects: tuple[str, ...], interval: float, timeout: float, chunk_kib: int, once: bool
) -> None:
    """Relay this office's projects to the national server: forms down, submissions and photos up."""
    mapping = [_mapping(value) for value in projects]
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sessions = get_store().sessions
    session = sessions()
    try:
        for local, remote in mapping:
            svc.ensure_link(session, local, upstream, remote)
    finally:
        session.close()
    uplink = svc.Uplink(upstream, token, timeout=timeout, chunk_bytes=chunk_kib * 1024)
    click.echo(f"relay to {upstream} started ({', '.join(projects)})", err=True)
    while True:
        failed = False
        for local, _ in mapping:
            session = sessions()
            try:
                report = svc.relay_round(session, local, uplink)
            except svc.LinkError as exc:
                failed = True
                log.info("project %s: link down (%s)", local, exc)
                session.rollback()
                svc.note_contact(session, local, str(exc))
            except Exception as exc:  # a bug or a refusal must not end the relay: it is shown, then retried
                failed = True
                log.exception("project %s: round failed", local)
                session.rollback()
                svc.note_contact(session, local, f"{type(exc).__name__}: {exc}")
            else:
                if report.pushed or report.forms:
                    log.info("project %s: %s", local, report)
                svc.note_contact(session, local, None)
            finally:
                session.close()
        if once:
            raise SystemExit(1 if failed else 0)
        if stop.wait(interval):
            break
    click.echo("relay stopped", err=True)
