"""formList without a database read while nothing changed: PostgreSQL's notifications keep the cache true.

Rules (PostgreSQL; SQLite reads the stamp on every request, tests/server/test_formlist_shortcut.py):
- FL-NOTIFY-NO-READ a device's unchanged formList, asked again and again, is answered with no read of
  the database once checked (200 and 304), while the change listener is connected.
- FL-NOTIFY-CHANGE a change committed elsewhere (plain SQL on another connection, as another host would)
  is in the answer as soon as PostgreSQL has told the process: a closed form, a new stamp, a revoked or
  expired key, a deleted key.
- FL-NOTIFY-TRIGGERS the triggers notify at commit for the stamp and for any token change but a
  ``last_used_at`` alone, with the table's schema as payload; a rolled-back change tells nothing.
- FL-NOTIFY-OTHER-SCHEMA a notification about another schema (another deployment, a parallel test) moves
  nothing.
- FL-NOTIFY-LOST a listener whose connection is killed stops vouching at once (the database is read), and
  a change made while it was away is seen after it reconnects.
- FL-NOTIFY-SILENT a listener without a heartbeat for ``VALID_FOR`` seconds vouches for nothing.
- FL-NOTIFY-MOVED a heartbeat answered by another backend than the one that ran ``LISTEN`` (a transaction
  pooler) ends the listener's connection, with a warning.
- FL-NOTIFY-OFF ``FORMLIST_LISTEN`` off: no listener, one read per request.
- FL-NOTIFY-DISPOSE the listener's thread and connection end with its engine's ``dispose()``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from server.db.change_listener import CHANNEL, ChangeListener
from server.db.engine import make_engine
from server.services import accounts
from server.services import forms as forms_svc
from server.store import get_store
from tests.conftest import POSTGRES_URL
from tests.server.fixtures_forms import COOP_XLSX, ENTREPRENEUR_XLSX, committed_forms_app, publish_form

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not POSTGRES_URL, reason="LISTEN/NOTIFY is PostgreSQL's; SQLite reads on every request"),
]


@dataclass
class Live:
    app: Flask
    client: FlaskClient
    url: str
    device_id: int
    writer: Engine
    listener: ChangeListener
    reads: list[int]


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    """Poll ``condition`` until it holds (PostgreSQL delivers notifications asynchronously)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"never happened: {what}")


