"""One ``LISTEN`` connection per server process: a generation number that moves when PostgreSQL says so.

Migration 0029's triggers send ``NOTIFY fieldsync_formlist`` at the commit of every change a cached
formList answer depends on (a project's formList stamp, an access token). A cache entry remembers the
generation it was checked at; while the generation has not moved and the listener is known to be
connected, the entry is still what the database would say, on this host and every other.

"Known to be connected" is proved, not assumed: a heartbeat query every ``HEARTBEAT`` seconds (on the
backend that ran ``LISTEN``: a transaction pooler that moved the session makes it fail), and
:meth:`ChangeListener.generation` answers ``None`` once ``VALID_FOR`` seconds pass without one, while the
connection is being read or is not there yet, and while its socket holds unread bytes (a notification
on its way in). ``None`` means "check the database", so a lost connection, a network partition or a
database restart cost speed, never a stale answer for longer than ``VALID_FOR``. Every reconnection
moves the generation (what happened while disconnected is unknown).

The thread starts lazily in each process (after gunicorn forks) and stops with its engine's
``dispose()``. A store whose sessions are bound to one connection (a test's rolled-back transaction)
gets no listener: its changes are never committed, so nothing would be told.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from typing import Any

import psycopg
from sqlalchemy import Engine, event

log = logging.getLogger("fieldsync.change_listener")

CHANNEL = "fieldsync_formlist"  # migration 0029's triggers notify it
HEARTBEAT = 2.0
VALID_FOR = 5.0
_RETRY_MAX = 30.0


class ChangeListener:
    """A process's ``LISTEN`` on the formList channel of ``engine``'s database, in a daemon thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._generation = 0
        self._valid_until = 0.0
        self._busy = False
        self._schema = ""
        self.backend_pid: int | None = None
        self.last_heartbeat = 0.0
        self._fd: int | None = None
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        event.listen(engine, "engine_disposed", self._on_dispose)

    def generation(self) -> int | None:
        """The current generation while the listener is connected and up to date; ``None`` otherwise."""
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            self._start()
            return None
        fd = self._fd
        if fd is None or self._busy or time.monotonic() >= self._valid_until:
            return None
        try:
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            return None
        if readable or self._busy:
            return None
        return self._generation

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._fd = None
            self._valid_until = 0.0
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="fieldsync-listen", daemon=True)
            self._thread.start()

    def _on_dispose(self, _engine: Engine) -> None:
        self._stop.set()
        self._valid_until = 0.0

    def _bump(self) -> None:
        self._generation += 1

    def _notified(self, payload: str) -> None:
        if payload == self._schema:  # another schema's notification says nothing of this store
            self._bump()

    def _run(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                self._listen(stop)
                delay = 0.5
            except (psycopg.Error, OSError):
                log.warning("formList change listener lost its connection; retrying in %.1f s", delay, exc_info=True)
            finally:
                self._valid_until = 0.0
                self._fd = None
                self.backend_pid = None
                self._bump()
            stop.wait(delay)
            delay = min(delay * 2, _RETRY_MAX)

    def _listen(self, stop: threading.Event) -> None:
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("application_name", "fieldsync-listen")
        with psycopg.connect(*args, **kwargs, autocommit=True) as conn:
            row = conn.execute("SELECT current_schema()").fetchone()
            self._schema = str(row[0]) if row is not None else ""
            conn.add_notify_handler(lambda notify: self._notified(notify.payload))
            conn.execute(f"LISTEN {CHANNEL}")
            self._bump()  # whatever happened before this LISTEN is unknown
            self._fd = conn.pgconn.socket
            self.backend_pid = conn.info.backend_pid
            beat = self.last_heartbeat = time.monotonic()
            self._valid_until = beat + VALID_FOR
            while not stop.is_set():
                wait = max(0.0, beat + HEARTBEAT - time.monotonic())
                readable, _, _ = select.select([conn.pgconn.socket], [], [], wait)
                self._busy = True
                try:
                    if readable:
                        conn.pgconn.consume_input()
                        self._drain(conn)
                    if time.monotonic() >= beat + HEARTBEAT:
                        beat = time.monotonic()
                        self._same_backend(conn)
                        self._drain(conn)
                        self._valid_until = beat + VALID_FOR
                        self.last_heartbeat = beat
                finally:
                    self._busy = False

    def _same_backend(self, conn: psycopg.Connection[Any]) -> None:
        """The heartbeat: prove the connection answers, on the backend that ran ``LISTEN``.

        Behind a transaction-pooling proxy each statement may run on another backend, whose session
        never listened: notifications would be lost while the heartbeat still answered. A backend that
        changed ends the connection, so the listener never vouches there (``FORMLIST_LISTEN=0`` is the
        setting for such a proxy).
        """
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        if row is None or row[0] != self.backend_pid:
            log.warning("the formList listener's statements run on another backend (a transaction pooler?); "
                        "set FIELDSYNC_FORMLIST_LISTEN=0 there")  # fmt: skip
            raise psycopg.OperationalError("the listening session moved to another backend")

    def _drain(self, conn: psycopg.Connection[Any]) -> None:
        while (notify := conn.pgconn.notifies()) is not None:
            self._notified(notify.extra.decode())
        if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            raise psycopg.OperationalError("the listening connection is closed")
