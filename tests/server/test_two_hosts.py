"""Two web hosts, one database, one bucket (issue 21, "Two web hosts").

Two real ``fieldsync serve`` processes with folders of their own (no shared disk), on one PostgreSQL
database and one S3 endpoint (moto on loopback), and the stories run across them: whatever one host
takes in, the other serves.

Rules:
- H1 OpenRosa: formList on either host; a submission with its photo sent to A downloads from B; the
  identical resend to B is a duplicate, stored once.
- H2 sync: an entity pushed to A is pulled from B; B's cursor is good on A (one secret key).
- H3 tus: an upload begun on A is resumed and finished on B; A then knows the blob.
- H4 exports: B's CSV zip holds what A received; a scheduled export run by a scheduler with B's
  settings lands in the bucket.
- H6 webhooks: a subscription created on A, a submission through A (and its identical resend to B),
  a dispatcher with B's settings: the real receiver gets the event exactly once, signed (it verifies
  with ``standardwebhooks``), and a second dispatcher run sends nothing more; A's delivery log says
  delivered; the backlog gauge is back to zero.
- H5 /metrics on each host counts its own requests, summed over host A's two gunicorn workers (each
  request on a new connection, so either worker may take it); /healthz/ready is 200 on both.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from bench.webhook_receiver import Receiver
from tests.conftest import POSTGRES_URL, REPO, fresh_database_url
from tests.server.faulty_transport import batch_id_for, envelope
from tests.server.s3_fixtures import bucket_keys
from tests.server.sync_fixtures import LIST, PROPERTIES, entity_item
from tests.server.test_metrics import _value
from tests.server.test_submissions_support import COLLECT_HEADERS, photo_project_app, photo_submission

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres_only,
    pytest.mark.skipif(not POSTGRES_URL, reason="several web hosts share a PostgreSQL database"),
]

SERVE = "from server.cli import main; main()"
ADMIN = ("two-hosts-admin", "correct horse battery staple")


@dataclass
class Deployment:
    """Two hosts' base URLs and environments, the project, its device token and the admin's credential."""

    a: str
    b: str
    env_b: dict[str, str]
    project_id: int
    token: str


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _host_env(url: str, folder: Path, s3_config: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIELDSYNC_", "PROMETHEUS_"))}
    env.update(
        {
            "FIELDSYNC_DATABASE_URL": url,
            "FIELDSYNC_VAR_DIR": str(folder / "var"),
            "FIELDSYNC_STORAGE_DIR": str(folder / "storage"),
            "FIELDSYNC_EXPORT_DIR": str(folder / "exports"),
            "FIELDSYNC_SECRET_KEY": "two-hosts-secret",
            "FIELDSYNC_LOG_REQUESTS": "0",
            "FIELDSYNC_FORM_CONVERT_TIMEOUT": "60",
            "FIELDSYNC_WEBHOOKS_ALLOW_PRIVATE": "1",  # the receiver listens on loopback
        }
    )
    env.update({f"FIELDSYNC_{k}": str(v) for k, v in s3_config.items()})
    return env


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def _wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        try:
            if requests.get(f"{base}/healthz/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"fieldsync serve at {base} did not start: {_log_tail(log)}")


@pytest.fixture
def deployment(tmp_path: Path, s3_config: dict[str, Any]) -> Iterator[Deployment]:
    """A project with the photo form and an entity list, served by two hosts."""
    from forms.schema import EntityDeclaration
    from server.services import accounts
    from server.services.entities import declare_entity_lists
    from server.store import get_store

    url, cleanup = fresh_database_url("postgresql", tmp_path)
    app, project_id, token = photo_project_app(url, tmp_path / "setup", "two-hosts-secret")
    with app.app_context():
        session = get_store().sessions()
        accounts.create_user(session, ADMIN[0], ADMIN[1], is_admin=True)
        with session.begin():
            declare_entity_lists(
                session, project_id, [EntityDeclaration(list_name=LIST, properties={p: p for p in PROPERTIES})]
            )
        session.close()
        get_store().engine.dispose()
    servers: list[subprocess.Popen[bytes]] = []
    bases, envs, logs = [], [], []
    try:
        for host in ("host-a", "host-b"):
            env, port = _host_env(url, tmp_path / host, s3_config), _free_port()
            workers = "2" if host == "host-a" else "1"  # A's scrapes must sum both workers (multiprocess mode)
            command = [
                sys.executable,
                "-c",
                SERVE,
                "serve",
                "--port",
                str(port),
                "--workers",
                workers,
                "--threads",
                "2",
            ]
            # Its log goes to a file: an unread pipe, once full, would block the server's next log line (a
            # warning's traceback under load) and with it every thread that logs, its shutdown included.
            log = tmp_path / host / "serve.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("wb") as log_file:
                server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
            servers.append(server)
            logs.append(log)
            bases.append(f"http://127.0.0.1:{port}")
            envs.append(env)
        for base, server, log in zip(bases, servers, logs, strict=True):
            _wait_ready(base, server, log)
        yield Deployment(bases[0], bases[1], envs[1], project_id, token)
    finally:
        stuck = []
        for server, log in zip(servers, logs, strict=True):
            server.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                # gunicorn kills a worker still busy after its graceful timeout (30 s by default).
                server.wait(timeout=45)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                stuck.append(_log_tail(log))
        cleanup()
        assert not stuck, f"fieldsync serve did not stop within 45 s of SIGINT: {stuck}"


def _collect(base: str, d: Deployment) -> str:
    return f"{base}/v1/key/{d.token}/projects/{d.project_id}"


def _device(d: Deployment) -> dict[str, str]:
    return {"Authorization": f"Bearer {d.token}"}


def _post_submission(base: str, d: Deployment, xml: bytes, files: dict[str, bytes]) -> requests.Response:
    parts: dict[str, Any] = {"xml_submission_file": ("submission.xml", xml, "text/xml")}
    parts.update({name: (name, data, "image/jpeg") for name, data in files.items()})
    return requests.post(f"{_collect(base, d)}/submission?deviceID=collect:two", files=parts, headers=COLLECT_HEADERS)


def _fieldsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``fieldsync`` command with a host's settings; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", SERVE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_every_story_runs_across_two_hosts(deployment: Deployment, s3_config: dict[str, Any], tmp_path: Path) -> None:
    d = deployment
    admin = requests.auth.HTTPBasicAuth(*ADMIN)
    receiver = Receiver().start()
    hooks = f"/v1/projects/{d.project_id}/webhooks"
    subscription = requests.post(
        f"{d.a}{hooks}", json={"url": receiver.url, "events": ["submission.created"]}, auth=admin
    )
    assert subscription.status_code == 201, subscription.text
    receiver.verify = lambda _path, headers, body: Webhook(subscription.json()["secret"]).verify(body, headers)

    # H1 OpenRosa
    for base in (d.a, d.b):
        listing = requests.get(f"{_collect(base, d)}/formList?deviceID=collect:two", headers=COLLECT_HEADERS)
        assert listing.status_code == 200 and b"photo_visit" in listing.content
    photo = os.urandom(200_000)
    xml = photo_submission("uuid:two-hosts-1", ["p.jpg"])
    assert _post_submission(d.a, d, xml, {"p.jpg": photo}).status_code == 201
    assert _post_submission(d.b, d, xml, {"p.jpg": photo}).status_code == 201  # the identical resend
    api = f"/v1/projects/{d.project_id}/forms/photo_visit/submissions"
    listed = requests.get(f"{d.b}{api}", auth=admin).json()
    assert [s["instanceId"] for s in listed] == ["uuid:two-hosts-1"]
    download = requests.get(f"{d.b}{api}/uuid:two-hosts-1/attachments/p.jpg", auth=admin)
    assert download.status_code == 200 and download.content == photo

    # H2 sync
    item = entity_item("tab-1", 1, "e1", {"phone": "0600"}, label="Amina")
    batch = batch_id_for("tab-1", [item])
    pushed = requests.post(
        f"{d.a}/v1/projects/{d.project_id}/sync/push",
        data=envelope("tab-1", batch, [item]),
        headers={**_device(d), "Idempotency-Key": batch, "Content-Type": "application/json"},
    )
    assert pushed.status_code == 200 and pushed.json()["results"][0]["status"] == "created"
    pulled = requests.get(f"{d.b}/v1/projects/{d.project_id}/sync/pull?limit=500", headers=_device(d)).json()
    assert [c["collection"] for c in pulled["changes"]].count("entity") == 1
    again = requests.get(
        f"{d.a}/v1/projects/{d.project_id}/sync/pull", params={"cursor": pulled["nextCursor"]}, headers=_device(d)
    )
    assert again.status_code == 200, again.text

    # H3 tus
    data = os.urandom(150_000)
    sha = hashlib.sha256(data).hexdigest()
    project = base64.b64encode(str(d.project_id).encode()).decode()
    meta = f"sha256 {base64.b64encode(sha.encode()).decode()},project {project}"
    tus = {**_device(d), "Tus-Resumable": "1.0.0"}
    created = requests.post(
        f"{d.a}/v1/uploads", headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": meta}
    )
    assert created.status_code == 201, created.text
    path = created.headers["Location"]
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}
    assert (
        requests.patch(f"{d.a}{path}", data=data[:60_000], headers={**patch, "Upload-Offset": "0"}).status_code == 204
    )
    assert requests.head(f"{d.b}{path}", headers=tus).headers["Upload-Offset"] == "60000"
    assert (
        requests.patch(f"{d.b}{path}", data=data[60_000:], headers={**patch, "Upload-Offset": "60000"}).status_code
        == 204
    )
    missing = requests.post(
        f"{d.a}/v1/projects/{d.project_id}/blobs/missing", json={"sha256": [sha]}, headers=_device(d)
    )
    assert missing.json()["missing"] == []

    # H4 exports, now and scheduled
    export = requests.get(f"{d.b}/v1/projects/{d.project_id}/forms/photo_visit/export.zip", auth=admin)
    assert export.status_code == 200
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        assert "uuid:two-hosts-1" in zf.read("photo_visit.csv").decode()
    schedule = requests.post(
        f"{d.a}/v1/projects/{d.project_id}/forms/photo_visit/export-schedules",
        json={"cron": "0 * * * *", "folder": "hourly", "keep": 2},
        auth=admin,
    )
    assert schedule.status_code == 201, schedule.text
    run = _fieldsync(d.env_b, "scheduler", "--once", "--now", "2099-01-01T00:00:00Z")
    assert "\tdone\t" in run.stdout
    assert [k for k in bucket_keys(s3_config) if f"/exports/{d.project_id}/hourly/" in k]  # per project

    # H6 webhooks: A took the submission in, a dispatcher with B's settings delivers it, once
    for _ in range(2):
        _fieldsync(d.env_b, "webhooks", "dispatch", "--once")
    try:
        (hook,) = receiver.requests
    finally:
        receiver.stop()
    assert hook.answered == 200 and not isinstance(hook.verified, Exception), hook.verified
    assert hook.verified["type"] == "submission.created"
    assert "uuid:two-hosts-1" in hook.body.decode()
    log = requests.get(f"{d.a}{hooks}/{subscription.json()['id']}", auth=admin).json()
    assert log["deliveries"] == {"pending": 0, "delivered": 1, "dead": 0}
    backlog = requests.get(f"{d.b}/metrics", auth=admin).text
    assert _value(backlog, "fieldsync_webhook_backlog", stage="delivery") == 0
    assert _value(backlog, "fieldsync_webhook_backlog", stage="fan_out") == 0

    # H5 metrics and readiness on each host
    for _ in range(20):
        with requests.Session() as fresh:  # a new connection each time: any worker may take it
            assert fresh.get(f"{d.a}/healthz/live").status_code == 200
    scraped_a = requests.get(f"{d.a}/metrics", auth=admin).text
    assert _value(scraped_a, "fieldsync_http_request_duration_seconds_count", route="/healthz/live") == 20
    assert len(list((tmp_path / "host-a" / "var" / "metrics").glob("*.db"))) >= 2  # files of two workers
    for base in (d.a, d.b):
        assert requests.get(f"{base}/healthz/ready").status_code == 200
        scraped = requests.get(f"{base}/metrics", auth=admin)
        assert scraped.status_code == 200
        assert 'route="/v1/key/<token>/projects/<int:project_id>/submission"' in scraped.text
        assert d.token not in scraped.text
    # Nothing of it stayed on a host's disk but short-lived staging (emptied) and metrics files.
    for host in ("host-a", "host-b"):
        kept = [p for p in (tmp_path / host / "storage").rglob("*") if p.is_file()]
        assert kept == []
