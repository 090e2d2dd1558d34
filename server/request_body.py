"""A request body the WSGI server cannot read is the client's fault: 400, never 500.

The WSGI server decodes ``Transfer-Encoding: chunked`` while the app reads the body; a size line that
is not hexadecimal (``zz``) makes that read raise in the middle of a handler: gunicorn's
``InvalidChunkSize`` (a ``ParseException``, which Werkzeug's ``LimitedStream`` does not catch: 500 on
every endpoint, issue 15, row 9), or the development server's ``OSError("Invalid chunk header")``.
The app reads its input through :class:`GuardedInput`, which turns those errors into
:class:`UnreadableBody`: a ``ClientDisconnected``, so every handler that already treats a cut body as
"nothing stored, 400" treats this one the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from flask import Flask
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

# What a WSGI server's body reader raises on bytes it cannot decode.
_READ_ERRORS = (OSError, ValueError, ParseException)
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class UnreadableBody(ClientDisconnected):
    """The body's transfer encoding does not parse."""

    description = "The request body cannot be read (its chunked transfer encoding is malformed): nothing was stored"


class GuardedInput:
    """``wsgi.input`` whose read errors are the client's (``UnreadableBody``)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes."""
        try:
            return self._stream.read(size)
        except _READ_ERRORS:
            raise UnreadableBody() from None

    def readline(self, size: int = -1) -> bytes:
        """Read one line."""
        try:
            return self._stream.readline(size)
        except _READ_ERRORS:
            raise UnreadableBody() from None

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer``; return how many bytes were read."""
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Read every line."""
        try:
            return self._stream.readlines(hint)
        except _READ_ERRORS:
            raise UnreadableBody() from None

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def init_app(app: Flask) -> None:
    """Read every request body of ``app`` through ``GuardedInput``."""
    inner: WsgiApp = app.wsgi_app

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        stream = environ.get("wsgi.input")
        if stream is not None:
            environ["wsgi.input"] = GuardedInput(stream)
        return inner(environ, start_response)

    app.wsgi_app = guarded  # type: ignore[method-assign]
