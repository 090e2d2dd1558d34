"""A large CSV zip export on PostgreSQL, formatted by helper processes that read it in one snapshot.

Rules checked (``server.db.queries.exports.SnapshotParts``, ``exports.parts``):
- X1 with ``EXPORT_PROCESSES=2`` the export of a form of several parts is read by helper processes
  (not the request's) and its members are byte for byte those of the export made in the request's
  thread (``EXPORT_PROCESSES=1``): edits, a deleted submission, repeats, the cleaning report.
- X2 every part is read in the snapshot the export started with: a submission stored, and another
  deleted, once the parts are cut (before any helper reads) change nothing in this export; the next
  export shows both.
- X3 a helper that fails ends the export with ``PartFailed``; a client that stops reading kills the
  helpers; either way no helper is left and the request's read transaction is over.
- X4 a form of one part is read in the request's process (no helper is started).
- X5 the request's own read transaction ends once every helper has read its first part (the helpers
  hold the snapshot from then on): its connection is not left idle in a transaction for the rest.
- X6 in a real ``fieldsync serve``, exports forking their helpers while the worker's other threads store
  submissions break none of those requests (every POST is a 201, nothing in the log), and every export
  is a valid zip holding each submission once, the last one all of them.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from flask import Flask
from psycopg.pq import TransactionStatus
from sqlalchemy.orm import Session

from exports.parts import PartFailed
from server import create_app
from server.auth import Principal
from server.db.queries import exports as q
from server.services import accounts as accounts_svc
from server.services import exports as svc
from server.services import submissions as submissions_svc
from server.store import get_store
from tests.conftest import POSTGRES_URL, REPO, fresh_database_url
from tests.server.fixtures_exports import ingest_xml
from tests.server.fixtures_forms import COOP_XLSX, publish_form
from tests.server.live_server import LiveServer, live_server, multipart
from tests.server.test_submissions_support import photo_submission

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not POSTGRES_URL, reason="FIELDSYNC_TEST_POSTGRES_URL is not set (helpers read PostgreSQL)"),
]

EXAMPLES = sorted((REPO / "examples" / "submissions" / "coop_diagnostic").glob("*.xml"))
UUID = re.compile(rb"uuid:([0-9a-f-]{34})[0-9a-f]{2}")
COPIES = 6  # 6 x (2 submissions, one of them edited) = 12 submissions, 18 versions


def _copy(xml: bytes, n: int) -> bytes:
    """The example with every instance id renamed for copy ``n`` (an edit still names its original)."""
    return UUID.sub(lambda m: b"uuid:" + m.group(1) + f"{n:02x}".encode(), xml)


def _export_helpers() -> list[multiprocessing.process.BaseProcess]:
    """The export helpers still alive (other children, such as a form converter, are not this test's)."""
    return [p for p in multiprocessing.active_children() if p.name.startswith("export-part-")]


class Store:
    """A committed PostgreSQL store with the cooperative form and its submissions, and its app."""

    def __init__(self, app: Flask, project_id: int, principal: Principal) -> None:
        self.app = app
        self.project_id = project_id
        self.principal = principal
        self.status_after: Any = None  # the export session's transaction status once the export ended

    def export(self, processes: int, stop_after: int | None = None) -> dict[str, bytes]:
        """The export zip's members, made with ``processes`` helper processes (read until ``stop_after`` chunks)."""
        self.app.config["EXPORT_PROCESSES"] = processes
        with self.app.app_context():
            session = get_store().sessions()
            try:
                stream = svc.open_export(session, self.project_id, "coop_diagnostic", {}, "zip", "test")
                chunks = []
                for chunk in stream.chunks:
                    chunks.append(chunk)
                    if stop_after is not None and len(chunks) >= stop_after:
                        stream.chunks.close()  # type: ignore[attr-defined]  # a generator
                        break
            finally:
                self.status_after = _transaction_status(session)
                session.close()
        assert self.status_after == TransactionStatus.IDLE  # the read is over
        if stop_after is not None:
            return {}
        with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as zf:
            assert zf.testzip() is None
            return {name: zf.read(name) for name in zf.namelist()}

    def ingest(self, xml: bytes) -> None:
        with self.app.app_context():
            session = get_store().sessions()
            try:
                ingest_xml(session, self.project_id, xml, self.principal)
            finally:
                session.close()

    def delete(self, instance_id: str) -> None:
        with self.app.app_context():
            session = get_store().sessions()
            try:
                submissions_svc.delete_submission(
                    session,
                    project_id=self.project_id,
                    xml_form_id="coop_diagnostic",
                    instance_id=instance_id,
                    principal=self.principal,
                )
            finally:
                session.close()


def _transaction_status(session: Session) -> Any:
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver.info.transaction_status


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("export-parts")
    url, cleanup = fresh_database_url("postgresql", tmp)
    app = create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(tmp / "var"),
            "STORAGE_DIR": str(tmp / "storage"),
            "EXPORT_DIR": str(tmp / "exports"),
            "SECRET_KEY": "test-secret",
            "LOG_REQUESTS": False,
        }
    )
    try:
        with app.app_context():
            session = get_store().sessions()
            project = accounts_svc.create_project(session, "Parts")
            coach = accounts_svc.create_user(session, "parts-coach", "correct horse battery")
            principal = Principal("user", coach.id, coach.username)
            session.close()
        publish_form(app, project.id, COOP_XLSX)
        found = Store(app, project.id, principal)
        for n in range(COPIES):
            for path in EXAMPLES:
                found.ingest(_copy(path.read_bytes(), n))
        found.delete(_copy(b"uuid:2c7fb6dd-9a79-4d38-a033-bda54a895fd3", 2).decode())
        yield found
    finally:
        get_store(app).engine.dispose()
        cleanup()


