"""Password rules (NIST SP 800-63B §5.1.1.2), one check for the CLI and the API alike.

Rules: PW-1 at least 10 characters; PW-2 not in the common-password lists zxcvbn ships; PW-3 not one
character repeated, not the user name; PW-4 the API and the service refuse alike, naming the field,
and write nothing; PW-5 the personas' and the demo's passwords pass.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.demo import DEMO_PASSWORD
from server.errors import ApiError
from server.services.password_policy import MIN_LENGTH, check_new_password, common_passwords, password_problem
from tests.conftest import PERSONA_PASSWORD, Personas

REFUSED = [
    ("short", None, "at least 10"),
    ("123456789", None, "at least 10"),
    ("password123", None, "commonly used"),
    ("QWERTYUIOP", None, "commonly used"),
    ("1q2w3e4r5t", None, "commonly used"),
    ("aaaaaaaaaaaa", None, "repeated"),
    ("Samira-2026x", "samira-2026x", "user name"),
    ("x" * 201, None, "at most"),
]


@pytest.mark.parametrize(
    ("password", "username", "words"),
    REFUSED,
    ids=["short", "nine-digits", "breached", "breached-uppercase", "keyboard-walk", "repeated", "username", "too-long"],
)
def test_refused_passwords_say_why(password: str, username: str | None, words: str) -> None:
    problem = password_problem(password, username)
    assert problem is not None and words in problem
    with pytest.raises(ApiError) as raised:
        check_new_password(password, username)
    assert raised.value.status == 400 and raised.value.code == "weak_password"
    assert raised.value.details["fields"]["password"] == [problem]


@pytest.mark.parametrize(
    "password",
    [PERSONA_PASSWORD, DEMO_PASSWORD, "long enough pw", "une phrase de passe", "كلمة سر طويلة جدا"],
    ids=["personas", "demo", "role-matrix", "french-phrase", "arabic-phrase"],
)
def test_pass_phrases_are_accepted(password: str) -> None:
    assert password_problem(password, "someone") is None


def test_the_list_is_zxcvbn_s_and_only_holds_what_the_length_rule_lets_through() -> None:
    blocked = common_passwords()
    assert len(blocked) > 1000
    assert all(len(word) >= MIN_LENGTH for word in blocked)


@given(st.text(max_size=MIN_LENGTH - 1))
def test_anything_shorter_than_the_minimum_is_refused(password: str) -> None:
    assert password_problem(password) is not None


def _users(session: Session) -> int:
    from server.db.models import User

    return int(session.scalar(select(func.count()).select_from(User)) or 0)


@pytest.mark.parametrize("password", ["tiny", "password123"], ids=["short", "common"])
def test_the_api_refuses_weak_passwords_and_writes_nothing(
    client: FlaskClient, personas: Personas, session: Session, password: str
) -> None:
    before = _users(session)
    response = client.post(
        "/v1/users", json={"email": "nadia@example.org", "password": password}, headers=personas.admin.headers
    )
    assert response.status_code == 400
    body = response.get_json()
    assert "password" in body["details"]["fields"]
    assert password_problem(password) in body["details"]["fields"]["password"]
    assert _users(session) == before


def test_the_service_refuses_the_user_name_as_password(client: FlaskClient, personas: Personas) -> None:
    response = client.post(
        "/v1/users",
        json={"email": "khadija.ait@example.org", "username": "khadija.ait", "password": "Khadija.Ait"},
        headers=personas.admin.headers,
    )
    assert response.status_code == 400
    assert response.get_json()["details"]["problem"] == "weak_password"
