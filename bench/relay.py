"""Office relay (issue 22): an office's phones send on the LAN, ``fieldsync relay`` carries their work up a
faulty link to the bench server; compared with the same phones pushing straight up the same link.

An office server (``fieldsync serve`` on SQLite, in a temporary folder) gets the bench server's photo
form through its relay; then its phones send ``RELAY_SUBMISSIONS`` submissions with two incompressible
photos each, and the relay (``--interval 0.2``) pushes them to the bench server through the loopback
proxy of ``tests/server/faulty_link.py`` (every connection reset after ``CUT_EVERY`` bytes up). The
reference is the same amount of work pushed straight to the bench server by Fieldsync's own client
through an identical link, in the same run: submissions per second from the first send until the
last one is stored nationally, and the bytes that went up the link per byte of payload (XML and photos).
One round of each; the relay is running (its rounds idle) before the phones' first send starts its clock.
Run it with ``python -m bench relay``.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import requests

from bench.harness import Context, EndpointMissing
from bench.results import BenchmarkResult, Figure, Reference, Target
from bench.server_process import REPO, fieldsync_cli, free_port
from bench.stats import spread

NAME = "relay"
TITLE = "Office relay over a faulty link"
SUBMISSIONS = 20
PHOTO_BYTES = 60_000
CUT_EVERY = 150_000
WAIT = 600.0  # a bound for a hung run, not a figure
TARGET = Target("≤ 1.2 × the payload up the link (issue 22)", 1.2, "at_most")

sys.path.insert(0, str(REPO))

from tests.server.faulty_link import FaultyLink, LinkFaults  # noqa: E402
from tests.server.field_phones import CollectPhone, FieldsyncPhone  # noqa: E402
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission  # noqa: E402

Week = list[tuple[str, bytes, list[tuple[str, bytes]]]]


def _week(seed: str) -> Week:
    rng = random.Random(seed)
    week: Week = []
    for index in range(SUBMISSIONS):
        photos = [(f"{seed}-{index}-{side}.jpg", rng.randbytes(PHOTO_BYTES)) for side in ("front", "back")]
        instance_id = f"uuid:{uuid.UUID(int=rng.getrandbits(128))}"
        week.append((instance_id, photo_submission(instance_id, [n for n, _ in photos]), photos))
    return week


def _payload(week: Week) -> int:
    return sum(len(xml) + sum(len(c) for _, c in files) for _, xml, files in week)


def _stored(database_url: str, week: Week) -> int:
    """How many of the week's submissions the bench server stored with every photo."""
    ids = [instance_id for instance_id, _, _ in week]
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM submission_versions v WHERE v.instance_id = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM submission_attachments a WHERE a.version_id = v.id AND a.blob_sha256 IS NULL)",
            (ids,),
        ).fetchone()
    return int(row[0]) if row else 0


def _wait(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _office_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "FIELDSYNC_DATABASE_URL": f"sqlite:///{root / 'office.sqlite3'}",
            "FIELDSYNC_VAR_DIR": str(root / "var"),
            "FIELDSYNC_STORAGE_DIR": str(root / "storage"),
            "FIELDSYNC_SECRET_KEY": "bench-office-secret",
            "FIELDSYNC_LOG_REQUESTS": "0",
        }
    )
    return env


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _token(output: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("token: "))


