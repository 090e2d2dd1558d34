"""How ``fieldsync serve`` runs gunicorn: worker class, threads, keep-alive, control socket, logs, hooks.

One function builds the command line, so the CLI and the benchmarks start the same server.

Why these settings (issue "Field networks"; measured with 10 stalled uploads against one SQLite
worker, see docs/benchmarks.md):

- ``gthread`` with more threads, not an async worker: a stalled client costs one thread only while
  its headers or body arrive (the body is spooled before the app runs, so it holds no database
  connection or lock), and :mod:`server.gunicorn_worker` frees that thread after
  ``CLIENT_SILENCE_TIMEOUT`` seconds of silence. An async worker (gevent, eventlet) would need
  monkey-patched database drivers (sqlite3 and psycopg block the event loop otherwise) and would
  stall every request during CPU-bound work (pyxform conversion, XML parsing); threads keep both
  drivers as they are tested.
- ``keep-alive`` 65 s: phones, Node's HTTP agent and reverse proxies reuse an idle connection for
  60-75 s; with gunicorn's 2 s a client that waits a few seconds between requests loses its POST.
- one control socket per server (under ``VAR_DIR``), or none: two servers on one machine must not
  share gunicorn's default path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

# Threads per worker: room for this many stalled clients plus the ones being served.
DEFAULT_THREADS = 32
WORKER_CLASS = "server.gunicorn_worker.SilenceLimitedWorker"
SILENCE_ENV = "FIELDSYNC_CLIENT_SILENCE_TIMEOUT"


def control_socket_args(config: Mapping[str, Any]) -> list[str]:
    """``--control-socket PATH`` under the server's own folder, or ``--no-control-socket`` when "off"."""
    path = str(config.get("CONTROL_SOCKET") or "").strip()
    if path.lower() in ("", "off", "none", "0", "false"):
        return ["--no-control-socket"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return ["--control-socket", path]


def gunicorn_argv(
    config: Mapping[str, Any],
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = DEFAULT_THREADS,
    access_log: bool = True,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The gunicorn command line that serves ``server.wsgi:app`` with Fieldsync's settings."""
    keep_alive = float(config["KEEP_ALIVE"])
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        # Hooks (a worker's exit marks its metrics dead): server/gunicorn_conf.py.
        "--config",
        "python:server.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        WORKER_CLASS,
        "--threads",
        str(threads),
        "--timeout",
        "120",
        "--keep-alive",
        str(int(keep_alive) if keep_alive == int(keep_alive) else keep_alive),
        *control_socket_args(config),
    ]
    if access_log:
        # Device tokens are in the path: the access log's request lines go through the same redaction
        # as the JSON request log (server/gunicorn_log.py).
        args += ["--access-logfile", "-", "--logger-class", "server.gunicorn_log.RedactingLogger"]
    return [*args, *extra, "server.wsgi:app"]


def worker_environment(config: Mapping[str, Any], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment gunicorn runs with: the silence limit the workers apply to their sockets."""
    env = dict(os.environ if base is None else base)
    env[SILENCE_ENV] = str(float(config["CLIENT_SILENCE_TIMEOUT"]))
    return env
