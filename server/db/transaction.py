"""The one way a use case opens its transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Run the block in one transaction, committed at the end or rolled back on error.

    Authentication and look-ups before a use case read through the same session and so open an
    implicit transaction; the use case simply continues it (it holds no writes yet), which saves
    a COMMIT round trip per request. On PostgreSQL (READ COMMITTED) every statement still sees the
    latest committed data; on SQLite the write lock was already taken by ``BEGIN IMMEDIATE``.
    """
    if not session.in_transaction():
        with session.begin():
            yield session
        return
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    session.commit()


def read_without_transaction(session: Session) -> None:
    """Run the session's next reads without BEGIN and ROLLBACK (PostgreSQL, a session on the app's engine).

    For a request that only reads, in a few statements: a transaction around them adds two round
    trips and guarantees nothing more, and its ROLLBACK makes psycopg deallocate every statement
    prepared on the connection, which the pool lends next to a submission (parsed and planned again).
    The pool puts the connection's isolation level back when the session ends. Elsewhere (SQLite, a
    session already in a transaction or bound to a test's connection) nothing changes.
    """
    if isinstance(session.bind, Engine) and session.bind.dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
