"""gunicorn settings ``fieldsync serve`` passes with ``--config python:server.gunicorn_conf``.

The app is loaded once in the master (``preload_app``) and the workers are forked from it, so the
pages of Flask, SQLAlchemy, lxml, the models and the templates are shared copy-on-write instead
of being imported again by every worker; ``gc.freeze()`` before the forks keeps the collector from
writing into (and so un-sharing) those objects. Measured by ``python -m bench memory``.

A worker that exits (restarted after a crash or by ``--max-requests``) is marked dead for the
Prometheus multiprocess collector, so the gauges it wrote stop counting; its counters still add up.
"""

from __future__ import annotations

import gc
from typing import Any

preload_app = True


def when_ready(_server: Any) -> None:
    """gunicorn hook: the master has loaded the app and is about to fork the workers."""
    gc.collect()
    gc.freeze()


def post_fork(_server: Any, _worker: Any) -> None:
    """gunicorn hook, in the new worker: never reuse a database connection the master may have opened."""
    from server.store import get_store
    from server.wsgi import app

    # close=False: the master's connections (if any) belong to the master; the worker only forgets them.
    get_store(app).engine.dispose(close=False)


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook: a worker exited."""
    from server.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)
