"""Real server processes under concurrent clients (SYNC.md invariants 6 and 9).

I6 (PostgreSQL only): 4 gunicorn workers on a fresh committed database, 16 concurrent clients pushing
overlapping batches (the same items in several batches, the same batch from several clients): no 5xx,
no duplicate op, every item acknowledged, and the entities equal the pure merge of the set of ops.
I9 (both stores): writers push while a puller pages through ``sync/pull`` with random page sizes and
repeated cursors; once the writers stop, the puller's replica equals the server's entities.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSTGRES_URL, fresh_database_url
from tests.server.faulty_transport import batch_id_for, envelope
from tests.server.sync_fixtures import LIST, PROPERTIES, entity_item

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LiveServer:
    """A gunicorn-served app on a fresh database, with an admin token and a project."""

    port: int
    token: str
    project_id: int
    url: str

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(
                method, path, body=body, headers={"Authorization": f"Bearer {self.token}", **(headers or {})}
            )
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def push(self, device: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Push until acknowledged (409 in progress: retry); fail on anything else than 200."""
        batch = batch_id_for(device, items)
        body = gzip.compress(envelope(device, batch, items))
        for _ in range(400):
            status, _, raw = self.request(
                "POST",
                f"/v1/projects/{self.project_id}/sync/push",
                body,
                {"Content-Encoding": "gzip", "Content-Type": "application/json", "Idempotency-Key": batch},
            )
            assert status < 500, raw[:300]
            if status == 409:
                time.sleep(0.02)  # a retry loop, not a timing assertion
                continue
            assert status == 200, raw[:300]
            parsed: dict[str, Any] = json.loads(raw)
            return parsed
        raise AssertionError("batch never finished")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(url: str) -> tuple[str, int]:
    from forms.schema import EntityDeclaration
    from server.db.engine import make_engine, make_sessionmaker
    from server.db.models import User
    from server.services import accounts
    from server.services.entities import declare_entity_lists

    engine = make_engine(url)
    session = make_sessionmaker(engine)()
    user = accounts.create_user(session, "live-admin", "correct horse battery", is_admin=True)
    project = accounts.create_project(session, "live")
    with session.begin():
        declare_entity_lists(session, project.id, [EntityDeclaration(LIST, properties={p: p for p in PROPERTIES})])
    db_user = session.get(User, user.id)
    assert db_user is not None
    token = accounts.create_session_token(session, db_user).token
    session.close()
    engine.dispose()
    return token, project.id


