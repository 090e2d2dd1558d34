"""Cookie sessions and CSRF tokens for the console's pages only.

OpenRosa and the JSON API stay cookie-free (a signing serializer per request costs about 2 % of a
submission's CPU, and a phone never needs a cookie): the session interface opens a cookie session only
when the request's first path segment is one the console's URL rules start with, and gives every other
request Flask's null session. The cookie is ``HttpOnly``, ``SameSite=Lax``, and ``Secure`` whenever the
request came over TLS (directly, or through one of ``TRUSTED_PROXIES`` that says so with
``X-Forwarded-Proto``: ``server/web_security.py`` decides which headers are believed).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Flask, Request, Response, request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from server.errors import ApiError

CSRF_FIELD = "csrf_token"


class ConsoleSessions(SecureCookieSessionInterface):
    """Signed cookie sessions on the console's paths; the null session (no cookie) everywhere else."""

    def __init__(self, first_segments: frozenset[str]) -> None:
        self.first_segments = first_segments

    def is_console_path(self, path: str) -> bool:
        """Tell whether ``path`` belongs to the console (its first segment starts a console rule)."""
        return path.split("/", 2)[1] in self.first_segments

    def open_session(self, app: Flask, request: Request) -> Any:
        """Open the signed cookie session on console paths only."""
        if not self.is_console_path(request.path):
            return None
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write the cookie (HttpOnly, SameSite=Lax, Secure behind TLS) on console paths only."""
        if not self.is_console_path(request.path):
            return
        super().save_session(app, session, response)

    def get_cookie_secure(self, app: Flask) -> bool:
        """``Secure`` when this request came over TLS, so the cookie never travels in clear afterwards."""
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def csrf_token() -> str:
    """Return this session's CSRF token (created on first use), for a hidden field of every POST form."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf() -> None:
    """Refuse a POST whose form does not carry this session's CSRF token (``400 csrf_failed``)."""
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise ApiError(400, "csrf_failed", "The form has expired: reload the page and send it again")


def init_app(app: Flask, first_segments: frozenset[str]) -> None:
    """Install the console-only session interface and the session cookie's flags."""
    app.config["SESSION_COOKIE_NAME"] = "fieldsync_console"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.session_interface = ConsoleSessions(first_segments)
