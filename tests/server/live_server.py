"""A real ``fieldsync serve`` (gunicorn) on a loopback port, and raw-socket HTTP to talk to it.

For what the Flask test client cannot show: keep-alive between requests, stalled sockets, half-sent
headers, cut connections. The store is prepared in-process (a project, a device, the photo form),
then the CLI's ``serve`` runs in a subprocess with the test's configuration.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.conftest import REPO, fresh_database_url
from tests.server.test_submissions_support import photo_project_app, photo_submission

SECRET = "live-server-secret"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    """A running server: where it listens, its project and device, its store's URL."""

    host: str
    port: int
    project_id: int
    token: str
    database_url: str
    storage_dir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def collect_prefix(self) -> str:
        """The device's Collect server path."""
        return f"/v1/key/{self.token}/projects/{self.project_id}"

    @property
    def bearer(self) -> dict[str, str]:
        """The device's token as a bearer header (push, tus)."""
        return {"Authorization": f"Bearer {self.token}"}

    def log_tail(self) -> str:
        """The end of gunicorn's output (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


@contextmanager
def live_server(tmp_path: Path, database_url: str | None = None, **config: str) -> Iterator[LiveServer]:
    """Prepare a store, run ``fieldsync serve`` on it with ``FIELDSYNC_<KEY>=value`` settings, stop it after."""
    cleanup = None
    url = database_url
    if url is None:
        url, cleanup = fresh_database_url("sqlite", tmp_path)
    app, project_id, token = photo_project_app(url, tmp_path, SECRET)
    app.extensions["fieldsync.store"].engine.dispose()
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "FIELDSYNC_DATABASE_URL": url,
            "FIELDSYNC_VAR_DIR": str(tmp_path / "var"),
            "FIELDSYNC_STORAGE_DIR": str(tmp_path / "storage"),
            "FIELDSYNC_SECRET_KEY": SECRET,
            "FIELDSYNC_LOG_REQUESTS": "0",
            **{f"FIELDSYNC_{key.upper()}": value for key, value in config.items()},
        }
    )
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-c", "from server.cli import main; main()", "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer("127.0.0.1", port, project_id, token, url, tmp_path / "storage", log_path)
    try:
        _wait_healthy(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if cleanup is not None:
            cleanup()


def _wait_healthy(server: LiveServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fieldsync serve exited with {process.returncode}: {server.log_tail()}")
        try:
            if requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"fieldsync serve did not become healthy: {server.log_tail()}")


# ---------------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over one socket


def connect(server: LiveServer, timeout: float = 60.0) -> socket.socket:
    """A new TCP connection to the server (``timeout``: generous; a test never measures it)."""
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_bytes(method: str, path: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request (``Content-Length`` added when there is a body)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    all_headers = dict(headers)
    if body and "Content-Length" not in all_headers and "Transfer-Encoding" not in all_headers:
        all_headers["Content-Length"] = str(len(body))
    lines += [f"{name}: {value}" for name, value in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class RawResponse:
    """A parsed response: status, headers (lower-case names), body."""

    status: int
    headers: dict[str, str]
    body: bytes


def exchange(server: LiveServer, raw: bytes) -> RawResponse | None:
    """Send ``raw`` (a whole request) on a new connection and read its response."""
    sock = connect(server)
    try:
        sock.sendall(raw)
        return read_response(sock)
    finally:
        sock.close()


def read_response(sock: socket.socket) -> RawResponse | None:
    """Read one response from ``sock``; ``None`` when the server closed (or reset) the connection first."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except ConnectionResetError:
        return None
    return RawResponse(int(status_line.split()[1]), headers, rest[:length])


def tus_metadata(project_id: int, sha256: bytes = bytes(32)) -> str:
    """An ``Upload-Metadata`` header naming the blob's raw digest and the project."""
    b64 = base64.b64encode
    return f"sha256 {b64(sha256).decode()},project {b64(str(project_id).encode()).decode()}"


def multipart(parts: list[tuple[str, str, bytes, str]], boundary: str | None = None) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of (field, filename, content, type) parts and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    body = b""
    for field, filename, content, content_type in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
        body += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def collect_post(
    server: LiveServer,
    instance_id: str,
    photos: Mapping[str, bytes],
    *,
    named: list[str] | None = None,
    incomplete: bool = False,
) -> tuple[bytes, bytes]:
    """The request bytes of one Collect POST of the photo form (XML first, then ``photos``) and its body.

    ``named``: every photo the submission's XML names (default: those of this POST).
    """
    xml = photo_submission(instance_id, named if named is not None else list(photos))
    parts = [("xml_submission_file", "submission.xml", xml, "text/xml")]
    parts += [(name, name, content, "image/jpeg") for name, content in photos.items()]
    if incomplete:
        parts.append(("*isIncomplete*", "", b"yes", "text/plain"))
    body, content_type = multipart(parts)
    headers = {"Content-Type": content_type, "X-OpenRosa-Version": "1.0"}
    return request_bytes("POST", f"{server.collect_prefix}/submission", headers, body), body
