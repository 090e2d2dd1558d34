"""Engine and session factory: SQLite in WAL mode with foreign keys on, or PostgreSQL through psycopg 3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def json_dumps(value: Any) -> str:
    """Serialise a JSON column value: orjson (several times faster than ``json`` on every stored record).

    What orjson refuses (integers beyond 64 bits, unknown types) goes through ``json.dumps``, so a
    value storable before is storable now. Non-ASCII text is written as UTF-8, not ``\\u`` escapes.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    kwargs.setdefault("json_serializer", json_dumps)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs; take control of it.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # No ping per checkout (a round trip on every request); connections older than 30 minutes are
    # replaced instead, and a connection that died anyway fails one request, which clients retry.
    kwargs.setdefault("pool_recycle", 1800)
    # LIFO: a worker reuses its most recent connection, whose prepared statements and caches are warm;
    # connections left idle by a burst stay idle (and are recycled) instead of rotating through every request.
    kwargs.setdefault("pool_use_lifo", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Indicators sum and compare numbers kept as text in submission records: SQLite has no regular
    # expressions, so the one rule of what a number is (exports.indicators.NUMBER) runs as a function.
    dbapi_connection.create_function("fieldsync_number", 1, _number_or_null, deterministic=True)


def _number_or_null(value: Any) -> float | None:
    from exports.indicators import NUMBER

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and NUMBER.match(value):
        return float(value)
    return None


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: two writers never deadlock on a lock upgrade.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory used by requests, jobs and the CLI."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def is_sqlite(engine: Engine) -> bool:
    """Tell whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"
