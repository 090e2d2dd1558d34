"""Office relays (issue 22): a national server and two office relays, three real processes on loopback.

Rules checked here:
- R1 the phones of two offices send through the real OpenRosa endpoint of their office; each office's
  ``fieldsync relay`` pushes what they sent to the national server through a faulty link (cuts, then
  blocked for a while: every connection goes silent) and mirrors the national form down;
- R2 a relay killed with ``kill -9`` during a push (at progress points, then at seeded random points) and
  restarted loses nothing and sends nothing twice;
- R3 the national store then equals, canonically, the store of a run where the same phones uploaded
  directly with Fieldsync's protocol; each submission says which relay carried it and which phone
  (device id, submitter) sent it;
- R4 the bytes that went up the link are at most 1.2x the payload (the XML and photos);
- R5 a relay may push only into the projects it was issued for (403 elsewhere); a revoked one is 401.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from tests.conftest import POSTGRES_URL, REPO, fresh_database_url
from tests.server.faulty_link import FaultyLink, LinkFaults
from tests.server.faulty_transport import canonical_dump
from tests.server.field_phones import CollectPhone, FieldsyncPhone
from tests.server.fixtures_forms import ENTREPRENEUR_XLSX
from tests.server.live_server import SECRET, LiveServer, free_port, live_server
from tests.server.test_submissions_support import EXAMPLE_SUBMISSIONS, PHOTO_XFORM, photo_submission

STORES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL"))]
PER_OFFICE = 6  # submissions per office
PHOTO_BYTES = 30_000
CUT_EVERY = 60_000
RANDOM_KILLS = 3  # seeded random kill -9 points after the two at progress points
WAIT = 90.0  # seconds a test may wait for the relays (a bound for a hung run, never a measured figure)


def _cli(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-c", "from server.cli import main; main()", *args]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _env(url: str, root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "FIELDSYNC_DATABASE_URL": url,
            "FIELDSYNC_VAR_DIR": str(root / "var"),
            "FIELDSYNC_STORAGE_DIR": str(root / "storage"),
            "FIELDSYNC_SECRET_KEY": SECRET,
            "FIELDSYNC_LOG_REQUESTS": "0",
            "FIELDSYNC_METRICS_PUBLIC": "1",
        }
    )
    return env


def _token(output: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("token: "))


@dataclass
class Office:
    """An office server (``fieldsync serve`` on SQLite) with its phones and, once started, its relay."""

    name: str
    root: Path
    url: str
    port: int
    project_id: int
    phone_tokens: list[str]
    serve: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return _env(self.url, self.root)

    def start_relay(self, upstream: str, token: str, remote: int) -> None:
        command = [sys.executable, "-c", "from server.cli import main; main()", "relay", "--upstream", upstream]
        command += ["--token", token, "--project", f"{self.project_id}={remote}"]
        command += ["--interval", "0.5", "--timeout", "3", "--chunk-kib", "16"]
        log = (self.root / "relay.log").open("ab")
        self.relay = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def kill_relay(self) -> None:
        assert self.relay is not None
        os.kill(self.relay.pid, signal.SIGKILL)
        self.relay.wait()

    def stop(self) -> None:
        for process in (self.relay, self.serve):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def read(self, sql: str) -> Any:
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql), {"p": self.project_id}).scalar_one()
        finally:
            engine.dispose()

    def log_tail(self) -> str:
        path = self.root / "relay.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextmanager
def office(tmp_path: Path, name: str, phones: int) -> Iterator[Office]:
    """An office store with a project and its phones (no form: the relay brings it), served on a port."""
    from server import create_app
    from server.services import accounts

    root = tmp_path / name
    root.mkdir()
    url, _ = fresh_database_url("sqlite", root)
    app = create_app({"DATABASE_URL": url, "VAR_DIR": str(root / "var"), "STORAGE_DIR": str(root / "storage")})
    with app.app_context():
        session = app.extensions["fieldsync.store"].sessions()
        project = accounts.create_project(session, f"Bureau {name}")
        tokens = [accounts.create_device(session, project.id, f"{name}-phone{i}").token for i in range(phones)]
        session.close()
    app.extensions["fieldsync.store"].engine.dispose()
    port = free_port()
    the_office = Office(name, root, url, port, project.id, tokens)
    command = [sys.executable, "-c", "from server.cli import main; main()", "serve", "--port", str(port)]
    log = (root / "serve.log").open("wb")
    the_office.serve = subprocess.Popen(command, env=the_office.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield the_office  # the caller waits for it (both offices start at once)
    finally:
        the_office.stop()


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {what}")


def _direct_project(national: LiveServer) -> tuple[int, str]:
    """A second national project with the same form, for the run where phones upload directly."""
    from server import create_app
    from server.services import accounts
    from server.services import forms as form_service
    from tests.server.fixtures_forms import media_form, publish_form

    app = create_app(
        {
            "DATABASE_URL": national.database_url,
            "STORAGE_DIR": str(national.storage_dir),
            "VAR_DIR": str(national.storage_dir.parent / "var"),
        }
    )
    with app.app_context():
        session = app.extensions["fieldsync.store"].sessions()
        project = accounts.create_project(session, "Direct")
        device = accounts.create_device(session, project.id, "direct-phone")
        publish_form(session, project.id, PHOTO_XFORM, "photo_visit.xml")
        for pid in (national.project_id, project.id):
            publish_form(session, pid, ENTREPRENEUR_XLSX)
        publish_form(session, national.project_id, media_form(), "media_test.xlsx")
        for name, content in MEDIA.items():
            form_service.upload_attachment(session, national.project_id, "media_test", name, [content], actor="test")
        session.close()
    app.extensions["fieldsync.store"].engine.dispose()
    return project.id, device.token


def _work(office_name: str, rng: random.Random) -> list[tuple[str, bytes, list[tuple[str, bytes]]]]:
    week = []
    for index in range(PER_OFFICE):
        instance_id = f"uuid:{uuid.UUID(int=rng.getrandbits(128))}"
        photos = [(f"{office_name}-{index}-{k}.jpg", rng.randbytes(PHOTO_BYTES)) for k in range(2)]
        week.append((instance_id, photo_submission(instance_id, [n for n, _ in photos]), photos))
    return week


MEDIA = {"logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "villages.csv": b"name,label\ntafraout,Tafraout\n"}
FOLLOWUP = EXAMPLE_SUBMISSIONS / "entrepreneur_followup"
KHADIJA = "39590051-7f2e-47f5-81e8-d0537904601c"
UPDATES = {"safi": [("stage", "growth"), ("legal_status", "cooperative")], "azilal": [("stage", "mature")]}


def _without_files(xml: str) -> str:
    return re.sub(r"\s*<(activity_photo|signature)>[^<]*</\1>", "", xml)


def _create_khadija() -> bytes:
    return _without_files((FOLLOWUP / "01_create_khadija_tafraout.xml").read_text(encoding="utf-8")).encode()


def _update(office_name: str, index: int, field: str, value: str) -> tuple[str, bytes]:
    """A coach's offline update of Khadija, based on the version the office served (1: the creation)."""
    xml = _without_files((FOLLOWUP / "02_update_khadija_growth.xml").read_text(encoding="utf-8"))
    instance_id = f"uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{office_name}/{index}')}"
    xml = re.sub(r"<instanceID>[^<]*</instanceID>", f"<instanceID>{instance_id}</instanceID>", xml)
    xml = xml.replace('trunkVersion="1" branchId="71caf886-7cb1-4537-b94b-0ede6e0c73dd"', 'trunkVersion="" branchId=""')
    xml = re.sub(rf"<{field}>[^<]*</{field}>", f"<{field}>{value}</{field}>", xml)
    xml = xml.replace("2027-01-14T16:15:47.093", f"2027-01-14T16:1{index}:0{len(office_name) % 10}.000")
    return instance_id, xml.encode()


