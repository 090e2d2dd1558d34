"""``fieldsync serve`` keeps idle connections as long as phones, Node clients and proxies expect.

Rules (issue 13): keep-alive is 65 s by default (gunicorn's own 2 s closed a connection the ODK Web
Forms engine reused after 3 s of work, and its POST was lost with EPIPE); a client that waits 10 s
between requests on one connection has every POST answered on that connection; each server has its
own gunicorn control socket under its VAR_DIR (two servers on one machine never share one).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

# Servers on a SQLite file whatever the run: they run in the run without PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.one_store_per_run

WAIT_BETWEEN_REQUESTS = 10  # seconds: the Node-style client's think time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _gunicorn_args(monkeypatch: pytest.MonkeyPatch, var_dir: Path) -> list[str]:
    from server import cli

    captured: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda _exe, args: captured.append(list(args)))
    monkeypatch.setenv("FIELDSYNC_VAR_DIR", str(var_dir))
    # serve points prometheus-client at a multiprocess folder through the environment, and
    # prometheus-client picks its value store when first imported, by the variable's presence: import it
    # first, and undo the variable after the test, so this process keeps counting in memory.
    import server.metrics  # noqa: F401

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setenv("FIELDSYNC_DATABASE_URL", f"sqlite:///{var_dir / 'db.sqlite3'}")
    result = CliRunner().invoke(cli.main, ["serve", "--port", "5998"])
    assert result.exit_code == 0, result.output
    (args,) = captured
    return args


def test_keep_alive_is_65_s_and_each_server_has_its_own_control_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = _gunicorn_args(monkeypatch, tmp_path / "a")
    second = _gunicorn_args(monkeypatch, tmp_path / "b")
    assert first[first.index("--keep-alive") + 1] == "65"
    sockets = {args[args.index("--control-socket") + 1] for args in (first, second)}
    assert sockets == {str(tmp_path / "a" / "gunicorn.ctl"), str(tmp_path / "b" / "gunicorn.ctl")}


@pytest.mark.slow
def test_a_client_waiting_10_s_between_posts_on_one_connection_loses_none(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIELDSYNC_", "PROMETHEUS_"))}
    env.update({"FIELDSYNC_VAR_DIR": str(tmp_path / "var"), "FIELDSYNC_LOG_REQUESTS": "0"})
    fieldsync = [sys.executable, "-c", "from server.cli import main; main()"]
    subprocess.run([*fieldsync, "init-db"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*fieldsync, "users", "create", "amina", "--role", "admin", "--password", "trois mots suffisent"],
        env=env,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [*fieldsync, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(
                        f"fieldsync serve did not start: {server.stderr.read()[-2000:] if server.stderr else ''}"
                    )
                time.sleep(0.1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"email": "amina", "password": "trois mots suffisent"})
        statuses = []
        for attempt in range(2):
            if attempt:
                time.sleep(WAIT_BETWEEN_REQUESTS)  # the client thinks, then reuses its connection
            connection.request("POST", "/v1/sessions", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            assert response.getheader("Connection", "").lower() != "close"
        connection.close()
        assert statuses == [200, 200]
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
