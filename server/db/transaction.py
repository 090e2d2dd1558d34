"""The one way a use case opens its transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
