"""The store inside the app: one engine per app, one session per request, closed at teardown."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from server.db.change_listener import ChangeListener
from server.db.engine import make_engine, make_sessionmaker

log = logging.getLogger("fieldsync.store")


@dataclass
class Store:
    """What the app holds of the store: its engine, session factory and blob directory."""

    engine: Engine
    sessions: sessionmaker[Session]
    storage_dir: Path
    listener: ChangeListener | None = None

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A Core connection for one read outside any session: autocommit on PostgreSQL (no BEGIN, no ROLLBACK).

        It is on the sessions' own bind: a session factory bound to one connection (a test's
        rolled-back transaction) lends that connection as it stands.
        """
        bind = self._bind()
        if isinstance(bind, Connection):
            yield bind
            return
        with bind.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    def change_generation(self) -> int | None:
        """The formList change listener's generation (``server.db.change_listener``); ``None``: read the store.

        ``None`` on SQLite, while the listener is not connected and up to date, and when the sessions
        are bound to one connection (a test's rolled-back transaction, whose changes nobody is told of).
        """
        if self.listener is None or isinstance(self._bind(), Connection):
            return None
        return self.listener.generation()

    def _bind(self) -> Engine | Connection:
        """What the sessions run on: the engine, or the one connection a test binds them to."""
        bind: Engine | Connection = self.sessions.kw.get("bind", self.engine)
        return bind


def init_app(app: Flask) -> None:
    """Create the engine and session factory for ``app``."""
    engine = make_engine(app.config["DATABASE_URL"])
    storage = Path(app.config["STORAGE_DIR"])
    storage.mkdir(parents=True, exist_ok=True)
    listens = engine.dialect.name == "postgresql" and bool(app.config.get("FORMLIST_LISTEN", True))
    listener = ChangeListener(engine) if listens else None
    app.extensions["fieldsync.store"] = Store(engine, make_sessionmaker(engine), storage, listener)
    app.teardown_appcontext(_close_session)


def get_store(app: Flask | None = None) -> Store:
    """Return the store of ``app`` (default: the current app)."""
    target = app or current_app
    store: Store = target.extensions["fieldsync.store"]
    return store


def db_session() -> Session:
    """Return this request's session, opening it on first use."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = get_store().sessions()
        g.db_session = session
    return session


def after_session_close(callback: Callable[[], object]) -> None:
    """Run ``callback`` once this request's session is closed: work that must not share its transaction.

    E.g. a bookkeeping write that must neither be rolled back with a failed request nor wait behind
    its locks (on SQLite the request holds the one write lock until it ends). Errors are logged.
    """
    pending: list[Callable[[], object]] = g.setdefault("after_session_close", [])
    pending.append(callback)


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        try:
            session.close()
        except Exception:
            # The answer is already made; a connection lost at its end is invalidated by SQLAlchemy
            # and must not turn into an error outside the app (a bare 500 from the WSGI server).
            log.warning("closing the request's session failed", exc_info=True)
    for callback in g.pop("after_session_close", ()):
        try:
            callback()
        except Exception:
            log.warning("work after the request's session failed", exc_info=True)
