"""``server.db.pipeline.first_row``: a Core statement run on the driver reads what SQLAlchemy would read.

Rules:
- P1 the row equals SQLAlchemy's own ``execute(...).first()`` for the same statement and parameters,
  including the literals the statement holds itself (``kind == 'device'``).
- P2 typed columns come back converted by their type: UTC datetimes stay UTC even when the
  connection's time zone is another one (PostgreSQL).
- P3 no matching row gives ``None``.
- P4 a statement the database refuses raises SQLAlchemy's exception class, not the driver's.
- P5 a connection the server dropped is reported as SQLAlchemy reports it (``connection_invalidated``)
  and is not lent again by the pool; closing the session after it raises nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from server.db import pipeline
from server.db.engine import make_engine
from server.db.models.accounts import AccessToken
from tests.conftest import POSTGRES_URL, Backend, terminate_postgres_backend

_STATEMENT = select(AccessToken.id, AccessToken.name, AccessToken.expires_at, AccessToken.revoked_at).where(
    AccessToken.token_hash == bindparam("token_hash"), AccessToken.kind == "device"
)


def _token(session: Session, token_hash: str, kind: str = "device") -> AccessToken:
    row = AccessToken(
        token_hash=token_hash,
        kind=kind,
        name=f"phone {token_hash[:4]}",
        expires_at=datetime(2031, 5, 1, 12, 30, tzinfo=UTC),
        revoked_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(microseconds=7),
    )
    session.add(row)
    session.flush()
    return row


def test_first_row_reads_what_sqlalchemy_reads(session: Session, backend: Backend) -> None:
    """P1, P2: same values, literals included; datetimes in UTC whatever the connection's time zone."""
    token = _token(session, "a" * 64)
    _token(session, "b" * 64, kind="session")
    if backend.name == "postgresql":
        session.execute(text("SET LOCAL TIME ZONE 'Africa/Casablanca'"))
    params = {"token_hash": "a" * 64}
    expected = session.connection().execute(_STATEMENT, params).first()
    row = pipeline.first_row(session, _STATEMENT, params)
    assert expected is not None and row is not None
    assert row == tuple(expected)
    assert row == (token.id, token.name, datetime(2031, 5, 1, 12, 30, tzinfo=UTC), token.revoked_at)
    assert row[2].utcoffset() == timedelta(0) and row[3].utcoffset() == timedelta(0)
    # The literal is applied: a session token with its hash is not a device's.
    assert pipeline.first_row(session, _STATEMENT, {"token_hash": "b" * 64}) is None


def test_first_row_without_a_match_is_none(session: Session) -> None:
    """P3."""
    assert pipeline.first_row(session, _STATEMENT, {"token_hash": "c" * 64}) is None


def test_driver_errors_are_sqlalchemys(session: Session, backend: Backend) -> None:
    """P4: a refused write raises SQLAlchemy's class (callers catch ``IntegrityError`` whichever way it ran)."""
    add = (
        insert(AccessToken)
        .values(token_hash=bindparam("token_hash"), kind="device", name="twin")
        .returning(AccessToken.id)
    )
    _token(session, "d" * 64)
    nested = session.begin_nested()
    with pytest.raises(IntegrityError):
        pipeline.first_row(session, add, {"token_hash": "d" * 64})
    nested.rollback()
    if backend.name == "postgresql":  # executemany is the push path's, on PostgreSQL only
        nested = session.begin_nested()
        with pytest.raises(IntegrityError):
            pipeline.executemany(session, add, [{"token_hash": "e" * 64}, {"token_hash": "d" * 64}])
        nested.rollback()


@pytest.mark.skipif(not POSTGRES_URL, reason="a server-side connection drop needs PostgreSQL (SQLite has none)")
def test_a_lost_connection_is_invalidated() -> None:
    """P5: the driver's "connection lost" arrives as SQLAlchemy's, with the connection invalidated."""
    assert POSTGRES_URL
    engine = make_engine(POSTGRES_URL, pool_size=1, max_overflow=0)
    try:
        session = Session(engine)
        pid = pipeline.first_row(session, select(func.pg_backend_pid()), {})
        assert pid is not None
        terminate_postgres_backend(pid[0])
        with pytest.raises(OperationalError) as lost:
            pipeline.first_row(session, select(func.pg_backend_pid()), {})
        assert lost.value.connection_invalidated
        session.close()  # nothing to roll back on a connection known to be gone: no error
        with Session(engine) as again:
            assert pipeline.first_row(again, select(func.pg_backend_pid()), {}) not in (None, pid)
    finally:
        engine.dispose()
