"""The one way a use case opens its transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Run the block in one fresh transaction, committed at the end or rolled back on error.

    Authentication and look-ups before a use case read through the same session and so open an
    implicit transaction; it holds no writes, so it is closed first and the use case starts clean
    (its reads and writes then share one snapshot).
    """
    if session.in_transaction():
        session.commit()
    with session.begin():
        yield session
