"""Fieldsync's shell: the Flask app factory, HTTP, the store, transactions and jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Request
from flask.sessions import SessionInterface


class _NoCookieSessions(SessionInterface):
    """Fieldsync keeps no state in cookies: every request gets Flask's null session, for free.

    Flask's default interface builds a signing serializer on every request (about 2% of an OpenRosa
    submission's CPU) only to find no cookie.
    """

    def open_session(self, app: Flask, request: Request) -> None:
        """No cookie session: Flask then uses its null session."""
        return None

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        """Nothing to save."""


def create_app(config: Mapping[str, Any] | None = None, *, http: bool = True) -> Flask:
    """Build the Flask app: defaults, then the environment, then ``config`` (tests).

    ``http=False`` builds it without its URL rules and request log, for the command line: importing
    every door (pyxform, openpyxl ...) would double the start-up of a command that serves nothing.
    """
    from server import blobstore, body_spool, errors, request_body, request_log, request_text, store, web_security
    from server.blueprints import register_blueprints
    from server.config import load_config
    from server.database_ids import DatabaseIdConverter

    app = Flask(__name__, static_folder=None)
    app.url_map.converters["int"] = DatabaseIdConverter  # before any rule: ids the store can hold
    app.config.update(load_config(config))
    app.session_interface = _NoCookieSessions()
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = (
        max(
            int(app.config["MAX_SUBMISSION_BYTES"]),
            int(app.config["MAX_FORM_BYTES"]),
            int(app.config["MAX_PUSH_BYTES"]),
        )
        + 1024 * 1024
    )
    blobstore.check_config(app.config)
    errors.init_app(app)
    if http:
        from server.openrosa import submission_shortcut

        # Inside the body spool (the body has arrived whole), in front of Flask.
        submission_shortcut.init_shortcut(app)
    body_spool.init_app(app)  # before any view: bodies are read whole before a transaction can open
    store.init_app(app)
    if http:
        from server import console, metrics

        request_log.init_app(app)
        request_body.init_app(app)
        request_text.init_app(app)
        from server.openrosa.formlist import init_shortcut

        init_shortcut(app)  # inside TrustedProxies: it sees the host and scheme the proxies vouch for
        web_security.init_app(app)
        metrics.init_app(app)
        register_blueprints(app)
        # After the blueprints: the console's cookie sessions replace _NoCookieSessions on its paths only.
        console.init_app(app)
    return app
