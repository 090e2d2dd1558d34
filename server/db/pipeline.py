"""Core statements run straight on the session's psycopg connection: the hot paths of push and OpenRosa.

SQLAlchemy's executemany builds every row's parameters through its compiler before psycopg sees
them; for a batch of 200 new chains of ~40 columns that was ~8 ms of the ~30 ms of Python spent on
the INSERTs (measured per batch, in-process). Here the statement is compiled once per dialect, and
each value only goes through its column's bind processor (UTC timestamps, JSON): the conversions
SQLAlchemy itself applies. psycopg then pipelines the rows in one round trip, on the session's own
connection, inside its transaction and SAVEPOINTs.

Inside ``pipelined(session)`` the rows are sent without waiting for the server: PostgreSQL writes one
chunk while Python prepares the next, and the block's end waits for every result.

``first_row`` does the same for the one-row statements of an OpenRosa submission (token, form
target, new chain): SQLAlchemy's execution layer (execution context, result set-up) was about a
sixth of that request's CPU. It sends the statement as PostgreSQL's own ``$n`` placeholders, encoded
once, through a psycopg ``RawCursor`` with the values in order: psycopg's ``%(name)s`` conversion
(encoding the SQL, looking its parse up, reordering a mapping) cost ~60 µs of CPU per statement,
measured, out of ~190.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import RawCursor
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

_BindProcessors = list[tuple[str, Callable[[Any], Any]]]
_ResultProcessors = list[tuple[int, Callable[[Any], Any]]]


@dataclass(frozen=True, slots=True)
class _Compiled:
    stmt: ClauseElement  # kept with its entry, so its id cannot be reused by another object
    sql: str
    defaults: dict[str, Any]  # the values the statement holds itself (literals compared with, e.g. a status)
    binds: _BindProcessors  # (name, processor) of the parameters whose type converts them (timestamps, JSON)
    results: _ResultProcessors  # (column position, processor) of the columns whose type converts them
    raw_sql: bytes | None  # the SQL with $n placeholders (PostgreSQL), for first_row
    order: tuple[str, ...]  # the parameter named by each $n, in order


_COMPILED: dict[tuple[int, str], _Compiled] = {}


def _compiled(stmt: ClauseElement, source: Session | Connection) -> _Compiled:
    dialect = source.dialect if isinstance(source, Connection) else source.get_bind().dialect
    key = (id(stmt), dialect.name)
    found = _COMPILED.get(key)
    if found is None or found.stmt is not stmt:
        compiled: Any = stmt.compile(dialect=dialect)
        # compiled.binds also lists each anonymous parameter under its internal key: only the names the
        # SQL holds are bound (psycopg is given nothing it does not use).
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        sql, inlined = _inline_constants(str(compiled), by_name, dialect)
        bound = {name: bind for name, bind in by_name.items() if name not in inlined}
        binds = [
            (name, process)
            for name, bind in bound.items()
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]
        results = [
            (position, process)
            for position, column in enumerate(compiled._result_columns)
            if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        ]
        defaults = {name: bind.effective_value for name, bind in bound.items() if not bind.required}
        raw_sql, order = _numbered(sql) if dialect.paramstyle == "pyformat" else (None, ())
        found = _COMPILED[key] = _Compiled(stmt, sql, defaults, binds, results, raw_sql, order)
    return found


_PYFORMAT = re.compile(r"%(?:\((\w+)\)s|%)")


def _numbered(sql: str) -> tuple[bytes | None, tuple[str, ...]]:
    """``sql``'s ``%(name)s`` placeholders as ``$1``, ``$2`` … (one per distinct name) and ``%%`` as ``%``.

    The rewriting psycopg itself applies to a ``%(name)s`` query before sending it, done once;
    ``None`` for a ``%`` of any other form (psycopg's own conversion then judges the query).
    """
    if "%" in _PYFORMAT.sub("", sql):
        return None, ()
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        return "%" if name is None else f"${order.setdefault(name, len(order) + 1)}"

    return _PYFORMAT.sub(number, sql).encode("utf-8"), tuple(order)


def _inline_constants(sql: str, binds: Mapping[str, Any], dialect: Any) -> tuple[str, set[str]]:
    """Write the statement's own constants (a kind, a state, ``0``) into its SQL instead of binding them.

    psycopg converts a query's ``%(name)s`` placeholders once and caches the result, but only for a
    query of at most 50 parameters: a new chain's statement was sent with 53, 30 of them constants
    (half of those twice, under SQLAlchemy's internal keys), so every submission paid the conversion
    again: 11 % of an OpenRosa POST's CPU, profiled. Only plain strings, integers and booleans are
    inlined, rendered by the dialect itself (quotes escaped, ``%`` doubled for the driver).
    """
    if dialect.paramstyle != "pyformat":
        return sql, set()
    inlined: set[str] = set()
    for name, bind in binds.items():
        if bind.required or bind.callable is not None or bind.expanding or bind.literal_execute:
            continue
        value = bind.value
        if type(value) not in (str, int, bool):
            continue
        render = bind.type.dialect_impl(dialect).literal_processor(dialect)
        placeholder = f"%({name})s"
        if render is None or placeholder not in sql:
            continue
        sql = sql.replace(placeholder, render(value))
        inlined.add(name)
    return sql, inlined


@contextmanager
def _driver(source: Session | Connection, sql: str | None = None) -> Iterator[Any]:
    """The psycopg connection of a session (or of a Core connection), whose errors are raised as SQLAlchemy's.

    That is SQLAlchemy's exception classes (callers catch ``OperationalError`` or ``IntegrityError``
    whichever way a statement ran), and a connection the server dropped is marked invalid: the pool
    replaces it instead of lending it to the next request, and the request's end does not roll it back.
    """
    connection = source if isinstance(source, Connection) else source.connection()
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    dialect = connection.dialect
    try:
        yield driver
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, driver, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc


def executemany(session: Session, stmt: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run ``stmt`` once per row, pipelined (PostgreSQL and psycopg only).

    ``stmt`` takes only named bind parameters and every row gives each of them. Outside
    ``pipelined`` this returns once the server has run every row (an error is raised here); inside,
    it returns once the rows are sent.
    """
    if not rows:
        return
    compiled = _compiled(stmt, session)
    params = [_bound(compiled, row) for row in rows]
    with _driver(session, compiled.sql) as driver, driver.cursor() as cursor:
        cursor.executemany(compiled.sql, params)


def first_row(source: Session | Connection, stmt: ClauseElement, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Run ``stmt`` with ``params`` and return its first row (values converted by their column types), or ``None``.

    On the session's connection and inside its transaction (or on a Core connection, as it stands);
    not inside ``pipelined``. ``params`` gives every named bind parameter of ``stmt``. Other stores
    than PostgreSQL run it through SQLAlchemy, with the same result.
    """
    connection = source if isinstance(source, Connection) else source.connection()
    if connection.dialect.name != "postgresql":
        found = connection.execute(stmt, params).first()  # type: ignore[call-overload]
        return tuple(found) if found is not None else None
    compiled = _compiled(stmt, source)
    values = _bound(compiled, params)
    with _driver(source, compiled.sql) as driver:
        if compiled.raw_sql is None:
            row = driver.execute(compiled.sql, values).fetchone()
        else:
            with RawCursor(driver) as cursor:
                row = cursor.execute(compiled.raw_sql, tuple([values[name] for name in compiled.order])).fetchone()
    if row is None or not compiled.results:
        return row
    converted = list(row)
    for position, process in compiled.results:
        converted[position] = process(converted[position])
    return tuple(converted)


def _bound(compiled: _Compiled, row: Mapping[str, Any]) -> dict[str, Any]:
    # Only the values whose type converts them are touched; the others go as they are.
    values = {**compiled.defaults, **row} if compiled.defaults else dict(row)
    for name, process in compiled.binds:
        value = values[name]
        if value is not None:
            values[name] = process(value)
    return values


@contextmanager
def pipelined(session: Session) -> Iterator[None]:
    """Let the ``executemany`` calls of this block run on the server while Python goes on (PostgreSQL).

    The end of the block waits for every statement sent in it and raises the first error (as
    SQLAlchemy's exception). Nothing else may use the session inside the block: a statement through
    SQLAlchemy would wait for the pipeline's results out of order.
    """
    with _driver(session) as driver, driver.pipeline():
        yield
