"""The webhook acceptance scenario (issue 20), shared by the test (1,000 events) and the bench (10,000).

A real HTTP receiver on loopback answers 200, 500, 429 or 503, drops the connection, answers too late
(a timeout) or slowly, and goes away for a moment (connection refused). Two ``fieldsync webhooks
dispatch`` processes run at once; one is killed with SIGKILL while a request of it is in flight (the
receiver has processed that message, so its redelivery is a true duplicate), the other is stopped
with SIGTERM and a third one started. Meanwhile writers commit events into several projects, one
subscription each, each event naming its writer and its sequence number.

``check`` then lists what went wrong (nothing, when every promise holds): every event delivered,
none dead or pending; every request verifies with ``standardwebhooks`` and a duplicate carries the
same ``webhook-id`` and event; per subscription, each writer's events arrived in commit order.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from bench.webhook_receiver import Received, Receiver

REPO = Path(__file__).resolve().parent.parent


class Chaos:
    """The receiver's random plan, and a hold on the next request of one dispatcher."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.hold_for: str | None = None

    def plan(self, headers: dict[str, str]) -> tuple[str, Any]:
        """Decide the answer to one request."""
        with self.lock:
            if self.hold_for and headers.get("x-fieldsync-dispatcher", "").startswith(self.hold_for):
                self.hold_for = None
                return ("hold", None)
            roll = self.rng.random()
        for limit, answer in (
            (0.08, ("status", 500)),
            (0.13, ("status", 429)),
            (0.16, ("status", 503)),
            (0.19, ("drop", None)),
            (0.195, ("sleep", 0.3)),  # past the dispatcher's timeout
            (0.235, ("sleep", 0.05)),  # slow, but in time
        ):
            if roll < limit:
                return answer
        return ("status", 200)


@dataclass
class ChaosRun:
    """What a run left: every request the receiver saw, the secrets, the events and the deliveries' statuses."""

    events: int
    requests: list[Received]
    secrets: dict[str, str]
    event_ids: set[int]
    statuses: dict[str, int]
    seconds: float
    steps: list[str] = field(default_factory=list)


def dispatcher_environment(database_url: str, var_dir: Path) -> dict[str, str]:
    """The environment of a dispatcher process in the scenario: loopback allowed, short timeouts and lease."""
    return {
        **os.environ,
        "FIELDSYNC_DATABASE_URL": database_url,
        "FIELDSYNC_VAR_DIR": str(var_dir),
        "FIELDSYNC_SECRET_KEY": "chaos",
        "FIELDSYNC_LOG_REQUESTS": "0",
        "FIELDSYNC_WEBHOOKS_ALLOW_PRIVATE": "1",
        "FIELDSYNC_WEBHOOKS_TIMEOUT": "0.2",
        "FIELDSYNC_WEBHOOKS_BACKOFF_BASE": "0.02",
        "FIELDSYNC_WEBHOOKS_BACKOFF_MAX": "0.2",
        "FIELDSYNC_WEBHOOKS_LEASE": "1.5",
        "FIELDSYNC_WEBHOOKS_POLL": "0.05",
    }


