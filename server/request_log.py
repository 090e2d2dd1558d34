"""Structured request logging: one JSON line per request with method, path, status and duration."""

from __future__ import annotations

import json
import logging
import re
import time

from flask import Flask, Response, g, request

log = logging.getLogger("fieldsync.request")

# A device token travels in the path (``/v1/key/<token>/...``, as in ODK Central): whatever a log line
# holds (a path, a request line, a referer), the segment after ``/key/`` never reaches it.
_PATH_TOKEN = re.compile(r"(/key/)[^/?#\s]+")


def init_app(app: Flask) -> None:
    """Log every request of ``app`` as one JSON line (when ``LOG_REQUESTS`` is on)."""
    if not app.config.get("LOG_REQUESTS", True):
        return
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        started = g.get("request_started")
        principal = g.get("principal")
        log.info(
            json.dumps(
                {
                    "event": "request",
                    "method": request.method,
                    # Device tokens travel in the path: never write them to the log.
                    "path": redact_tokens(request.path),
                    "status": response.status_code,
                    "ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                    "actor": principal.actor if principal is not None else None,
                    "device_id": request.args.get("deviceID"),
                    "bytes_in": request.content_length,
                },
                ensure_ascii=False,
            )
        )
        return response


def redact_tokens(text: str) -> str:
    """Replace every device token in a path, URL or request line with ``***``."""
    return _PATH_TOKEN.sub(r"\1***", text)