@pytest.fixture
def small_parts(store: Store) -> Iterator[None]:
    """Parts of 3 submissions (``EXPORT_PART_SUBMISSIONS``): the 12 submissions make 4 parts (2 per helper)."""
    store.app.config["EXPORT_PART_SUBMISSIONS"] = 3
    yield
    store.app.config["EXPORT_PART_SUBMISSIONS"] = q.PART_SUBMISSIONS


@pytest.fixture
def readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each part read leaves a file named by the reading process's id and the part's first submission id."""
    read = q.SnapshotParts.read

    def recorded(self: q.SnapshotParts, part: tuple[int, int | None]) -> Iterator[Any]:
        (tmp_path / f"{os.getpid()}-{part[0]}").touch()
        return read(self, part)

    monkeypatch.setattr(q.SnapshotParts, "read", recorded)
    return tmp_path


def _readers(where: Path) -> set[int]:
    return {int(p.name.split("-")[0]) for p in where.iterdir()}


def test_helpers_make_the_same_export_as_the_request(store: Store, small_parts: None, readers: Path) -> None:
    alone = store.export(processes=1)
    assert not list(readers.iterdir())  # one process: no part read by a helper
    helped = store.export(processes=2)
    pids = _readers(readers)
    assert len(pids) == 2 and os.getpid() not in pids
    assert len(list(readers.iterdir())) == 4  # 12 submissions in parts of 3
    assert list(helped) == list(alone)
    for name, data in alone.items():
        assert helped[name] == data, name
    root = alone["coop_diagnostic.csv"].decode("utf-8-sig")
    assert root.count("\r\n") == 1 + 2 * COPIES - 1  # header, every live submission once (one deleted)
    assert _export_helpers() == []


def test_every_part_reads_the_snapshot_the_export_started_with(
    store: Store, small_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store.export(processes=2)
    new = _copy(EXAMPLES[1].read_bytes(), 0x40)
    gone = _copy(b"uuid:2c7fb6dd-9a79-4d38-a033-bda54a895fd3", 4).decode()
    split = q.SnapshotParts.split

    def then_change(self: q.SnapshotParts) -> list[tuple[int, int | None]]:
        parts = split(self)
        store.ingest(new)  # committed by other sessions before any helper reads
        store.delete(gone)
        return parts

    monkeypatch.setattr(q.SnapshotParts, "split", then_change)
    during = store.export(processes=2)
    monkeypatch.setattr(q.SnapshotParts, "split", split)
    assert during == before
    after = store.export(processes=2)["coop_diagnostic.csv"].decode("utf-8-sig")
    new_id = UUID.search(new)
    assert new_id is not None and new_id.group(0).decode() in after
    assert gone not in after


def test_a_failing_helper_ends_the_export_and_its_read(
    store: Store, small_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = q.SnapshotParts.read
    first: list[int] = []

    def fails_on_the_third(self: q.SnapshotParts, part: tuple[int, int | None]) -> Iterator[Any]:
        first.append(part[0])
        if len(first) == 2:  # this helper's second part: the export's third
            raise RuntimeError("the disk is on fire")
        return read(self, part)

    monkeypatch.setattr(q.SnapshotParts, "read", fails_on_the_third)
    with pytest.raises(PartFailed, match="part 3: RuntimeError: the disk is on fire"):
        store.export(processes=2)
    assert store.status_after == TransactionStatus.IDLE
    assert _export_helpers() == []


def test_a_client_that_stops_reading_stops_the_helpers(
    store: Store, small_parts: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = q.SnapshotParts.read

    def slow_second_parts(self: q.SnapshotParts, part: tuple[int, int | None]) -> Iterator[Any]:
        (tmp_path / f"started-{os.getpid()}").touch()
        if part not in self.split()[:2]:  # each helper's second part: far slower than the client's patience
            time.sleep(30)
            (tmp_path / "finished").touch()  # only a helper left running gets here
        return read(self, part)

    monkeypatch.setattr(q.SnapshotParts, "read", slow_second_parts)
    # The zip's first bytes (its headers), then those of the first parts; then the client goes away.
    store.export(processes=2, stop_after=2)
    assert len(list(tmp_path.glob("started-*"))) == 2  # both helpers were at work
    assert _export_helpers() == []
    assert not (tmp_path / "finished").exists()  # killed, not waited for


def test_a_form_of_one_part_is_read_in_the_request(store: Store, readers: Path) -> None:
    helped = store.export(processes=2)  # 12 submissions, far under EXPORT_PART_SUBMISSIONS
    assert not list(readers.iterdir())
    assert helped["coop_diagnostic.csv"].decode("utf-8-sig").count("\r\n") == 2 * COPIES


def test_the_request_transaction_ends_once_every_helper_has_its_first_part(
    store: Store, small_parts: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split, read = q.SnapshotParts.split, q.SnapshotParts.read
    exporter: list[int] = []

    def remember_the_exporter(self: q.SnapshotParts) -> list[tuple[int, int | None]]:
        driver = self.session.connection().connection.driver_connection
        assert driver is not None
        exporter.append(driver.info.backend_pid)  # inherited by the helpers forked next
        return split(self)

    def last_part_sees(self: q.SnapshotParts, part: tuple[int, int | None]) -> Iterator[Any]:
        if part[1] is None:  # the last part: the second of helper 2, after both helpers sent a part
            # autocommit: pg_stat_activity is read afresh by each query, not once per transaction.
            with psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
                state = None
                for _ in range(100):
                    row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", exporter).fetchone()
                    state = row[0] if row else None
                    if state == "idle":
                        break
                    time.sleep(0.05)
            (tmp_path / "state").write_text(str(state))
        return read(self, part)

    monkeypatch.setattr(q.SnapshotParts, "split", remember_the_exporter)
    monkeypatch.setattr(q.SnapshotParts, "read", last_part_sees)
    store.export(processes=2)
    assert (tmp_path / "state").read_text() == "idle"


ADMIN = ("parts-admin", "correct horse battery staple")


def _add_admin(url: str, tmp: Path) -> None:
    app = create_app({"DATABASE_URL": url, "VAR_DIR": str(tmp / "admin-var"), "SECRET_KEY": "x", "LOG_REQUESTS": False})
    with app.app_context():
        session = get_store().sessions()
        accounts_svc.create_user(session, *ADMIN, is_admin=True)
        session.close()
    get_store(app).engine.dispose()


def _post_submissions(server: LiveServer, names: list[str], statuses: list[int]) -> None:
    with requests.Session() as http:
        for name in names:
            body, content_type = multipart(
                [("xml_submission_file", "submission.xml", photo_submission(name, []), "text/xml")]
            )
            answer = http.post(
                f"{server.base_url}{server.collect_prefix}/submission",
                data=body,
                headers={"Content-Type": content_type, "X-OpenRosa-Version": "1.0"},
                timeout=60,
            )
            statuses.append(answer.status_code)


def _exported(server: LiveServer) -> list[str]:
    """The instance ids of the export's root table, read from a zip whose every CRC holds."""
    answer = requests.get(
        f"{server.base_url}/v1/projects/{server.project_id}/forms/photo_visit/export.zip",
        auth=requests.auth.HTTPBasicAuth(*ADMIN),
        timeout=120,
    )
    assert answer.status_code == 200, answer.text[:300]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as zf:
        assert zf.testzip() is None
        rows = list(csv.DictReader(io.StringIO(zf.read("photo_visit.csv").decode("utf-8-sig"))))
    return [row["KEY"] for row in rows]