def run(context: Context) -> BenchmarkResult:
    """Relay a week of photo submissions up a faulty link, and push the same amount straight up it."""
    if not context.has_route(r"/sync/push$", "POST") or not context.has_route(r"/uploads$", "POST"):
        raise EndpointMissing("the sync push or tus upload route is not registered yet")
    published = context.upload_form(PHOTO_XFORM, "photo_visit.xml")
    if published.status_code not in (200, 201, 409):
        raise RuntimeError(f"publishing the photo form answered {published.status_code}: {published.text[:300]}")
    server_env = context.server.env
    pid = context.project_id
    relay_token = _token(
        fieldsync_cli(server_env, "relays", "issue", "--name", f"bench-{uuid.uuid4().hex[:8]}", "--project", str(pid))
    )
    national = ("127.0.0.1", context.server.port)
    relayed, direct = _week("relay-office"), _week("relay-direct")
    faults = LinkFaults(cut_every=CUT_EVERY, cut_mode="reset")

    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-office-") as tmp:
        root = Path(tmp)
        env = _office_env(root)
        fieldsync_cli(env, "init-db")
        office_pid = int(fieldsync_cli(env, "projects", "create", "Bureau de Safi").strip().splitlines()[-1])
        phone_token = _token(fieldsync_cli(env, "devices", "create", "--project", str(office_pid), "--name", "coach"))
        port = free_port()
        cli = [sys.executable, "-c", "from server.cli import main; main()"]
        log = (root / "office.log").open("wb")
        serve = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, cwd=REPO, stdout=log, stderr=log)
        relay: subprocess.Popen[bytes] | None = None
        try:
            with FaultyLink(national, faults) as link:
                _wait(lambda: _healthy(port), "the office server")
                relay_args = ["--upstream", link.base_url, "--token", relay_token, "--project", f"{office_pid}={pid}"]
                relay = subprocess.Popen(
                    [*cli, "relay", *relay_args, "--interval", "0.2", "--timeout", "5"],
                    env=env,
                    cwd=REPO,
                    stdout=log,
                    stderr=log,
                )
                prefix = f"/v1/key/{phone_token}/projects/{office_pid}"
                form_list = f"http://127.0.0.1:{port}{prefix}/formList"
                _wait(
                    lambda: b"photo_visit" in requests.get(form_list, headers={"X-OpenRosa-Version": "1.0"}).content,
                    "the form mirrored to the office",
                )
                bytes_before = link.bytes_up
                started = time.monotonic()
                for _, xml, files in relayed:
                    CollectPhone("127.0.0.1", port, prefix=prefix).send(xml, files)
                _wait(lambda: _stored(context.database.url, relayed) == SUBMISSIONS, "the relayed week stored")
                relay_seconds = time.monotonic() - started
                relay_bytes, relay_cuts = link.bytes_up - bytes_before, link.cuts
        finally:
            for process in (relay, serve):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
            log.close()

    with FaultyLink(national, faults) as link:
        phone = FieldsyncPhone(*link.address, token=context.accounts.device_token, project_id=pid, batch_size=5)
        started = time.monotonic()
        phone.sync(direct)
        _wait(lambda: _stored(context.database.url, direct) == SUBMISSIONS, "the direct week stored")
        direct_seconds = time.monotonic() - started
        direct_bytes, direct_cuts = link.bytes_up, link.cuts

    payload = _payload(relayed)
    result = BenchmarkResult(NAME, TITLE)
    direct_rate = SUBMISSIONS / direct_seconds
    result.figures.append(
        Figure(
            "relayed submissions/s (LAN send + relay + faulty link)",
            "submissions/s",
            spread([SUBMISSIONS / relay_seconds]),
            reference=Reference("Fieldsync's client pushing straight up the same link", direct_rate, "submissions/s"),
        )
    )
    result.figures.append(
        Figure(
            "relay: bytes up the link / payload",
            "×",
            spread([relay_bytes / payload]),
            reference=Reference("direct push: bytes up / payload", direct_bytes / _payload(direct), "×"),
            target=TARGET,
        )
    )
    result.data.update(
        {
            "submissions": SUBMISSIONS,
            "photo_bytes": PHOTO_BYTES,
            "payload_bytes": payload,
            "relay": {"seconds": round(relay_seconds, 2), "bytes_up": relay_bytes, "cuts": relay_cuts},
            "direct": {"seconds": round(direct_seconds, 2), "bytes_up": direct_bytes, "cuts": direct_cuts},
            "payload_sha256": hashlib.sha256(b"".join(x for _, x, _ in relayed)).hexdigest()[:16],
        }
    )
    result.notes.append(
        f"{SUBMISSIONS} submissions × 2 photos of {PHOTO_BYTES:,} random bytes each way; every connection up the "
        f"link is reset after {CUT_EVERY:,} bytes (relay: {relay_cuts} cuts, direct: {direct_cuts}). One round of "
        "each; the relay's time starts at the phones' first send to the office and includes the relay's rounds "
        "(interval 0.2 s), its tus resumes and batch resends; the direct time is Fieldsync's client pushing "
        "straight to the server. The bytes up include the relay's own calls (form list, pull feed)."
    )
    return result
