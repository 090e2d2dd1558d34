"""Issue 15 row 11: password logins are throttled, timed alike for unknown users, and audited.

Rules:
- T1 the reproduced attack: a burst of wrong passwords, then the right one, is answered ``429`` with
  ``Retry-After`` (not ``201``), on the JSON API and on OpenRosa Basic alike; once the pause is over
  the right password works (never a lock).
- T2 someone else's wrong passwords for a coach's account, from another address, never make the coach
  wait longer than the account counter's short pause (30 s), whatever the attacker keeps doing.
- T3 an unknown username is checked against a dummy hash (the same argon2 work) and counted and
  audited like a wrong password.
- T4 every failed login, the refused ones included, is an ``auth.login_failed`` audit event.
The clock is the service's (patched), never the test's.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AuditEvent
from server.services import logins
from tests.conftest import PERSONA_PASSWORD, Personas

ATTACKER = {"REMOTE_ADDR": "198.51.100.66"}
COACH_PHONE = {"REMOTE_ADDR": "203.0.113.10"}


class Clock:
    """The login service's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    found = Clock()
    monkeypatch.setattr(logins, "utcnow", found)
    return found


def _session(client: FlaskClient, username: str, password: str, environ: dict[str, str]) -> Any:
    return client.post("/v1/sessions", json={"email": username, "password": password}, environ_base=environ)


def _failures(session: Session) -> list[dict[str, Any]]:
    session.expire_all()
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_failed").order_by(AuditEvent.id))
    return [e.details for e in events]


def test_a_burst_of_wrong_passwords_then_the_right_one_must_pause(
    client: FlaskClient, session: Session, personas: Personas, clock: Clock
) -> None:
    coach = "coach-persona"
    for _ in range(logins.PAIR.free_failures + 3):
        wrong = _session(client, coach, "not the password", ATTACKER)
        assert wrong.status_code in (401, 429)
    right = _session(client, coach, PERSONA_PASSWORD, ATTACKER)
    assert right.status_code == 429, right.get_data(as_text=True)
    assert right.get_json()["details"]["problem"] == "too_many_attempts"
    wait = int(right.headers["Retry-After"])
    assert 1 <= wait <= logins.PAIR.max_pause.total_seconds()
    raw = base64.b64encode(f"{coach}:{PERSONA_PASSWORD}".encode()).decode()
    openrosa = client.get(
        f"/v1/projects/{personas.project_id}/formList",
        headers={"Authorization": f"Basic {raw}", "X-OpenRosa-Version": "1.0"},
        environ_base=ATTACKER,
    )
    assert openrosa.status_code == 429 and "Retry-After" in openrosa.headers
    assert b"<OpenRosaResponse" in openrosa.get_data()
    clock.advance(wait)
    assert _session(client, coach, PERSONA_PASSWORD, ATTACKER).status_code == 200  # a pause, never a lock
    reasons = [d["reason"] for d in _failures(session)]
    assert reasons.count("wrong_password") >= logins.PAIR.free_failures and reasons.count("throttled") >= 2
    assert {d["address"] for d in _failures(session)} == {ATTACKER["REMOTE_ADDR"]}


def test_another_persons_guessing_pauses_the_coach_briefly_at_most(
    client: FlaskClient, personas: Personas, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small counters, same shape: the attacker exhausts the account counter from many addresses.
    monkeypatch.setattr(logins, "PAIR", logins.ThrottlePolicy(2, timedelta(minutes=5)))
    monkeypatch.setattr(logins, "ADDRESS", logins.ThrottlePolicy(3, timedelta(minutes=5)))
    monkeypatch.setattr(logins, "ACCOUNT", logins.ThrottlePolicy(4, timedelta(seconds=30)))
    coach = "coach-persona"
    longest = 0
    for round_ in range(3):
        for n in range(6):
            _session(client, coach, f"guess {round_}-{n}", {"REMOTE_ADDR": f"198.51.100.{n + 1}"})
        answer = _session(client, coach, PERSONA_PASSWORD, COACH_PHONE)
        if answer.status_code == 429:
            wait = int(answer.headers["Retry-After"])
            longest = max(longest, wait)
            clock.advance(wait)
            answer = _session(client, coach, PERSONA_PASSWORD, COACH_PHONE)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert 0 < longest <= 30  # paused by the account counter, never longer than its cap


def test_an_unknown_username_takes_the_same_path(
    client: FlaskClient, session: Session, personas: Personas, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = logins.verify_password

    def spy(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(logins, "verify_password", spy)
    assert _session(client, "nobody-here", "whatever-password", ATTACKER).status_code == 401
    assert _session(client, "coach-persona", "whatever-password", ATTACKER).status_code == 401
    dummy, real_hash = checked
    assert dummy.startswith("$argon2id$") and real_hash.startswith("$argon2id$")
    assert dummy.split("$")[3] == real_hash.split("$")[3]  # the same argon2 parameters: the same work
    assert [(d["username"], d["reason"]) for d in _failures(session)] == [
        ("nobody-here", "unknown_user"),
        ("coach-persona", "wrong_password"),
    ]


@pytest.mark.parametrize(
    ("failures", "policy", "expected"),
    [
        (0, logins.PAIR, 0),
        (4, logins.PAIR, 0),
        (5, logins.PAIR, 1),
        (8, logins.PAIR, 8),
        (10_000, logins.PAIR, 300),
        (49, logins.ACCOUNT, 0),
        (60, logins.ACCOUNT, 30),
    ],
    ids=["none", "free", "first-pause", "doubling", "capped", "account-free", "account-capped"],
)
def test_the_pause_grows_then_stays_short(failures: int, policy: logins.ThrottlePolicy, expected: int) -> None:
    assert logins.pause_after(failures, policy) == timedelta(seconds=expected)