def _watch_helpers(url: str, found: list[int], done: threading.Event) -> None:
    """Note the backend of every export helper's connection seen in pg_stat_activity until ``done``."""
    plain = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        while not done.is_set():
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (q.HELPER_APPLICATION_NAME,)
            ).fetchall()
            found.extend(pid for (pid,) in rows)
            done.wait(0.005)


@pytest.mark.one_store_per_run
@pytest.mark.parametrize("backend_name", ["postgresql"])
def test_helpers_forked_amid_other_requests_leave_them_alone(backend_name: str, tmp_path: Path) -> None:
    """X6: exports forked in a real ``fieldsync serve`` while its threads store submissions change none of them."""
    url, cleanup = fresh_database_url(backend_name, tmp_path)
    try:
        with live_server(tmp_path, database_url=url, export_processes="2", export_part_submissions="15") as server:
            _add_admin(url, tmp_path)
            statuses: list[int] = []
            _post_submissions(server, [f"uuid:parts-seed-{n}" for n in range(90)], statuses)
            posters = [
                threading.Thread(
                    target=_post_submissions,
                    args=(server, [f"uuid:parts-{t}-{n}" for n in range(40)], statuses),
                )
                for t in range(4)
            ]
            for poster in posters:
                poster.start()
            helpers: list[int] = []
            done = threading.Event()
            watcher = threading.Thread(target=_watch_helpers, args=(url, helpers, done))
            watcher.start()
            exports: list[list[str]] = []
            try:
                while any(poster.is_alive() for poster in posters) or len(exports) < 3:
                    exports.append(_exported(server))  # forks its helpers while the posters' requests run
            finally:
                done.set()
                watcher.join()
            for poster in posters:
                poster.join()
            final = _exported(server)
        log = server.log_tail()
    finally:
        cleanup()
    assert len(set(helpers)) >= 2  # the exports were read by helper processes' connections
    assert statuses == [201] * (90 + 4 * 40)
    for keys in exports:
        assert len(keys) == len(set(keys)) and 90 <= len(keys) <= 250
    assert [len(keys) for keys in exports] == sorted(len(keys) for keys in exports)
    assert sorted(final) == sorted(
        [f"uuid:parts-seed-{n}" for n in range(90)] + [f"uuid:parts-{t}-{n}" for t in range(4) for n in range(40)]
    )
    assert "Traceback" not in log and "ERROR" not in log, log
