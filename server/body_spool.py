"""Every request body is read to the end before the app sees it: no transaction waits on a client.

A phone on 2G sends a body for minutes, or stops in the middle. Were the app to read it while
handling the request, whatever it had opened would wait with it: on SQLite an authentication
look-up opens ``BEGIN IMMEDIATE``, the one write lock of the database (issue "Field networks":
one stalled upload froze ``/healthz`` and every writer). This WSGI middleware reads the body first,
into memory when small and a temporary file otherwise, then calls the app with that copy: a stalled
client costs one thread and some disk, never a database connection or a lock, on any endpoint.

A body that stops early (the client closed, the connection was reset, the client went silent for
``CLIENT_SILENCE_TIMEOUT`` seconds, a broken chunked encoding) is handed on as far as it arrived,
marked in ``environ[BODY_CUT]``. Views that can keep part of a body (an OpenRosa POST's complete
parts) say so with :func:`keeps_partial_body`; every other view answers ``400 incomplete_body``
before it runs, so a cut body is never mistaken for a whole one. A view marked :func:`streams_body`
(the tus PATCH, which writes each byte where it belongs as it arrives and answers 409 before reading a
body it does not want) reads the body itself, holding no transaction meanwhile.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterable
from typing import IO, Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import ClosingIterator

from server.errors import ApiError

BODY_CUT = "fieldsync.body_cut"  # why the body ended early: "closed", "reset", "silence", "broken"
DECLARED = "fieldsync.declared_length"  # the Content-Length the client announced (None if chunked)
CLOSE_AFTER = "fieldsync.close_after"  # end the connection after this response (see close_after_response)
IN_MEMORY = 1024 * 1024  # bodies up to this size stay in memory
# Small reads: after a reset, gunicorn drops what it buffered of an unfinished read, so at most
# this many of the bytes that arrived are lost (what a tus client resends).
READ_STEP = 8 * 1024
SMALL_BODY = 32 * 1024

_PARTIAL_OK = "_fieldsync_keeps_partial_body"
_STREAMS = "_fieldsync_streams_body"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def keeps_partial_body(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``view`` as able to use a body that was cut (it reads ``environ[BODY_CUT]``)."""
    setattr(view, _PARTIAL_OK, True)
    return view


