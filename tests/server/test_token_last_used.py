"""``last_used_at`` of device and session tokens: kept, cheaply.

Rules: LU-1 a successful request with a token sets its ``last_used_at`` (OpenRosa key in the path,
bearer on the JSON API); LU-2 at most one write per token per minute: a compare-and-set, so later
requests within the minute write nothing; LU-3 a refused request writes nothing; LU-4 the write
comes after the request's own transaction (it is not lost when the request's is rolled back).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import AccessToken
from tests.conftest import Backend, Personas


def _last_used(session: Session, token_id: int) -> Any:
    session.expire_all()
    token = session.get(AccessToken, token_id)
    assert token is not None
    return token.last_used_at


@pytest.fixture
def token_updates(backend: Backend) -> Iterator[list[str]]:
    """The compare-and-set UPDATEs of ``last_used_at`` sent during the test."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE access_tokens") and "last_used_at IS NULL OR" in statement:
            seen.append(statement)

    event.listen(backend.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(backend.engine, "before_cursor_execute", record)


def test_a_device_key_in_the_path_marks_its_token_used_once_a_minute(
    client: FlaskClient, personas: Personas, session: Session, token_updates: list[str]
) -> None:
    assert _last_used(session, personas.device.id) is None
    before = utcnow()
    for _ in range(3):
        assert client.get(f"{personas.collect_prefix}/formList").status_code == 200
    first = _last_used(session, personas.device.id)
    assert first is not None and first >= before - timedelta(seconds=1)
    assert len(token_updates) == 1  # the two later requests saw a fresh value and wrote nothing

    # A minute later the next request writes again.
    stale = utcnow() - timedelta(seconds=61)
    session.execute(update(AccessToken).where(AccessToken.id == personas.device.id).values(last_used_at=stale))
    session.commit()
    assert client.get(f"{personas.collect_prefix}/formList").status_code == 200
    assert _last_used(session, personas.device.id) > stale + timedelta(seconds=30)
    assert len(token_updates) == 2


def test_a_bearer_session_token_is_marked_used(client: FlaskClient, personas: Personas, session: Session) -> None:
    from server.passwords import token_hash

    token = session.query(AccessToken).filter_by(token_hash=token_hash(personas.manager.token)).one()
    assert token.last_used_at is None
    assert client.get(f"/v1/projects/{personas.project_id}", headers=personas.manager.headers).status_code == 200
    assert _last_used(session, token.id) is not None


def test_a_refused_request_leaves_last_used_as_it_was(
    client: FlaskClient, personas: Personas, session: Session
) -> None:
    other = f"/v1/key/{personas.device.token}/projects/{personas.other_project_id}/formList"
    assert client.get(other).status_code == 403
    assert (
        client.get(f"/v1/projects/{personas.project_id}/assignments", headers=personas.device.headers).status_code
        == 403
    )
    assert _last_used(session, personas.device.id) is None


def test_the_compare_and_set_writes_once_between_concurrent_callers(app: Flask, personas: Personas) -> None:
    from server.services.accounts import note_token_use
    from server.store import get_store

    with app.app_context():
        first, second = get_store().sessions(), get_store().sessions()
        try:
            assert note_token_use(first, personas.device.id) is True
            assert note_token_use(second, personas.device.id) is False
        finally:
            first.close()
            second.close()
