"""``fieldsync serve`` on a real socket: keep-alive, slow clients, no request body read inside a transaction.

Rules (issue 14 "Field networks", issue 13 point 9, issue 15 row 2):
- SV1 (keep-alive across a 10 s pause: tests/server/test_serve_keep_alive.py, through ``fieldsync serve`` itself)
- SV2 10 stalled requests on SQLite (OpenRosa, push, tus, half-sent headers) leave ``/healthz`` answering
  and other coaches' submissions stored.
- SV3 Each stalled request ends after the silence limit (2 s here): the server answers or closes.
- SV4 The gunicorn command line: keep-alive 65 s by default, one control socket per server (or none).
- SV5 The attack of issue 15 row 2, from the attacker's side: 5 sockets that send half a body and 17 that
  send half their headers, then nothing, block no other request, and each is ended by the server.

Nothing here measures time: the client timeouts are generous bounds, never assertions.
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from server.config import load_config
from server.serving import gunicorn_argv
from tests.server.live_server import (
    LiveServer,
    collect_post,
    connect,
    exchange,
    live_server,
    read_response,
    request_bytes,
    tus_metadata,
)

# Servers on a SQLite file whatever the run: they run in the run without PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.one_store_per_run

SILENCE = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One SQLite ``fieldsync serve`` with a 2 s silence limit, for the tests of this module."""
    with live_server(tmp_path_factory.mktemp("serve"), client_silence_timeout=str(SILENCE)) as running:
        yield running


def _stored(server: LiveServer, instance_ids: list[str]) -> int:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT instance_id FROM submission_versions")).scalars().all()
    finally:
        engine.dispose()
    return len(set(instance_ids) & set(found))


