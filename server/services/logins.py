"""Password logins (HTTP Basic, ``POST /v1/sessions``, OpenRosa Digest): throttling, timing and audit.

Throttling slows guessing down and then asks for a pause; it never locks an account. Three counters
live in the database (``login_throttles``), so they hold across workers and hosts:

- the pair (account, client address): 5 free failures, then a pause of 1 s, 2 s, 4 s ... up to 5 min.
  Someone guessing a coach's password from their own machine only pauses themselves;
- the client address (every account): 30 free failures (a shared office behind one address), then the
  same doubling pause up to 5 min;
- the account (every address): 50 free failures, then a pause doubling up to **30 s** only. It engages
  only under a guessing attack spread over many addresses, and a coach caught by it waits half a minute
  at most, never longer, whatever the attacker keeps doing.

A counter forgets its failures 15 minutes after the last one; a successful login forgets the pair's.
An attempt during a pause is refused with ``429`` and ``Retry-After`` before any password is checked.
Unknown and disabled accounts take the same path as known ones: the password is verified against a
dummy argon2 hash and the failure is counted and audited alike, so the answer's timing does not tell
whether a username exists. Every failed login, the refused ones included, is an ``auth.login_failed``
audit event (username, address, scheme, reason). It is committed before the ``401``/``429`` is raised:
a login is the first thing a request does, so that transaction holds nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import User
from server.db.queries import accounts as accounts_q
from server.db.queries import audit
from server.db.queries import logins as q
from server.db.transaction import transaction
from server.errors import ApiError
from server.passwords import hash_password, verify_password

FORGET_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures a counter allows before pausing, and the longest pause."""

    free_failures: int
    max_pause: timedelta


PAIR = ThrottlePolicy(5, timedelta(minutes=5))
ADDRESS = ThrottlePolicy(30, timedelta(minutes=5))
ACCOUNT = ThrottlePolicy(50, timedelta(seconds=30))


def pause_after(failures: int, policy: ThrottlePolicy) -> timedelta:
    """The pause a counter needs after ``failures`` failures: none, then 1 s doubling, capped."""
    extra = failures - policy.free_failures
    if extra < 0:
        return timedelta(0)
    if extra > 30:  # 2**30 s is far beyond any cap
        return policy.max_pause
    return min(policy.max_pause, timedelta(seconds=2**extra))


def throttle_keys(username: str, address: str) -> dict[str, ThrottlePolicy]:
    """The three counters of one attempt, with their policies."""
    name, where = username[:150], address[:45]
    return {f"pair:{where}:{name}": PAIR, f"address:{where}": ADDRESS, f"account:{name}": ACCOUNT}


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Hashed once per process, with the same parameters as real passwords: verifying against it costs
    # what verifying a real account costs.
    return hash_password("not a password: the hash an unknown username is checked against")


def _too_many(wait: timedelta) -> ApiError:
    seconds = max(1, math.ceil(wait.total_seconds()))
    return ApiError(
        429,
        "too_many_attempts",
        f"Too many wrong passwords: wait {seconds} seconds, then try again",
        {"retry_after_seconds": seconds},
        headers={"Retry-After": str(seconds)},
        message_fr=f"Trop de mots de passe erronés : attendez {seconds} secondes, puis réessayez.",
    )


@dataclass(frozen=True)
class LoginAttempt:
    """Who is trying, from where, how: what the throttle and the audit log need."""

    username: str
    address: str
    scheme: str  # "basic" | "session" | "digest"


def record_failure(
    session: Session, attempt: LoginAttempt, reason: str, user: User | None, *, count: bool = True
) -> None:
    """Count a failed login on its three counters and audit it; committed now (the caller answers 401)."""
    now = utcnow()
    with transaction(session):
        if count:
            for key, policy in throttle_keys(attempt.username, attempt.address).items():
                failures = q.count_failure(session, key, now, now - FORGET_AFTER)
                q.set_next_attempt(session, key, now + pause_after(failures, policy))
        audit.record(
            session,
            "anonymous",
            "auth.login_failed",
            subject=f"user:{user.id}" if user is not None else None,
            details={
                "username": attempt.username[:150],
                "address": attempt.address[:45],
                "scheme": attempt.scheme,
                "reason": reason,
            },
        )


def check_not_paused(session: Session, attempt: LoginAttempt) -> dict[str, datetime]:
    """Raise ``429`` (and audit it) when any counter of the attempt is in a pause; else return its counters."""
    now = utcnow()
    found = q.next_attempts(session, list(throttle_keys(attempt.username, attempt.address)))
    wait = max((at - now for at in found.values()), default=timedelta(0))
    if wait > timedelta(0):
        record_failure(session, attempt, "throttled", None, count=False)
        raise _too_many(wait)
    return found


def password_login(session: Session, username: str, password: str, *, address: str, scheme: str) -> User | None:
    """The enabled user whose password this is, else ``None`` (counted, audited); ``429`` during a pause."""
    attempt = LoginAttempt(username, address, scheme)
    counters = check_not_paused(session, attempt)
    user = accounts_q.get_user_by_username(session, username)
    # Unknown users are checked against a dummy hash: the same argon2 work, the same answer time.
    matches = verify_password(user.password_hash if user is not None else _dummy_hash(), password)
    if user is None or user.disabled or not matches:
        reason = "unknown_user" if user is None else "disabled" if user.disabled else "wrong_password"
        record_failure(session, attempt, reason, user)
        return None
    if next(iter(throttle_keys(username, address))) in counters:  # usually absent: nothing to write
        forget_pair(session, attempt)
    return user


def forget_pair(session: Session, attempt: LoginAttempt) -> None:
    """After a successful login: this address's failures on this account are forgotten."""
    with transaction(session):
        q.forget(session, [next(iter(throttle_keys(attempt.username, attempt.address)))])
        q.forget_stale(session, utcnow() - FORGET_AFTER)


def first_use_of_digest_nonce(session: Session, nonce: str, nc: str, lifetime: timedelta) -> bool:
    """Record an accepted Digest response's (nonce, nc); ``False`` if it was used before (a replay).

    Committed now, whatever the request does next: a replay of a request that later failed is still one.
    """
    now = utcnow()
    with transaction(session):
        first = q.use_digest_nonce(session, nonce, nc.lower(), now)
        if first and nc == "00000001":  # a nonce's first use: drop the uses of long-expired nonces
            q.forget_digest_nonces(session, now - 2 * lifetime)
    return first