def _phone_and_reads(
    app: Flask, project_id: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[accounts.IssuedToken, str, list[int]]:
    """A phone's key in the project, its formList URL, and a list that grows by one per read of key and stamp."""
    with app.app_context():
        session = get_store().sessions()
        device = accounts.create_device(session, project_id, "Téléphone de Fatima")
        session.close()
    reads: list[int] = []
    real = forms_svc.device_and_formlist_stamp

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(forms_svc, "device_and_formlist_stamp", counting)
    return device, f"/v1/key/{device.token}/projects/{project_id}/formList", reads


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    with committed_forms_app("postgresql", tmp_path, {}) as (app, _headers, project_id):
        publish_form(app, project_id, COOP_XLSX)
        publish_form(app, project_id, ENTREPRENEUR_XLSX)
        device, url, reads = _phone_and_reads(app, project_id, monkeypatch)
        store = get_store(app)
        assert store.listener is not None
        writer = make_engine(str(store.engine.url.render_as_string(hide_password=False)))
        try:
            yield Live(app, app.test_client(), url, device.id, writer, store.listener, reads)
        finally:
            writer.dispose()


def _connected(live: Live) -> None:
    """Ask once so the listener starts, and wait until it vouches."""
    live.client.get(live.url)
    wait_for(lambda: get_store(live.app).change_generation() is not None, "the listener connected")


def _warm(live: Live) -> bytes:
    _connected(live)
    first = live.client.get(live.url)
    assert first.status_code == 200
    live.client.get(live.url)  # checked now, at the listener's current generation
    return first.data


def _commit(live: Live, sql: str, **params: Any) -> None:
    with live.writer.begin() as conn:
        conn.execute(text(sql), params)


def _moved_from(live: Live, generation: int | None) -> Callable[[], bool]:
    return lambda: get_store(live.app).change_generation() not in (None, generation)


def test_fl_notify_no_read_while_nothing_changes(live: Live) -> None:
    body = _warm(live)
    etag = live.client.get(live.url).headers["ETag"]
    before = len(live.reads)
    for _ in range(20):
        answer = live.client.get(live.url)
        assert answer.status_code == 200 and answer.data == body
        assert live.client.get(live.url, headers={"If-None-Match": etag}).status_code == 304
    assert len(live.reads) == before


@pytest.mark.parametrize(
    ("sql", "status", "gone"),
    [
        ("UPDATE forms SET state = 'closed' WHERE xml_form_id = 'coop_diagnostic'", 200, b"coop_diagnostic"),
        ("UPDATE formlist_stamps SET stamp = stamp + 1", 200, None),
        ("UPDATE access_tokens SET revoked_at = now() WHERE id = :device", 403, None),
        ("UPDATE access_tokens SET expires_at = now() - interval '1 minute' WHERE id = :device", 403, None),
        ("DELETE FROM access_tokens WHERE id = :device", 401, None),
    ],
    ids=["form-closed", "stamp", "revoked", "expired", "deleted"],
)
def test_fl_notify_a_change_elsewhere_is_seen(live: Live, sql: str, status: int, gone: bytes | None) -> None:
    body = _warm(live)
    generation = get_store(live.app).change_generation()
    before = len(live.reads)
    _commit(live, sql, device=live.device_id)
    wait_for(_moved_from(live, generation), "the change was told")
    answer = live.client.get(live.url)
    assert answer.status_code == status
    assert len(live.reads) > before  # checked in the database again
    if gone is not None:
        assert gone in body and gone not in answer.data
        assert b"entrepreneur_followup" in answer.data


def _notifications(engine: Engine, schema: str, change: Callable[[psycopg.Connection[Any]], None]) -> list[str]:
    """Payloads naming ``schema`` caused by ``change`` (on its own connection), up to a marker sent after it.

    Other schemas' notifications (tests running in parallel on the same database) are left out.
    """
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    with psycopg.connect(*args, **kwargs, autocommit=True) as listening, psycopg.connect(*args, **kwargs) as other:
        listening.execute(f"LISTEN {CHANNEL}")
        change(other)
        other.rollback()
        marker = f"marker-{secrets.token_hex(8)}"  # a parallel test's marker must not end this one's wait
        with other.transaction():
            other.execute("SELECT pg_notify(%s, %s)", (CHANNEL, marker))
        payloads: list[str] = []
        for notify in listening.notifies(timeout=15):
            if notify.payload == marker:
                return payloads
            if notify.payload == schema:
                payloads.append(notify.payload)
    pytest.fail("the marker never came")


def test_fl_notify_triggers(live: Live) -> None:
    engine = get_store(live.app).engine
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()

    def committed(sql: str) -> Callable[[psycopg.Connection[Any]], None]:
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(sql, {"device": live.device_id})
                conn.execute(sql, {"device": live.device_id})  # twice in one transaction: told once

        return run

    last_used = "UPDATE access_tokens SET last_used_at = now() WHERE id = %(device)s"
    assert _notifications(engine, schema, committed(last_used)) == []
    renamed = "UPDATE access_tokens SET name = name || '!' WHERE id = %(device)s"
    assert _notifications(engine, schema, committed(renamed)) == [schema]
    assert _notifications(engine, schema, committed("UPDATE formlist_stamps SET stamp = stamp + 1")) == [schema]

    def rolled_back(conn: psycopg.Connection[Any]) -> None:
        conn.execute("UPDATE formlist_stamps SET stamp = stamp + 1")

    assert _notifications(engine, schema, rolled_back) == []


def test_fl_notify_ignores_another_schema(live: Live) -> None:
    _warm(live)
    generation = get_store(live.app).change_generation()
    before = len(live.reads)
    _commit(live, f"SELECT pg_notify('{CHANNEL}', 'another_deployment')")
    sent = time.monotonic()
    # A heartbeat begun after it: its answer came after the notification, which was handled before.
    wait_for(lambda: live.listener.last_heartbeat > sent, "a heartbeat after the notification")
    assert live.client.get(live.url).status_code == 200
    assert get_store(live.app).change_generation() == generation
    assert len(live.reads) == before


def test_fl_notify_lost_connection(live: Live) -> None:
    _warm(live)
    store = get_store(live.app)
    pid = live.listener.backend_pid
    assert pid is not None
    generation = store.change_generation()
    _commit(live, "SELECT pg_terminate_backend(:pid)", pid=pid)
    wait_for(lambda: store.change_generation() != generation, "the listener noticed")
    # Away (or just back): a change made now is seen, whether told or read.
    _commit(live, "UPDATE forms SET state = 'closed' WHERE xml_form_id = 'coop_diagnostic'")
    wait_for(lambda: store.change_generation() is not None, "the listener reconnected")
    before = len(live.reads)
    answer = live.client.get(live.url)
    assert answer.status_code == 200 and b"coop_diagnostic" not in answer.data
    assert len(live.reads) > before


def test_fl_notify_silent_listener_vouches_for_nothing(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(live)
    store = get_store(live.app)
    assert store.change_generation() is not None
    later = time.monotonic() + 60.0
    monkeypatch.setattr("server.db.change_listener.time.monotonic", lambda: later)
    assert store.change_generation() is None
    before = len(live.reads)
    assert live.client.get(live.url).status_code == 200
    assert len(live.reads) == before + 1


def test_fl_notify_dispose_ends_the_listener(live: Live) -> None:
    _connected(live)
    store = get_store(live.app)
    assert store.listener is not None
    thread = store.listener._thread
    assert thread is not None and thread.is_alive()
    store.engine.dispose()
    thread.join(timeout=15)
    assert not thread.is_alive()


def test_fl_notify_a_moved_session_ends_the_listener(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    _connected(live)
    listener = live.listener
    generation = get_store(live.app).change_generation()
    with caplog.at_level(logging.WARNING, logger="fieldsync.change_listener"):
        listener.backend_pid = -1  # as if the LISTEN had run on a backend a pooler has since given to others
        wait_for(_moved_from(live, generation), "the listener ended its connection and came back")
    assert any("another backend" in r.getMessage() for r in caplog.records)
    assert listener.backend_pid not in (None, -1)


def test_fl_notify_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with committed_forms_app("postgresql", tmp_path, {"FORMLIST_LISTEN": False}) as (app, _headers, project_id):
        publish_form(app, project_id, COOP_XLSX)
        _device, url, reads = _phone_and_reads(app, project_id, monkeypatch)
        store = get_store(app)
        assert store.listener is None and store.change_generation() is None
        client = app.test_client()
        for _ in range(5):
            assert client.get(url).status_code == 200
        assert len(reads) == 5  # every answer, the full app's first one included, reads the key and the stamp