def _create_upload(server: LiveServer, length: int) -> str:
    metadata = tus_metadata(server.project_id)
    created = requests.post(
        f"{server.base_url}/v1/uploads",
        headers={**server.bearer, "Tus-Resumable": "1.0.0", "Upload-Length": str(length), "Upload-Metadata": metadata},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return created.headers["Location"]


def _stalled_requests(server: LiveServer) -> dict[str, bytes]:
    """What each stalled client sends before it goes silent: a head and part of a body, or half a head."""
    openrosa, body = collect_post(server, "uuid:stalled-openrosa", {"a.jpg": b"x" * 50_000})
    push_body = b'{"protocol": "fieldsync/2", "deviceId": "d", "batchId": "b", "items": ['
    push = request_bytes(
        "POST",
        f"/v1/projects/{server.project_id}/sync/push",
        {**server.bearer, "Content-Type": "application/json", "Content-Length": "100000", "Idempotency-Key": "k"},
        push_body,
    )
    location = _create_upload(server, 100_000)
    tus = request_bytes(
        "PATCH",
        location,
        {
            **server.bearer,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": "100000",
        },
        b"y" * 30_000,
    )
    half_head = f"POST {server.collect_prefix}/submission HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le".encode()
    return {
        "openrosa-1": openrosa[: len(openrosa) - len(body) // 2],
        "openrosa-2": openrosa[: len(openrosa) - len(body) // 3],
        "openrosa-3": openrosa[: len(openrosa) - 10],
        "push-1": push,
        "push-2": push,
        "push-3": push,
        "tus-1": tus,
        "tus-2": tus,  # the same upload: the second is refused (409) or cut too, never a 500
        "half-head-1": half_head,
        "half-head-2": half_head,
    }


def test_stalled_clients_never_freeze_the_server(server: LiveServer) -> None:
    stalled: dict[str, socket.socket] = {}
    for name, sent in _stalled_requests(server).items():
        sock = connect(server)
        sock.sendall(sent)
        stalled[name] = sock
    try:
        # While all ten are silent: the server answers its health check and stores other coaches' work.
        others = [f"uuid:{uuid.uuid4()}" for _ in range(3)]
        for instance_id in others:
            assert requests.get(f"{server.base_url}/healthz", timeout=30).status_code == 200
            answer = exchange(server, collect_post(server, instance_id, {})[0])
            assert answer is not None and answer.status == 201, server.log_tail()
        assert _stored(server, others) == 3
        # Each stalled request ends (after the 2 s silence limit; the 60 s client timeout is only a bound):
        # a body that stopped gets its answer, half a head gets the connection closed.
        endings = {name: read_response(sock) for name, sock in stalled.items()}
    finally:
        for sock in stalled.values():
            sock.close()
    statuses = {name: (answer.status if answer else "closed") for name, answer in endings.items()}
    assert {name: status for name, status in statuses.items() if name.startswith("half-head")} == {
        "half-head-1": "closed",
        "half-head-2": "closed",
    }
    assert all(status != "closed" and status < 500 for name, status in statuses.items() if "head" not in name), statuses
    assert {statuses[f"push-{i}"] for i in (1, 2, 3)} == {400}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, {"--keep-alive": "65", "--control-socket": "VAR/gunicorn.ctl"}),
        ({"FIELDSYNC_KEEP_ALIVE": "75", "FIELDSYNC_CONTROL_SOCKET": "off"}, {"--keep-alive": "75"}),
    ],
    ids=["defaults", "configured"],
)
def test_gunicorn_command_line(
    settings: dict[str, str], expected: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    config = load_config({"VAR_DIR": str(tmp_path), "SECRET_KEY": "x"})
    argv = [arg.replace(str(tmp_path), "VAR") for arg in gunicorn_argv(config, host="127.0.0.1", port=1, workers=1)]
    assert {flag: argv[argv.index(flag) + 1] for flag in expected} == expected
    assert ("--no-control-socket" in argv) == ("--control-socket" not in expected)
    assert argv[argv.index("--worker-class") + 1] == "server.gunicorn_worker.SilenceLimitedWorker"


def test_two_servers_get_two_control_sockets(tmp_path: Path) -> None:
    first = load_config({"VAR_DIR": str(tmp_path / "a"), "SECRET_KEY": "x"})
    second = load_config({"VAR_DIR": str(tmp_path / "b"), "SECRET_KEY": "x"})
    sockets = {
        argv[argv.index("--control-socket") + 1]
        for argv in (gunicorn_argv(c, host="127.0.0.1", port=1, workers=1) for c in (first, second))
    }
    assert len(sockets) == 2


def test_overlapping_patches_and_the_completion_race_never_500(server: LiveServer) -> None:
    data = bytes(range(256)) * 1200  # 307,200 bytes: past one durable step
    metadata = tus_metadata(server.project_id, hashlib.sha256(data).digest())
    created = requests.post(
        f"{server.base_url}/v1/uploads",
        headers={
            **server.bearer,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata,
        },
        timeout=30,
    )
    url = f"{server.base_url}{created.headers['Location']}"
    headers = {**server.bearer, "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}

    def patch(_: int) -> int:
        return requests.patch(url, data=data, headers={**headers, "Upload-Offset": "0"}, timeout=60).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(patch, range(6)))
    assert set(statuses) <= {204, 409} and 204 in statuses, statuses
    head = requests.head(url, headers=headers, timeout=30)
    assert head.headers["Upload-Offset"] == str(len(data))
    stored = [p for p in server.storage_dir.rglob(hashlib.sha256(data).hexdigest()) if p.is_file()]
    assert [p.read_bytes() == data for p in stored] == [True]


def test_a_post_cut_by_a_clean_close_keeps_its_xml_on_the_real_server(server: LiveServer) -> None:
    # gunicorn marks every body wsgi.input_terminated: a body that ends early must still be seen as cut.
    raw, _ = collect_post(server, "uuid:clean-close", {"a.jpg": b"a" * 300_000})
    sock = connect(server)
    try:
        sock.sendall(raw[:100_000])
        sock.shutdown(socket.SHUT_WR)
        answer = read_response(sock)
    finally:
        sock.close()
    assert answer is not None and answer.status == 400
    assert b"connection was cut" in answer.body
    assert _stored(server, ["uuid:clean-close"]) == 1


def test_the_slow_socket_attack_blocks_no_one(server: LiveServer) -> None:
    # Issue 15 row 2: 5 half bodies and 17 half heads froze every request for minutes (no read timeout).
    raw, body = collect_post(server, "uuid:attacker", {"a.jpg": b"z" * 100_000})
    half_body = raw[: len(raw) - len(body) // 2]
    half_head = raw[: raw.index(b"\r\n\r\n") // 2]
    attackers = [connect(server) for _ in range(5 + 17)]
    try:
        for index, sock in enumerate(attackers):
            sock.sendall(half_body if index < 5 else half_head)
        # Every request of a coach is answered while the attacker's sockets stay open and silent.
        assert requests.get(f"{server.base_url}/healthz", timeout=30).status_code == 200
        coach = f"uuid:{uuid.uuid4()}"
        answer = exchange(server, collect_post(server, coach, {"b.jpg": b"b" * 10_000})[0])
        assert answer is not None and answer.status == 201, server.log_tail()
        assert _stored(server, [coach]) == 1
        # The server ends every one of them (the 60 s client timeout is only a bound): a half body gets
        # its 400 answer, a half head a closed connection; nothing of the attacker is stored.
        endings = [read_response(sock) for sock in attackers]
    finally:
        for sock in attackers:
            sock.close()
    assert [e.status if e else "closed" for e in endings] == [400] * 5 + ["closed"] * 17
    assert _stored(server, ["uuid:attacker"]) == 1  # the half body's XML part arrived whole: kept, once


def test_a_connection_is_closed_off_the_event_loop_thread() -> None:
    # gunicorn lingers up to 2 s for the client's FIN when it closes; in the event loop's thread, ten
    # silent clients ended by the limit froze the worker for 20 s (bench.stalled_clients).
    import threading
    from concurrent.futures import Future
    from concurrent.futures import ThreadPoolExecutor as Pool

    from server.gunicorn_worker import SilenceLimitedWorker

    closed: list[tuple[int, bool]] = []
    done = threading.Event()

    class Conn:
        def close(self, graceful: bool = False) -> None:
            closed.append((threading.get_ident(), graceful))
            done.set()

    worker = object.__new__(SilenceLimitedWorker)
    worker.nr_conns = 1
    worker.closer = Pool(1)
    answered: Future[object] = Future()
    answered.set_result(False)  # the request ended: close the connection
    worker.finish_request(Conn(), answered)
    assert done.wait(30)
    assert worker.nr_conns == 0
    assert closed == [(closed[0][0], True)] and closed[0][0] != threading.get_ident()


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    """Read ``count`` responses in a row from one connection (a buffered reader: they may arrive together).

    Each is its status, its header fields (lower-case names, in order, repeats kept) and its body.
    """
    answers = []
    with sock.makefile("rb") as stream:
        for _ in range(count):
            status = int(stream.readline().split()[1])
            headers = []
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers.append((name.strip().lower(), value.strip()))
            length = int(dict(headers).get("content-length", "0"))
            answers.append((status, headers, stream.read(length)))
    return answers


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """The status and body of each of the next ``count`` responses on ``sock``."""
    return [(status, body) for status, _, body in _read_answers(sock, count)]


def test_requests_sent_back_to_back_on_one_connection_are_all_answered_in_order(server: LiveServer) -> None:
    # SV6: a thread that has answered serves the connection's next request itself when it follows at
    # once, from the socket or from bytes read ahead with the previous body (pipelined requests).
    coaches = [f"uuid:{uuid.uuid4()}" for _ in range(3)]
    posts = [collect_post(server, coach, {})[0] for coach in coaches]
    health = request_bytes("GET", "/healthz", {})
    sock = connect(server)
    try:
        sock.sendall(posts[0] + health + posts[1])  # pipelined: one write
        first = _responses(sock, 3)
        answers = []
        for _ in range(10):  # back to back, each sent once the previous one is answered
            sock.sendall(health)
            answers += _responses(sock, 1)
        sock.sendall(posts[2])
        last = _responses(sock, 1)
    finally:
        sock.close()
    assert [status for status, _ in first] == [201, 200, 201]
    assert answers == [answers[0]] * 10 and answers[0][0] == 200
    assert last[0][0] == 201
    assert _stored(server, coaches) == 3


class _Served:
    """A stand-in for gunicorn's per-request handling: one line from the socket is one request."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def handle(self, conn: object) -> bool:
        sock = conn.sock  # type: ignore[attr-defined]
        line = b""
        while not line.endswith(b"\n"):
            byte = sock.recv(1)
            if not byte:
                return False
            line += byte
        self.lines.append(line)
        return True


def _lingering_worker(monkeypatch: pytest.MonkeyPatch, served: _Served) -> object:
    from concurrent.futures import ThreadPoolExecutor as Pool

    from gunicorn.workers.gthread import ThreadWorker

    from server.gunicorn_worker import SilenceLimitedWorker

    monkeypatch.setattr(ThreadWorker, "handle", lambda _self, conn: served.handle(conn))
    worker = object.__new__(SilenceLimitedWorker)
    worker.alive = True
    worker.tpool = Pool(1)
    return worker


def _conn(sock: socket.socket, buffered: bytes = b"") -> object:
    import io
    from types import SimpleNamespace

    buffer = io.BytesIO()
    buffer.write(buffered)
    return SimpleNamespace(sock=sock, is_http2=False, parser=SimpleNamespace(unreader=SimpleNamespace(buf=buffer)))


def test_a_thread_serves_the_requests_that_follow_at_once_then_gives_the_connection_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SV6 at the worker's level: requests already waiting are served by the same thread; once none
    # follows, the connection goes back to the event loop (handle answers True: kept alive).
    served = _Served()
    worker = _lingering_worker(monkeypatch, served)
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(b"one\ntwo\nthree\n")
        assert worker.handle(_conn(ours)) is True  # type: ignore[attr-defined]
        assert served.lines == [b"one\n", b"two\n", b"three\n"]
        theirs.close()  # the client is gone: the thread finds out while serving
        served.lines.clear()
        assert worker.handle(_conn(ours)) is False  # type: ignore[attr-defined]
    finally:
        ours.close()
        theirs.close()
        worker.tpool.shutdown()  # type: ignore[attr-defined]


@pytest.mark.parametrize("why", ["another connection waits", "the worker stops", "http/2"])
def test_a_thread_gives_the_connection_back_when_others_need_it(monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    served = _Served()
    worker = _lingering_worker(monkeypatch, served)
    ours, theirs = socket.socketpair()
    conn = _conn(ours)
    blocker = None
    try:
        if why == "another connection waits":
            import threading

            release = threading.Event()
            blocker = worker.tpool.submit(release.wait)  # type: ignore[attr-defined]
            worker.tpool.submit(lambda: None)  # type: ignore[attr-defined]  # queued behind it
        elif why == "the worker stops":
            worker.alive = False  # type: ignore[attr-defined]
        else:
            conn.is_http2 = True  # type: ignore[attr-defined]
        theirs.sendall(b"one\ntwo\n")
        assert worker.handle(conn) is True  # type: ignore[attr-defined]
        assert served.lines == [b"one\n"]
    finally:
        if blocker is not None:
            release.set()
        ours.close()
        theirs.close()
        worker.tpool.shutdown()  # type: ignore[attr-defined]


def test_bytes_read_ahead_with_the_previous_body_are_served_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    served = _Served()
    worker = _lingering_worker(monkeypatch, served)
    ours, theirs = socket.socketpair()
    conn = _conn(ours, buffered=b"the next request, read with this one's body")
    calls = []

    def handle(conn: object) -> bool:
        calls.append(1)
        if len(calls) == 2:  # the second request is the one read ahead: its bytes are consumed
            conn.parser.unreader.buf = __import__("io").BytesIO()  # type: ignore[attr-defined]
        return True

    monkeypatch.setattr(served, "handle", handle)
    try:
        assert worker.handle(conn) is True  # type: ignore[attr-defined]
        assert len(calls) == 2  # this request, the one read ahead, then nothing more: back to the event loop
    finally:
        ours.close()
        theirs.close()
        worker.tpool.shutdown()  # type: ignore[attr-defined]


def test_gunicorns_pool_is_one_whose_queue_the_worker_reads() -> None:
    # The worker reads the pool's queue to know whether another connection waits; an upgrade that
    # changed the pool would silently stop the serving of requests that follow at once.
    from server.gunicorn_worker import SilenceLimitedWorker

    worker = object.__new__(SilenceLimitedWorker)
    worker.cfg = type("Cfg", (), {"threads": 2})()
    pool = worker.get_thread_pool()
    try:
        assert pool._work_queue.qsize() == 0
    finally:
        pool.shutdown()


def _date_headers(sock: socket.socket) -> tuple[int, int]:
    """The status of the next response and how many ``Date`` header lines it has (its body read too)."""
    ((status, headers, _),) = _read_answers(sock, 1)
    return status, sum(name == "date" for name, _ in headers)


def test_openrosa_answers_carry_one_date_header(server: LiveServer) -> None:
    # SV7: OpenRosa requires a Date header. gunicorn writes its own on every response (and drops the
    # app's), so the app leaves it to gunicorn: every answer still has exactly one.
    head = {"X-OpenRosa-Version": "1.0"}
    requests_to_send = [
        request_bytes("GET", f"{server.collect_prefix}/formList", head),  # the formList shortcut
        collect_post(server, f"uuid:{uuid.uuid4()}", {})[0],  # the submission shortcut
        request_bytes("HEAD", f"{server.collect_prefix}/submission", head),  # the full app
        request_bytes("GET", "/v1/key/not-a-key/projects/1/formList", head),  # a refusal by the full app
    ]
    answers = []
    for raw in requests_to_send:
        sock = connect(server)
        try:
            sock.sendall(raw)
            answers.append(_date_headers(sock))
        finally:
            sock.close()
    assert [status for status, _ in answers][:2] == [200, 201]
    assert [dates for _, dates in answers] == [1, 1, 1, 1], answers
