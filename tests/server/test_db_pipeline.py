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
- P6 the constants a statement holds (strings with quotes or ``%``, integers, booleans) are written into its
  SQL and read back unchanged; a new chain's statement then binds at most the 50 parameters under which
  psycopg caches a query's conversion (PostgreSQL).
- P7 the ``$n`` form sent to PostgreSQL is the statement itself: each ``%(name)s`` becomes ``$k`` for
  the k-th distinct name (a repeated name reuses its number), ``%%`` becomes ``%``, nothing else moves;
  a statement with any other ``%`` keeps psycopg's own conversion.
- P8 a parameter used twice and a ``%`` in the SQL read what SQLAlchemy reads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import bindparam, func, insert, literal, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from server.db import pipeline
from server.db.engine import make_engine
from server.db.models.accounts import AccessToken
from server.db.queries import submissions as submission_queries
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


def test_constants_are_written_into_the_sql(session: Session, backend: Backend) -> None:
    """P6."""
    _token(session, "f" * 64)
    odd = "it's 100% 'quoted' %(name)s"
    stmt = select(
        AccessToken.name,
        literal(odd),
        literal(0),
        literal(True),
        AccessToken.kind == literal("device"),
    ).where(AccessToken.token_hash == bindparam("token_hash"))
    assert pipeline.first_row(session, stmt, {"token_hash": "f" * 64}) == ("phone ffff", odd, 0, True, True)
    if backend.name != "postgresql":
        return
    new_chain = pipeline._compiled(submission_queries._new_chain_statement(True), session)
    # Every value sent is one the caller gives: no constant, nothing under SQLAlchemy's internal keys.
    assert "'submission.created'" in new_chain.sql and new_chain.defaults == {}
    assert len(set(re.findall(r"(?<!%)%\((\w+)\)s", new_chain.sql))) <= 50


_PIECES = st.one_of(
    # No digit in the text: "$1" followed by "5" would read as "$15" (SQL never puts one there either).
    st.text(alphabet=st.characters(blacklist_characters="%$0123456789", blacklist_categories=("Cs", "Nd")), max_size=8),
    st.just("%%"),
    st.sampled_from(["%(a)s", "%(token_hash)s", "%(lock_0)s", "%(b2)s"]),
)


@given(st.lists(_PIECES, max_size=20))
def test_numbered_placeholders_are_the_statement_itself(pieces: list[str]) -> None:
    """P7."""
    sql = "".join(pieces)
    numbered, order = pipeline._numbered(sql)
    assert numbered is not None
    names = [m for piece in pieces for m in re.findall(r"^%\((\w+)\)s$", piece)]
    assert list(order) == list(dict.fromkeys(names))
    back = re.sub(r"\$(\d+)", lambda m: f"<{order[int(m.group(1)) - 1]}>", numbered.decode("utf-8"))
    expected = "".join(
        "%" if piece == "%%" else (f"<{piece[2:-2]}>" if piece.startswith("%(") else piece) for piece in pieces
    )
    assert back == expected


@pytest.mark.parametrize("sql", ["select %s", "select 100% off", "select %(a)d"])
def test_another_percent_keeps_psycopgs_conversion(sql: str) -> None:
    """P7."""
    assert pipeline._numbered(sql) == (None, ())


def test_a_repeated_parameter_and_a_percent_read_what_sqlalchemy_reads(session: Session) -> None:
    """P8."""
    _token(session, "c" * 64)
    hashed = bindparam("token_hash")
    stmt = select(AccessToken.name, AccessToken.token_hash == hashed, AccessToken.name.like("phone %")).where(
        AccessToken.token_hash == hashed
    )
    params = {"token_hash": "c" * 64}
    expected = session.connection().execute(stmt, params).first()
    assert expected is not None
    assert pipeline.first_row(session, stmt, params) == tuple(expected) == ("phone cccc", True, True)