def _updates() -> dict[str, list[tuple[str, bytes]]]:
    return {name: [_update(name, i, f, v) for i, (f, v) in enumerate(pairs)] for name, pairs in UPDATES.items()}


def _push_direct(national: LiveServer, token: str, project_id: int, updates: list[tuple[str, bytes]]) -> None:
    items = [
        {
            "type": "submission",
            "instanceId": instance_id,
            "formId": "entrepreneur_followup",
            "formVersion": "2026112901",
            "data": xml.decode(),
            "attachments": [],
        }
        for instance_id, xml in updates
    ]
    body = {"protocol": "fieldsync/2", "deviceId": "collect:field", "batchId": uuid.uuid4().hex, "items": items}
    answer = requests.post(
        f"{national.base_url}/v1/projects/{project_id}/sync/push",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": body["batchId"]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in answer.json()["results"]} <= {"created", "updated", "conflict"}, answer.text


def _drained(the_office: Office, expected: int) -> bool:
    queued = the_office.read("SELECT count(*) FROM relay_outbox WHERE project_id = :p AND sent_at IS NULL")
    stored = the_office.read("SELECT count(*) FROM submission_versions WHERE project_id = :p")
    return bool(stored == expected and queued == 0 and the_office.read("SELECT count(*) FROM relay_outbox") == stored)


@pytest.fixture(params=STORES)
def national(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    root = tmp_path / "national"
    root.mkdir()
    url, cleanup = (None, None) if request.param == "sqlite" else fresh_database_url("postgresql", root)
    try:
        with live_server(root, url) as server:
            yield server
    finally:
        if cleanup is not None:
            cleanup()


@pytest.mark.one_store_per_run
def test_two_office_relays_over_a_faulty_link_give_the_store_of_direct_uploads(
    national: LiveServer, tmp_path: Path
) -> None:
    env = _env(national.database_url, national.storage_dir.parent)
    tokens = {
        name: _token(_cli(env, "relays", "issue", "--name", name, "--project", str(national.project_id)))
        for name in ("safi", "azilal")
    }
    assert "safi" in _cli(env, "relays", "list")
    direct_pid, direct_token = _direct_project(national)
    for pid, token in ((national.project_id, national.token), (direct_pid, direct_token)):
        CollectPhone(national.host, national.port, prefix=f"/v1/key/{token}/projects/{pid}").send(_create_khadija(), [])
    updates = _updates()
    rng = random.Random(22)
    work = {name: _work(name, rng) for name in tokens}
    payload = sum(len(xml) + sum(len(c) for _, c in files) for week in work.values() for _, xml, files in week)

    # R5: the relay's credential is good for its project only.
    bearer = {"Authorization": f"Bearer {tokens['safi']}"}
    other = requests.post(
        f"{national.base_url}/v1/projects/{direct_pid}/blobs/missing", json={"sha256": []}, headers=bearer, timeout=10
    )
    assert other.status_code == 403, other.text
    own = requests.post(
        f"{national.base_url}/v1/projects/{national.project_id}/blobs/missing",
        json={"sha256": []},
        headers=bearer,
        timeout=10,
    )
    assert own.status_code == 200, own.text

    faults = LinkFaults(cut_every=CUT_EVERY, cut_mode="reset")
    with (
        FaultyLink((national.host, national.port), faults) as link,
        office(tmp_path, "safi", 2) as safi,
        office(tmp_path, "azilal", 1) as azilal,
    ):
        offices = {"safi": safi, "azilal": azilal}
        for the_office in offices.values():
            _wait_for(lambda o=the_office: _healthy(o.port), f"{the_office.name} server up")
        for name, the_office in offices.items():
            the_office.start_relay(link.base_url, tokens[name], national.project_id)
        # R1: the national form reaches each office, and the phones download it there.
        for the_office in offices.values():
            _wait_for(
                lambda o=the_office: o.read("SELECT count(*) FROM forms WHERE project_id = :p") == 3, "forms mirrored"
            )
            listing = requests.get(
                f"http://127.0.0.1:{the_office.port}/v1/key/{the_office.phone_tokens[0]}/projects/{the_office.project_id}/formList",
                headers={"X-OpenRosa-Version": "1.0"},
                timeout=10,
            )
            assert listing.status_code == 200 and b"photo_visit" in listing.content
            # The form's media too: a phone downloads them from the office.
            for name, content in MEDIA.items():
                media_url = (
                    f"http://127.0.0.1:{the_office.port}/v1/key/{the_office.phone_tokens[0]}"
                    f"/projects/{the_office.project_id}/forms/media_test/attachments/{name}"
                )
                _wait_for(lambda u=media_url, c=content: requests.get(u, timeout=10).content == c, f"{name} mirrored")

        def send(name: str, part: slice) -> None:
            the_office = offices[name]
            for index, (_, xml, files) in list(enumerate(work[name]))[part]:
                token = the_office.phone_tokens[index % len(the_office.phone_tokens)]
                phone = CollectPhone(
                    "127.0.0.1", the_office.port, prefix=f"/v1/key/{token}/projects/{the_office.project_id}"
                )
                phone.send(xml, files)
                assert phone.server_errors() == 0

        # The creation of Khadija reaches each office (version 1 there as nationally) before its coaches update her.
        for the_office in offices.values():
            _wait_for(
                lambda o=the_office: o.read("SELECT count(*) FROM entities WHERE version = 1") == 1, "entity down"
            )
        for name, the_office in offices.items():
            prefix = f"/v1/key/{the_office.phone_tokens[0]}/projects/{the_office.project_id}"
            for _, xml in updates[name]:
                CollectPhone("127.0.0.1", the_office.port, prefix=prefix).send(xml, [])
        send("azilal", slice(0, 3))
        # Hours offline, simulated: every connection to the national server goes silent.
        faults.stall_after = 0
        send("safi", slice(0, PER_OFFICE))
        send("azilal", slice(3, PER_OFFICE))
        assert national_count(national) < 2 * PER_OFFICE
        faults.stall_after = None
        # R2: kill -9 during pushes (the first upload seen, then the first batch sent), then restart.
        for stage in (
            "SELECT count(*) FROM relay_uploads",
            "SELECT count(*) FROM relay_outbox WHERE sent_at IS NOT NULL",
        ):
            _wait_for(lambda s=stage: safi.read(s) > 0, f"safi progress: {stage}")
            safi.kill_relay()
            safi.start_relay(link.base_url, tokens["safi"], national.project_id)
        # R2: then kill -9 at seeded random points (in a tus PATCH, between a batch's send and its answer
        # being written down, in a pull...), as long as safi still has something to send.
        kills = random.Random(2202)
        for _ in range(RANDOM_KILLS):
            if _drained(safi, PER_OFFICE + len(updates["safi"])):
                break
            time.sleep(kills.uniform(0.3, 1.5))  # the relay restarts, then works for a random while
            safi.kill_relay()
            safi.start_relay(link.base_url, tokens["safi"], national.project_id)
        for name, the_office in offices.items():
            try:
                _wait_for(lambda o=the_office, n=name: _drained(o, PER_OFFICE + len(updates[n])), f"{name} drained")
            except AssertionError:
                raise AssertionError(the_office.log_tail()) from None
        everyone = 1 + sum(len(u) for u in updates.values())
        for name, the_office in offices.items():
            _wait_for(
                lambda o=the_office: o.read("SELECT count(*) FROM entity_ops") == everyone, f"{name} entities back"
            )
        office_keys = set()
        for the_office in offices.values():
            engine = create_engine(the_office.url)
            with engine.connect() as connection:
                office_keys |= {
                    row[0] for row in connection.execute(text("SELECT DISTINCT batch_key FROM relay_outbox"))
                }
            engine.dispose()
        bytes_up = link.bytes_up
        cuts = link.cuts
        metrics = requests.get(f"http://127.0.0.1:{safi.port}/metrics", timeout=10).text
        assert f'fieldsync_relay_outbox{{project="{safi.project_id}"}} 0.0' in metrics
        # The link gauge tells how the latest round went, and the relay keeps running rounds over the cutting
        # link after its queue is empty: one of them may just have been cut. A round that gets through says 1.
        link_up = f'fieldsync_relay_link{{project="{safi.project_id}"}} 1.0'
        _wait_for(
            lambda: link_up in requests.get(f"http://127.0.0.1:{safi.port}/metrics", timeout=10).text,
            "safi's relay link reported up",
        )

    # The direct run: the same phones' work, uploaded straight to the national server, in order.
    direct = FieldsyncPhone(national.host, national.port, token=direct_token, project_id=direct_pid, batch_size=5)
    direct.sync([s for name in ("azilal", "safi") for s in work[name]])
    _push_direct(national, direct_token, direct_pid, [u for name in ("azilal", "safi") for u in updates[name]])
    assert direct.server_errors() == 0

    # R3, R4.
    engine = create_engine(national.database_url)
    session = Session(engine)
    try:
        hashes = [hashlib.sha256(c).hexdigest() for week in work.values() for _, _, files in week for _, c in files]
        relayed_dump = canonical_dump(session, national.project_id, hashes)
        photo_rows = [row for row in relayed_dump["submissions"] if row[0] == "photo_visit"]
        assert len(photo_rows) == 2 * PER_OFFICE
        assert all(row[5] == row[6] == 2 for row in photo_rows)  # every photo there
        assert len(relayed_dump["ops"]) == 1 + sum(len(u) for u in updates.values())
        assert [e[6] for e in relayed_dump["entities"]] == ["hard"]  # the two offices' stages clash
        assert relayed_dump == canonical_dump(session, direct_pid, hashes)
        from server.db.models.relays import Relay, RelayedSubmission

        carried = session.execute(
            select(Relay.name, RelayedSubmission.device_id, RelayedSubmission.submitter, func.count())
            .join(Relay, Relay.id == RelayedSubmission.relay_id)
            .group_by(Relay.name, RelayedSubmission.device_id, RelayedSubmission.submitter)
            .order_by(Relay.name, RelayedSubmission.submitter)
        ).all()
        from server.db.models.sync import PushBatch

        national_keys = session.scalars(select(PushBatch.batch_key).where(PushBatch.project_id == national.project_id))
        # Each batch went in once under the key the office wrote down before sending it, kill -9 or not.
        assert sorted(national_keys) == sorted(office_keys)
    finally:
        session.close()
        engine.dispose()
    assert [tuple(row) for row in carried] == [
        ("azilal", "collect:field", "device:azilal-phone0", PER_OFFICE + len(updates["azilal"])),
        ("safi", "collect:field", "device:safi-phone0", PER_OFFICE // 2 + len(updates["safi"])),
        ("safi", "collect:field", "device:safi-phone1", PER_OFFICE // 2),
    ]
    assert cuts > 0
    assert bytes_up <= 1.2 * payload, (bytes_up, payload, bytes_up / payload)

    # R5: a revoked relay is refused.
    _cli(env, "relays", "revoke", "safi")
    revoked = requests.post(
        f"{national.base_url}/v1/projects/{national.project_id}/blobs/missing",
        json={"sha256": []},
        headers=bearer,
        timeout=10,
    )
    assert revoked.status_code == 401


def national_count(national: LiveServer) -> int:
    engine = create_engine(national.database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM submissions WHERE project_id = :p"), {"p": national.project_id}
                ).scalar_one()
            )
    finally:
        engine.dispose()
