"""gunicorn's threaded worker with a limit on client silence (``fieldsync serve`` uses it).

gunicorn reads a request's headers and body with blocking socket calls and no timeout: a client
that sends half its headers, or half its body, and then nothing, holds a worker thread until it
closes (issue "Field networks": five such sockets froze a server for minutes). This worker sets the
kernel's receive and send timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``) on every client socket it hands
to a thread: a ``recv`` that waits longer than ``CLIENT_SILENCE_TIMEOUT`` seconds fails with
``EAGAIN``. gunicorn then closes a connection whose headers stalled; a stalled body is seen by
:mod:`server.body_spool`, which ends the request. Python's own socket timeout cannot be used:
gunicorn resets it (``setblocking``) before every request; the kernel options survive that.

Waiting *between* requests is not silence: kept-alive connections sit in gunicorn's poller, not in
a thread, for ``--keep-alive`` seconds.

gunicorn closes a connection gracefully (FIN, then up to 2 s reading until the client closes too) in
its event loop's thread, so while it lingers no other connection is accepted or answered: ten silent
clients ended by the limit froze the worker for 20 s (``python -m bench.stalled_clients``). This worker
lingers in a pool of its own instead.

A kept-alive connection goes back to the event loop after each answer: the thread's future calls
back through gunicorn's pipe, the event loop re-registers the socket, wakes when the next request
arrives and hands it to a thread again. For a client that sends its requests back to back (Collect
sending its queue of finalized forms, an office relay forwarding a backlog) that round trip costs
about as much CPU as parsing the request. So a thread that has just answered waits up to
``NEXT_REQUEST_WAIT`` for the connection's next request and serves it itself; it does not wait when
another connection is already queued for a thread, when the worker is stopping, or for HTTP/2. A
client that is slower than that (a phone on 2G) goes back to the event loop as before.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from server.serving import SILENCE_ENV

DEFAULT_SILENCE = 30.0
# How long a thread that has just answered waits for the connection's next request (module docstring).
NEXT_REQUEST_WAIT = 0.002


def silence_limit() -> float:
    """The silence limit in seconds, as ``fieldsync serve`` passed it to the workers."""
    try:
        return max(float(os.environ.get(SILENCE_ENV, DEFAULT_SILENCE)), 0.1)
    except ValueError:
        return DEFAULT_SILENCE


def apply_silence_limit(sock: socket.socket, seconds: float) -> None:
    """Make blocking ``recv``/``send`` on ``sock`` fail after ``seconds`` without progress."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def is_silence(error: BaseException) -> bool:
    """Tell whether ``error`` is a socket call that timed out under the silence limit."""
    return isinstance(error, TimeoutError | BlockingIOError) or (
        isinstance(error, OSError) and error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT)
    )


class _SilentClients(logging.Filter):
    """gunicorn logs a traceback for a socket error it does not know; a silent client gets one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and is_silence(error):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "closed a connection whose client stayed silent (headers not complete)",
                (),
                None,
                None,
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class SilenceLimitedWorker(ThreadWorker):
    """``gthread`` whose client sockets time out after ``CLIENT_SILENCE_TIMEOUT`` seconds of silence."""

    def init_process(self) -> None:
        """Read the limit once per worker, then start as gthread does."""
        self.silence = silence_limit()
        self.closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="close")
        self.log.error_log.addFilter(_SilentClients())
        super().init_process()

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        """A connection to close is closed (lingering for the client's FIN) off the event loop's thread."""
        try:
            keep = fs.result() if not fs.cancelled() else False
        except Exception:
            keep = False
        if keep:  # kept alive, or deferred to the poller: gunicorn's own handling
            super().finish_request(conn, fs)
            return
        self.nr_conns -= 1
        self.closer.submit(_close_gracefully, conn)

    def enqueue_req(self, conn: Any) -> None:
        """Before a thread first reads this connection, bound how long it may wait for bytes (kept by the socket)."""
        if not getattr(conn, "silence_limited", False):
            with contextlib.suppress(OSError):  # the client is gone already: the thread finds out and closes
                apply_silence_limit(conn.sock, self.silence)
                conn.silence_limited = True
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        """Serve the connection's request, then the next ones that follow at once (module docstring)."""
        kept = super().handle(conn)
        while kept is True and self._next_request_follows(conn):
            kept = super().handle(conn)
        return kept

    def _next_request_follows(self, conn: Any) -> bool:
        if not self.alive or conn.is_http2:
            return False
        if conn.parser is not None and conn.parser.unreader.buf.getvalue():
            return True  # its bytes were read with the previous body: the socket would not wake the poller
        queue = getattr(self.tpool, "_work_queue", None)
        if queue is None or queue.qsize():
            return False  # another connection waits for a thread (or the pool is not one we know)
        try:
            readable, _, _ = select.select([conn.sock], [], [], NEXT_REQUEST_WAIT)
        except (OSError, ValueError):  # closed meanwhile: the event loop's path finds out
            return False
        return bool(readable)


def _close_gracefully(conn: Any) -> None:
    with contextlib.suppress(Exception):  # the client is gone: nothing to tell anyone
        conn.close(graceful=True)
