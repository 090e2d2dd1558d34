"""Queries on login throttling (``login_throttles``) and Digest replays (``digest_nonce_uses``); the session
comes first, nothing commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.db.models.accounts import DigestNonceUse, LoginThrottle
from server.db.upsert import insert_ignore


def next_attempts(session: Session, keys: Sequence[str]) -> dict[str, datetime]:
    """When each of ``keys`` may try again (keys without recent failures are absent)."""
    rows = session.execute(
        select(LoginThrottle.key, LoginThrottle.next_attempt_at).where(LoginThrottle.key.in_(list(keys)))
    ).all()
    return {key: at for key, at in rows}


def count_failure(session: Session, key: str, now: datetime, forget_before: datetime) -> int:
    """Add one failure to ``key`` (restarting the count when its last failure is older than ``forget_before``).

    One ``INSERT ... ON CONFLICT DO UPDATE``: concurrent failures of several workers all count.
    """
    table = LoginThrottle.__table__
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).values(key=key, failures=1, last_failure_at=now, next_attempt_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "failures": case((table.c.last_failure_at < forget_before, 1), else_=table.c.failures + 1),
            "last_failure_at": now,
        },
    ).returning(table.c.failures)
    failures: int = session.execute(stmt).scalar_one()
    return failures


def set_next_attempt(session: Session, key: str, when: datetime) -> None:
    """Make ``key`` wait until ``when``."""
    session.execute(update(LoginThrottle).where(LoginThrottle.key == key).values(next_attempt_at=when))


def forget(session: Session, keys: Sequence[str]) -> None:
    """Drop the failures of ``keys`` (after a successful login)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(list(keys))))


def forget_stale(session: Session, before: datetime) -> None:
    """Drop every key whose last failure is older than ``before`` (keeps the table small)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < before))


def use_digest_nonce(session: Session, nonce: str, nc: str, now: datetime) -> bool:
    """Record one use of (nonce, nc); ``False`` when it was used before (a replay), race-free."""
    values = {"nonce": nonce, "nc": nc, "used_at": now}
    table = DigestNonceUse.__table__
    inserted = insert_ignore(session, table, values, ["nonce", "nc"], returning="nc")  # type: ignore[arg-type]
    return inserted is not None


def forget_digest_nonces(session: Session, before: datetime) -> None:
    """Drop the uses of nonces older than ``before`` (such nonces are refused as stale anyway)."""
    session.execute(delete(DigestNonceUse).where(DigestNonceUse.used_at < before))