def start_dispatcher(name: str, env: dict[str, str], workers: int = 2) -> subprocess.Popen[str]:
    """Start ``fieldsync webhooks dispatch --name <name>`` in its own process."""
    args = [sys.executable, "-c", "from server.cli import main; main()", "webhooks", "dispatch", "--name", name]
    return subprocess.Popen(
        [*args, "--workers", str(workers)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_events(app: Any, project_ids: list[int], writer: int, count: int, seed: int) -> None:
    """Commit ``count`` events, 1 to 5 per transaction, each naming its writer and its sequence number."""
    from server.db.transaction import transaction
    from server.services.outbox import record_event
    from server.store import get_store

    rng = random.Random(seed)
    with app.app_context():
        session = get_store().sessions()
        written = 0
        while written < count:
            with transaction(session):
                for _ in range(min(rng.randint(1, 5), count - written)):
                    payload = {"writer": writer, "seq": written}
                    record_event(session, rng.choice(project_ids), "form.published", f"form:w{writer}", payload)
                    written += 1
        session.close()


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_chaos(database_url: str, var_dir: Path, events: int, *, projects: int = 4, writers: int = 2) -> ChaosRun:
    """Run the scenario against a migrated, empty-enough database; return what the receiver saw."""
    from sqlalchemy import func, select

    from server import create_app
    from server.db.models.webhooks import Event, WebhookDelivery
    from server.services import accounts
    from server.services import webhooks as hooks
    from server.store import get_store

    chaos = Chaos(20)
    receiver = Receiver(plan=chaos.plan).start()
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "VAR_DIR": str(var_dir),
            "SECRET_KEY": "chaos",
            "LOG_REQUESTS": False,
            "WEBHOOKS_ALLOW_PRIVATE": True,
        }
    )
    env = dispatcher_environment(database_url, var_dir)
    processes: list[subprocess.Popen[str]] = []
    steps: list[str] = []
    started = time.monotonic()
    with app.app_context():
        session = get_store().sessions()
        secrets: dict[str, str] = {}
        project_ids = []
        for n in range(projects):
            project = accounts.create_project(session, f"chaos {n} {os.getpid()} {time.time()}")
            fields = {"url": f"{receiver.url}/{project.id}", "events": ["form.published"]}
            view = hooks.create_subscription(session, project.id, fields, actor="chaos")
            assert view.secret is not None
            secrets[f"/hook/{project.id}"] = view.secret
            project_ids.append(project.id)
        # Checked on arrival: Standard Webhooks refuses a timestamp older than five minutes.
        receiver.verify = lambda path, headers, body: Webhook(secrets[path]).verify(body, headers)
        first_event = session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0
        session.close()

    def delivered() -> int:
        return len({r.headers["webhook-id"] for r in receiver.delivered()})

    try:
        processes += [start_dispatcher("A", env), start_dispatcher("B", env)]
        threads = [
            threading.Thread(
                target=write_events, args=(app, project_ids, w, events // writers + (w < events % writers), w)
            )
            for w in range(writers)
        ]
        for thread in threads:
            thread.start()
        _wait_for(lambda: delivered() >= events // 5, 600, "a fifth of the events")
        chaos.hold_for = "A/"
        _wait_for(receiver.held.is_set, 120, "a request of A to hold")
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(timeout=30)
        steps.append(f"{time.monotonic() - started:.1f} s: kill -9 of A mid-delivery after {delivered()} events")
        port = receiver.port
        receiver.stop()
        time.sleep(0.3)
        receiver.start(port)
        steps.append(f"{time.monotonic() - started:.1f} s: receiver away for 0.3 s (connections refused)")
        _wait_for(lambda: delivered() >= events // 2, 600, "half of the events")
        processes[1].send_signal(signal.SIGTERM)
        if processes[1].wait(timeout=60) != 0:
            raise RuntimeError(
                f"dispatcher B did not stop cleanly: {processes[1].stderr.read() if processes[1].stderr else ''}"
            )
        processes.append(start_dispatcher("C", env))
        steps.append(f"{time.monotonic() - started:.1f} s: B stopped (SIGTERM), C started after {delivered()} events")
        for thread in threads:
            thread.join()
        steps.append(f"{time.monotonic() - started:.1f} s: every event committed, {delivered()} delivered")
        _wait_for(lambda: delivered() >= events, 1200, "every event")
        steps.append(f"{time.monotonic() - started:.1f} s: every event delivered")
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        receiver.stop()
    seconds = time.monotonic() - started
    with app.app_context():
        session = get_store().sessions()
        event_ids = set(
            session.scalars(select(Event.id).where(Event.id > first_event, Event.project_id.in_(project_ids)))
        )
        statuses = dict(
            session.execute(
                select(WebhookDelivery.status, func.count())
                .where(WebhookDelivery.event_id.in_(select(Event.id).where(Event.project_id.in_(project_ids))))
                .group_by(WebhookDelivery.status)
            ).all()
        )
        session.close()
    app.extensions["fieldsync.store"].engine.dispose()
    return ChaosRun(events, list(receiver.requests), secrets, event_ids, statuses, seconds, steps)


def check(run: ChaosRun) -> tuple[list[str], dict[str, int]]:
    """What broke a promise (empty when none did), and counts: requests, duplicates, failures."""
    problems: list[str] = []
    delivered_ids = {
        r.headers["webhook-id"] for r in run.requests if r.answered is not None and 200 <= r.answered < 300
    }
    if len(run.event_ids) != run.events:
        problems.append(f"{len(run.event_ids)} events committed, {run.events} expected")
    lost = {f"msg_{i}" for i in run.event_ids} - delivered_ids
    if lost:
        problems.append(f"{len(lost)} events never delivered, e.g. {sorted(lost)[:3]}")
    if run.statuses != {"delivered": run.events}:
        problems.append(f"deliveries by status: {run.statuses}")
    first_seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    bodies: dict[str, bytes] = {}
    seen: set[str] = set()
    duplicates = failures = 0
    for request in run.requests:
        message = request.verified
        if not isinstance(message, dict):
            problems.append(f"a request did not verify: {message!r}")
            continue
        webhook_id = request.headers["webhook-id"]
        if webhook_id != f"msg_{message['event_id']}":
            problems.append(f"{webhook_id} carried event {message['event_id']}")
        if bodies.setdefault(webhook_id, request.body) != request.body:
            problems.append(f"{webhook_id} was sent with two different bodies")
        if request.answered is None or not 200 <= request.answered < 300:
            failures += 1
            continue
        if webhook_id in seen:
            duplicates += 1
            continue
        seen.add(webhook_id)
        first_seen[request.path].append((message["data"]["writer"], message["data"]["seq"]))
    for path, arrivals in first_seen.items():
        for writer in {w for w, _ in arrivals}:
            sequence = [seq for w, seq in arrivals if w == writer]
            if sequence != sorted(sequence):
                problems.append(f"{path}: writer {writer}'s events out of commit order")
    if duplicates < 1:
        problems.append("no duplicate: the message processed when A was killed was not sent again")
    return problems, {"requests": len(run.requests), "duplicates": duplicates, "failed_attempts": failures}
