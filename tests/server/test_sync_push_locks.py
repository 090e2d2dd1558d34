"""Push batches and their locks on PostgreSQL (issue 15 rows 7 and 10).

Rules:
- PL1 Pushes of the same ids in shuffled orders, from several clients at once, never deadlock: 0 deadlocks
  (none retried), 0 x 5xx, every chain stored once with all its versions (a bounded run).
- PL2 A batch whose worker died mid-way is taken over by the next resend at once (its claim dies with the
  worker's connection), not 409 for minutes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from tests.conftest import POSTGRES_URL, fresh_database_url
from tests.server.test_submissions_support import photo_project_app, photo_submission

ONLY_POSTGRES = pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL only (SQLite has one writer)")
STORES = ["sqlite", pytest.param("postgresql", marks=ONLY_POSTGRES)]

CHAINS = 12
PUSHERS = 8
ROUNDS = 3


def _push(client: FlaskClient, token: str, project_id: int, items: list[dict[str, object]], device: str) -> int:
    batch_id = hashlib.sha256(json.dumps([device, items], sort_keys=True).encode()).hexdigest()[:32]
    body = {"protocol": "fieldsync/2", "deviceId": device, "batchId": batch_id, "items": items}
    response = client.post(
        f"/v1/projects/{project_id}/sync/push",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": batch_id},
    )
    return response.status_code


def _items(prefix: str, version: int = 1) -> list[dict[str, object]]:
    """One item per chain: its version ``version`` (an edit of the version before, from 2 on)."""
    items: list[dict[str, object]] = []
    for chain in range(CHAINS):
        instance_id = f"uuid:{prefix}-{chain}-v{version}"
        deprecated = f"uuid:{prefix}-{chain}-v{version - 1}" if version > 1 else None
        xml = photo_submission(instance_id, [], site=f"site {chain} v{version}", deprecated_id=deprecated)
        item = {"type": "submission", "instanceId": instance_id, "formId": "photo_visit", "formVersion": "1"}
        items.append({**item, "data": xml.decode(), **({"deprecatedId": deprecated} if deprecated else {})})
    return items


@ONLY_POSTGRES
def test_shuffled_concurrent_pushes_never_deadlock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url, cleanup = fresh_database_url("postgresql", tmp_path)
    app, project_id, token = photo_project_app(url, tmp_path, "k")
    try:
        assert _push(app.test_client(), token, project_id, _items("shuffle"), "first") == 200
        # Every pusher sends the edits of every chain (locked one by one), each in its own order.
        edits = _items("shuffle", 2) + _items("shuffle", 3)

        def pusher(index: int) -> list[int]:
            rng = random.Random(index)
            client = app.test_client()
            statuses = []
            for round_ in range(ROUNDS):
                shuffled = list(edits)
                rng.shuffle(shuffled)
                statuses.append(_push(client, token, project_id, shuffled, f"pusher-{index}-{round_}"))
            return statuses

        with caplog.at_level(logging.WARNING, logger="fieldsync.sync"), ThreadPoolExecutor(PUSHERS) as pool:
            statuses = [status for result in pool.map(pusher, range(PUSHERS)) for status in result]
        retried = [r for r in caplog.records if "lock or serialisation failure" in r.getMessage()]
        assert Counter(statuses) == Counter({200: PUSHERS * ROUNDS})
        assert retried == []
        engine = app.extensions["fieldsync.store"].engine
        with engine.connect() as connection:
            stored = Counter(connection.execute(text("SELECT instance_id FROM submission_versions")).scalars())
            chains = connection.execute(text("SELECT count(*) FROM submissions")).scalar_one()
        assert stored == Counter({str(i["instanceId"]): 1 for i in _items("shuffle") + edits})
        assert chains == CHAINS
    finally:
        app.extensions["fieldsync.store"].engine.dispose()
        cleanup()


# A worker that dies in the middle of a batch: the real push code in a process killed at a known point.
_WORKER = """
import sys, time
from pathlib import Path
from server import create_app
from server.services import sync_push

url, marker, body, token, project = sys.argv[1:6]
real = sync_push._process_submissions_bulk

def stuck(*args, **kwargs):
    Path(marker).write_text("claimed")  # the batch is claimed and being processed: now kill me
    time.sleep(120)
    return real(*args, **kwargs)

sync_push._process_submissions_bulk = stuck
app = create_app({"DATABASE_URL": url, "SECRET_KEY": "k", "LOG_REQUESTS": False, "VAR_DIR": str(Path(marker).parent)})
app.test_client().post(
    f"/v1/projects/{project}/sync/push", data=Path(body).read_bytes(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": "killed"},
)
"""


@pytest.mark.parametrize("store", STORES)
def test_a_killed_workers_batch_is_taken_over_by_the_next_resend(store: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    url, cleanup = fresh_database_url(store, tmp_path)
    app, project_id, token = photo_project_app(url, tmp_path, "k")
    items = [_items("killed")[0], _items("killed", 2)[0]]
    body = json.dumps({"protocol": "fieldsync/2", "deviceId": "d", "batchId": "killed", "items": items}).encode()
    (tmp_path / "body.json").write_bytes(body)
    marker = tmp_path / "claimed"
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, url, str(marker), str(tmp_path / "body.json"), token, str(project_id)],
        cwd=REPO,
    )
    try:
        for _ in range(600):  # a bound, not a measure: the worker needs to start and claim the batch
            if marker.exists() or worker.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), "the worker never claimed the batch"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        resend = app.test_client().post(
            f"/v1/projects/{project_id}/sync/push",
            data=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": "killed",
            },
        )
        assert resend.status_code == 200, resend.get_data(as_text=True)
        assert [r["status"] for r in resend.get_json()["results"]] == ["created", "updated"]
    finally:
        if worker.poll() is None:
            worker.kill()
        app.extensions["fieldsync.store"].engine.dispose()
        cleanup()
