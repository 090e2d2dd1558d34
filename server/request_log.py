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


def enabled(app: Flask) -> bool:
    """Whether ``app`` logs its requests (``LOG_REQUESTS``, on by default)."""
    return bool(app.config.get("LOG_REQUESTS", True))


def log_request(
    method: str,
    path: str,
    status: int,
    ms: float | None,
    actor: str | None,
    device_id: str | None,
    bytes_in: int | None,
) -> None:
    """Write one request's JSON line (the token in ``path`` redacted); also for answers made before Flask."""
    log.info(
        json.dumps(
            {
                "event": "request",
                "method": method,
                # Device tokens travel in the path: never write them to the log.
                "path": redact_tokens(path),
                "status": status,
                "ms": ms,
                "actor": actor,
                "device_id": device_id,
                "bytes_in": bytes_in,
            },
            ensure_ascii=False,
        )
    )


def init_app(app: Flask) -> None:
    """Log every request of ``app`` as one JSON line (when ``LOG_REQUESTS`` is on)."""
    if not enabled(app):
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
        log_request(
            request.method,
            request.path,
            response.status_code,
            round((time.perf_counter() - started) * 1000, 2) if started else None,
            principal.actor if principal is not None else None,
            request.args.get("deviceID"),
            request.content_length,
        )
        return response


def redact_tokens(text: str) -> str:
    """Replace every device token in a path, URL or request line with ``***``."""
    return _PATH_TOKEN.sub(r"\1***", text)