def streams_body(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``view`` as reading its body itself, as it arrives (a tus PATCH writes bytes to disk as they come).

    Such a view must hold no transaction while it reads, and must treat a read error as a cut.
    """
    setattr(view, _STREAMS, True)
    return keeps_partial_body(view)


def close_after_response() -> None:
    """End this request's connection after its response (the next request opens a new one)."""
    request.environ[CLOSE_AFTER] = True


def body_read_whole() -> None:
    """A streaming view read its whole body: the connection may carry the next request."""
    request.environ[CLOSE_AFTER] = False


def body_cut() -> str | None:
    """Why this request's body ended early, or ``None`` when it arrived whole."""
    cut: str | None = request.environ.get(BODY_CUT)
    return cut


def _cut_reason(error: BaseException) -> str:
    from server.gunicorn_worker import is_silence
    from server.request_body import UnreadableBody

    if isinstance(error, UnreadableBody) and error.__context__ is not None:
        error = error.__context__  # the socket's own error, behind request_body's guard
    if is_silence(error):
        return "silence"
    if isinstance(error, ConnectionError):
        return "reset"
    return "broken"  # gunicorn's chunked-encoding errors, a socket error of another kind


def spool_body(source: IO[bytes], declared: int | None, cap: int) -> tuple[IO[bytes], int, str | None]:
    """Copy at most ``cap + 1`` bytes of ``source``; return the copy (at 0), its size and why it ended early."""
    target: IO[bytes] = (
        io.BytesIO() if declared is not None and declared <= IN_MEMORY else tempfile.SpooledTemporaryFile(IN_MEMORY)  # noqa: SIM115  (closed after the response, see BodySpool)
    )
    want = min(declared, cap + 1) if declared is not None else cap + 1
    # A small body (a submission without photos: the hot path) in one read; a cut one has nothing to keep.
    step = want if want <= SMALL_BODY else READ_STEP
    received = 0
    cut: str | None = None
    try:
        while received < want:
            chunk = source.read(min(step, want - received))
            if not chunk:
                break
            target.write(chunk)
            received += len(chunk)
    except Exception as error:  # the socket's errors, gunicorn's parser errors: the body ends here
        cut = _cut_reason(error)
    if cut is None and declared is not None and received < declared and received <= cap:
        cut = "closed"
    target.seek(0)
    return target, received, cut


class BodySpool:
    """WSGI middleware: read the body first (see the module docstring), then call the app."""

    def __init__(self, app: WSGIApp, cap: int, streams: Callable[[dict[str, Any]], bool]) -> None:
        self.app = app
        self.cap = cap
        self.streams = streams

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Spool the body of ``environ`` and call the app with the copy."""

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get(CLOSE_AFTER):
                _closing(start_response)
            return start_response(status, headers, exc_info)

        raw_length = environ.get("CONTENT_LENGTH") or ""
        declared = int(raw_length) if raw_length.isdigit() else None
        # gunicorn marks every body ``wsgi.input_terminated``; only one without a length is read to its end.
        chunked = declared is None and (
            bool(environ.get("wsgi.input_terminated")) or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        )
        if (declared is None or declared == 0) and not chunked:
            return self.app(environ, start)
        if self.streams(environ):
            # Until the view says it read the whole body, unread bytes may be left: close after the answer
            # rather than let the server read (and the link carry) a body nobody wants.
            environ[CLOSE_AFTER] = True
            return self.app(environ, start)
        if declared is not None and declared > self.cap:
            # Refused from its headers alone (413): not worth reading.
            environ[CLOSE_AFTER] = True
            return self.app(environ, start)
        spool, received, cut = spool_body(environ["wsgi.input"], None if chunked else declared, self.cap)
        environ["wsgi.input"] = spool
        environ["CONTENT_LENGTH"] = str(received)
        environ.pop("wsgi.input_terminated", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ[DECLARED] = None if chunked else declared
        environ[BODY_CUT] = cut
        if cut is not None or received > self.cap:
            environ[CLOSE_AFTER] = True
        return ClosingIterator(self.app(environ, start), [spool.close])


def _closing(start_response: StartResponse) -> StartResponse:
    """Close the connection after this response: its request left unread (or unreadable) bytes behind."""
    server_response = getattr(start_response, "__self__", None)
    force_close = getattr(server_response, "force_close", None)  # gunicorn's Response
    if callable(force_close):
        force_close()
    return start_response


def init_app(app: Flask) -> None:
    """Spool every request body of ``app``; refuse a cut body unless the view keeps partial bodies."""

    streaming_methods: set[str] = set()

    def streams(environ: dict[str, Any]) -> bool:
        # Only the methods of streaming views need the URL matched (every POST did: 7 % of a submission's CPU).
        if not streaming_methods:
            streaming_methods.add("")  # computed once: the URL map is complete before the first request
            for rule in app.url_map.iter_rules():
                if getattr(app.view_functions.get(rule.endpoint), _STREAMS, False):
                    streaming_methods.update(rule.methods or ())
        if environ.get("REQUEST_METHOD") not in streaming_methods:
            return False
        try:
            endpoint, _ = app.url_map.bind_to_environ(environ).match()
        except HTTPException:
            return False
        return bool(getattr(app.view_functions.get(str(endpoint)), _STREAMS, False))

    app.wsgi_app = BodySpool(app.wsgi_app, int(app.config["MAX_CONTENT_LENGTH"]), streams)  # type: ignore[method-assign]

    @app.before_request
    def _refuse_cut_body() -> None:
        if request.environ.get(BODY_CUT) is None:
            return
        view = app.view_functions.get(request.endpoint or "")
        if not getattr(view, _PARTIAL_OK, False):
            raise ApiError(400, "incomplete_body", "The body was cut; nothing was stored")
