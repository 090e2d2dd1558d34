"""``fieldsync webhooks dispatch``: the long-running webhook dispatcher (see server/services/webhook_dispatch.py).

Run as many as you like, on as many hosts: they share the work through leases in the database.
SIGTERM or Ctrl-C stops it after the request in flight (its lease is released); a dispatcher killed
outright leaves a lease that expires after ``FIELDSYNC_WEBHOOKS_LEASE`` seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType

import click
from flask import current_app
from flask.cli import with_appcontext

from server.services import webhook_dispatch as svc
from server.store import get_store


@click.group("webhooks")
def webhooks_command() -> None:
    """Deliver webhook events."""


@webhooks_command.command("dispatch")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Threads sending at once.")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--name", default=None, help="This dispatcher's name in the delivery log (default host:pid).")
@with_appcontext
def dispatch_command(workers: int, once: bool, name: str | None) -> None:
    """Fan out committed events and deliver them; safe to run in several processes and hosts at once."""
    settings = svc.DispatchSettings.from_config(current_app.config)
    owner = (name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")[:90]
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(f"webhook dispatcher {owner} started ({workers} worker(s))", err=True)
    svc.run(get_store().sessions, owner, settings, stop, workers=workers, once=once)
    click.echo(f"webhook dispatcher {owner} stopped", err=True)
