"""Concurrent writers on PostgreSQL (SYNC.md invariant 6): racing identical POSTs store one submission, no 5xx.

Rule K1: a real gunicorn server with several worker processes on a fresh committed database; 8 client
processes POST overlapping sets of 500 instances (each instance sent by 2 or 3 of them, all in the same
order so the copies race) → exactly 500 submissions and 500 versions, every answer 201.
Rule K2: the three versions of an edit chain arriving at once from three writers link into one
submission whose current version is the newest (the per-chain advisory lock), with no deadlock.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from tests.conftest import POSTGRES_URL, REPO, fresh_database_url
from tests.server.test_submissions_support import COLLECT_HEADERS, photo_submission

INSTANCES = 200
CLIENTS = 8
WORKERS = 4


def _senders(k: int) -> set[int]:
    senders = {k % CLIENTS, (k + 3) % CLIENTS}
    if k % 3 == 0:
        senders.add((k + 5) % CLIENTS)
    return senders


def _client(args: tuple[str, int]) -> Counter[int]:
    url, me = args
    statuses: Counter[int] = Counter()
    with requests.Session() as http:
        for k in range(INSTANCES):
            if me not in _senders(k):
                continue
            xml = photo_submission(f"uuid:race-{k:04d}", [], site=f"site {k} " + "x" * 1500)
            try:
                response = http.post(
                    url, files={"xml_submission_file": ("s.xml", xml, "text/xml")}, headers=COLLECT_HEADERS, timeout=30
                )
                statuses[response.status_code] += 1
            except requests.RequestException:
                statuses[-1] += 1
    return statuses


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prepare(url: str, tmp_path: Path) -> tuple[int, str]:
    from server.store import get_store
    from tests.server.test_submissions_support import photo_project_app

    app, project_id, token = photo_project_app(url, tmp_path, "race-secret")
    with app.app_context():
        get_store().engine.dispose()
    return project_id, token


@pytest.mark.skipif(not POSTGRES_URL, reason="concurrent writers need PostgreSQL (SQLite has a single writer)")
def test_racing_identical_posts_store_each_instance_once(tmp_path: Path) -> None:
    url, cleanup = fresh_database_url("postgresql", tmp_path)
    server: subprocess.Popen[bytes] | None = None
    try:
        project_id, token = _prepare(url, tmp_path)
        port = _free_port()
        env = {
            **os.environ,
            "FIELDSYNC_DATABASE_URL": url,
            "FIELDSYNC_VAR_DIR": str(tmp_path / "var"),
            "FIELDSYNC_STORAGE_DIR": str(tmp_path / "storage"),
            "FIELDSYNC_SECRET_KEY": "race-secret",
            "FIELDSYNC_LOG_REQUESTS": "0",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "server.wsgi:app"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start")
        submit = f"{base}/v1/key/{token}/projects/{project_id}/submission"
        with multiprocessing.get_context("fork").Pool(CLIENTS) as pool:
            results = pool.map(_client, [(submit, me) for me in range(CLIENTS)])
        statuses: Counter[int] = sum(results, Counter())
        expected_requests = sum(len(_senders(k)) for k in range(INSTANCES))
        assert statuses == Counter({201: expected_requests})

        from server.db.engine import make_engine
        from server.db.models.submissions import Submission, SubmissionVersion

        engine = make_engine(url, pool_size=1, max_overflow=0)
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Submission)) == INSTANCES
            assert conn.scalar(select(func.count()).select_from(SubmissionVersion)) == INSTANCES
        engine.dispose()
    finally:
        if server is not None:
            server.terminate()
            try:
                # gunicorn stops gracefully; on a loaded machine its four workers can take a while.
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        cleanup()


@pytest.mark.skipif(not POSTGRES_URL, reason="concurrent writers need PostgreSQL (SQLite has a single writer)")
def test_racing_versions_of_one_chain_link_up(tmp_path: Path) -> None:
    import random
    import threading

    from server import create_app
    from server.db.models.submissions import Submission, SubmissionVersion
    from server.store import get_store

    chains = 40
    url, cleanup = fresh_database_url("postgresql", tmp_path)
    try:
        project_id, token = _prepare(url, tmp_path)
        app = create_app(
            {
                "DATABASE_URL": url,
                "VAR_DIR": str(tmp_path / "var"),
                "STORAGE_DIR": str(tmp_path / "storage"),
                "SECRET_KEY": "race-secret",
                "LOG_REQUESTS": False,
            }
        )
        submit = f"/v1/key/{token}/projects/{project_id}/submission"
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def writer(version: int) -> None:
            client = app.test_client()
            order = list(range(chains))
            random.Random(version).shuffle(order)
            for chain in order:
                deprecated = f"uuid:k{chain}-v{version - 1}" if version > 1 else None
                xml = photo_submission(f"uuid:k{chain}-v{version}", [], site=f"v{version}", deprecated_id=deprecated)
                response = client.post(
                    submit,
                    data={"xml_submission_file": (io.BytesIO(xml), "s.xml", "text/xml")},
                    content_type="multipart/form-data",
                    headers=COLLECT_HEADERS,
                )
                with lock:
                    statuses[response.status_code] += 1

        threads = [threading.Thread(target=writer, args=(v,)) for v in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == Counter({201: 3 * chains})
        with app.app_context():
            session = get_store().sessions()
            try:
                rows = session.execute(
                    select(Submission.instance_id, Submission.current_instance_id, Submission.edits)
                ).all()
                assert sorted(tuple(r) for r in rows) == sorted(
                    (f"uuid:k{c}-v1", f"uuid:k{c}-v3", 2) for c in range(chains)
                )
                assert session.scalar(select(func.count()).select_from(SubmissionVersion)) == 3 * chains
            finally:
                # An open session would make DROP SCHEMA in cleanup() wait forever on its locks.
                session.close()
                get_store().engine.dispose()
    finally:
        cleanup()
