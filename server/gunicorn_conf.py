"""gunicorn settings ``fieldsync serve`` passes with ``--config python:server.gunicorn_conf``.

A worker that exits (restarted after a crash or by ``--max-requests``) is marked dead for the
Prometheus multiprocess collector, so the gauges it wrote stop counting; its counters still add up.
"""

from __future__ import annotations

from typing import Any


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook: a worker exited."""
    from server.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)