@pytest.fixture(params=["sqlite", "postgresql"])
def live_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """Four gunicorn workers serving a fresh, committed database."""
    name: str = request.param
    if name == "postgresql" and not POSTGRES_URL:
        pytest.skip(reason="FIELDSYNC_TEST_POSTGRES_URL is not set")
    url, cleanup = fresh_database_url(name, tmp_path)
    token, project_id = _prepare(url)
    port = _free_port()
    env = {
        **os.environ,
        "FIELDSYNC_DATABASE_URL": url,
        "FIELDSYNC_VAR_DIR": str(tmp_path / "var"),
        "FIELDSYNC_STORAGE_DIR": str(tmp_path / "storage"),
        "FIELDSYNC_SECRET_KEY": "live-secret",
        "FIELDSYNC_LOG_REQUESTS": "0",
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [
            str(gunicorn),
            "-w",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
            "--graceful-timeout",
            "1",
            "--preload",
            "server:create_app()",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = LiveServer(port, token, project_id, url)
    try:
        for _ in range(300):
            try:
                if server.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("gunicorn did not start")
        yield server
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        process.wait(timeout=30)
        cleanup()


def _ops(rng: random.Random, devices: int, per_device: int) -> dict[str, list[dict[str, Any]]]:
    ops: dict[str, list[dict[str, Any]]] = {}
    for d in range(devices):
        device = f"dev{d}"
        ops[device] = [
            entity_item(
                device, s, f"e{rng.randrange(4)}", {rng.choice(PROPERTIES): rng.choice("abc")}, hlc=rng.randrange(9)
            )
            for s in range(1, per_device + 1)
        ]
    return ops


def _server_entities(server: LiveServer) -> dict[str, dict[str, Any]]:
    status, _, raw = server.request("GET", f"/v1/projects/{server.project_id}/entities/{LIST}?limit=1000")
    assert status == 200
    return {e["id"]: e for e in json.loads(raw)["entities"]}


@pytest.mark.parametrize("live_server", ["postgresql"], indirect=True)
def test_concurrent_processes_store_each_item_once_without_5xx(live_server: LiveServer) -> None:
    """On PostgreSQL only: several writer processes is its deployment (SQLite has one writer)."""
    from sync.entities import EMPTY_CONTEXT, Dot, EntityOp, merge_entity_updates

    rng = random.Random(6)
    ops = _ops(rng, devices=4, per_device=12)
    errors: list[BaseException] = []
    acknowledged: set[str] = set()
    lock = threading.Lock()

    def client(seed: int) -> None:
        local = random.Random(seed)
        try:
            for _ in range(3):
                device = local.choice(sorted(ops))
                # Overlapping batches: a random window of the device's outbox (shared by other clients).
                start = local.randrange(0, 8)
                items = ops[device][start : start + local.randint(2, 6)]
                response = live_server.push(device, items)
                statuses = [r["status"] for r in response["results"]]
                assert all(s in ("created", "updated", "duplicate", "conflict") for s in statuses), statuses
                with lock:
                    acknowledged.update(r["id"] for r in response["results"])
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    for device, items in ops.items():  # then every device sends its whole outbox once more
        assert {r["status"] for r in live_server.push(device, items)["results"]} <= {
            "duplicate",
            "created",
            "updated",
            "conflict",
        }

    from sqlalchemy import func, select

    from server.db.engine import make_engine
    from server.db.models.sync import EntityOpRow

    engine = make_engine(live_server.url)
    with engine.connect() as connection:
        count, distinct = connection.execute(select(func.count(), func.count(EntityOpRow.op_id.distinct()))).one()
    engine.dispose()
    all_items = [item for items in ops.values() for item in items]
    assert count == distinct == len(all_items)
    entities = _server_entities(live_server)
    for entity_id in {item["entity"]["id"] for item in all_items}:
        expected = merge_entity_updates(
            EntityOp(i["opId"], Dot(i["dot"]["w"], i["dot"]["s"]), EMPTY_CONTEXT, i["fields"], i["hlc"], i["opId"])
            for i in all_items
            if i["entity"]["id"] == entity_id
        )
        assert (entities[entity_id]["properties"], entities[entity_id]["rev"]) == (
            dict(expected.properties),
            expected.rev,
        )


def test_pull_pages_with_repeated_cursors_end_with_the_server_state(live_server: LiveServer) -> None:
    rng = random.Random(9)
    ops = _ops(rng, devices=3, per_device=10)
    done = threading.Event()
    errors: list[BaseException] = []

    def writer(device: str) -> None:
        try:
            items = ops[device]
            for start in range(0, len(items), 3):
                live_server.push(device, items[start : start + 3])
        except BaseException as exc:
            errors.append(exc)

    replica: dict[str, dict[str, Any]] = {}
    last_seq = 0

    def pull(cursor: str | None, limit: int) -> dict[str, Any]:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, _, raw = live_server.request("GET", f"/v1/projects/{live_server.project_id}/sync/pull{query}")
        assert status == 200, raw[:300]
        page: dict[str, Any] = json.loads(raw)
        assert page["protocol"] == "fieldsync/2"
        return page

    def apply(page: dict[str, Any]) -> None:
        nonlocal last_seq
        for change in page["changes"]:
            assert change["seq"] > last_seq or change["seq"] <= last_seq  # repeated pages re-apply
            if change["collection"] == "entity":
                replica[change["data"]["id"]] = change["data"]
            last_seq = max(last_seq, change["seq"])

    writers = [threading.Thread(target=writer, args=(device,)) for device in ops]
    for thread in writers:
        thread.start()
    cursor: str | None = None
    previous: tuple[str | None, dict[str, Any]] | None = None
    while True:
        page = pull(cursor, rng.randint(1, 7))
        seqs = [c["seq"] for c in page["changes"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        if previous is not None and rng.random() < 0.3:
            again = pull(previous[0], 500)  # a repeated cursor: never skips what the first answer had
            assert {c["seq"] for c in previous[1]["changes"]} <= {c["seq"] for c in again["changes"]}
        apply(page)
        previous = (cursor, page)
        cursor = page["nextCursor"]
        if done.is_set() and not page["hasMore"] and not page["changes"]:
            break
        if not any(t.is_alive() for t in writers):
            done.set()
    assert not errors, errors[0]
    assert replica == _server_entities(live_server)
