"""``server.db.pipeline.first_row``: a Core statement run on the driver reads what SQLAlchemy would read.

Rules:
- P1 the row equals SQLAlchemy's own ``execute(...).first()`` for the same statement and parameters,
  including the literals the statement holds itself (``kind == 'device'``).
- P2 typed columns come back converted by their type: UTC datetimes stay UTC even when the
  connection's time zone is another one (PostgreSQL).
- P3 no matching row gives ``None``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from server.db import pipeline
from server.db.models.accounts import AccessToken
from tests.conftest import Backend

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
