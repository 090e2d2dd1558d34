"""A real HTTP receiver on loopback for the webhook tests and bench: records every request, answers as told.

``Receiver.plan`` decides each answer: a callable taking the request's headers (lower-case names) and returning one of
``("status", code)``, ``("sleep", seconds)`` (answer 200 after that long, usually past the client's
timeout), ``("drop", None)`` (close the connection without an answer), or ``("hold", None)`` (count the
message as received, then never answer: the dispatcher is killed meanwhile).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Plan = Callable[[dict[str, str]], tuple[str, Any]]


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None  # the status sent, None when no answer was sent
    verified: Any = None  # what ``Receiver.verify`` returned for it (checked on arrival, as a receiver must)


@dataclass
class Receiver:
    """A threaded HTTP server on 127.0.0.1 and what it received."""

    plan: Plan = field(default=lambda _headers: ("status", 200))
    # Called with (path, headers, body) on arrival; its result or the error it raised is kept on the request.
    verify: Callable[[str, dict[str, str], bytes], Any] | None = None
    requests: list[Received] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    def start(self, port: int = 0) -> Receiver:
        """Listen (on ``port``, or a free one) in a daemon thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                action, value = receiver.plan(headers)
                verified: Any = None
                if receiver.verify is not None:
                    try:
                        verified = receiver.verify(self.path, headers, body)
                    except Exception as exc:  # kept for the check: a request that does not verify
                        verified = exc
                answered: int | None = None
                if action == "status":
                    answered = int(value)
                elif action == "sleep":
                    time.sleep(float(value))
                    answered = 200
                elif action == "hold":
                    answered = 200  # processed: only the answer never leaves
                with receiver.lock:
                    receiver.requests.append(Received(self.path, headers, body, answered, verified))
                if action == "hold":
                    receiver.held.set()
                    time.sleep(30)
                    return
                if answered is None:
                    self.close_connection = True
                    return
                self.send_response(answered)
                if answered == 302:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are then refused until ``start`` again)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        """The URL of the receiver's hook."""
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx (or held after being processed), in arrival order."""
        with self.lock:
            return [r for r in self.requests if r.answered is not None and 200 <= r.answered < 300]
