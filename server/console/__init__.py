"""The web console: server-rendered pages for admins and managers, in French, Arabic and English.

A door like ``server/api/`` and ``server/openrosa/``: each view parses a form with marshmallow, calls a
service, and renders a template or redirects (POST-redirect-GET). Permissions are the API's: the signed-in
user becomes the request's ``Principal`` so ``server.auth.require`` decides exactly as for a JSON call.
Every page works without JavaScript; ``static/console.js`` only enhances (drag and drop, upload progress,
auto-submitting the language menu).
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)


def init_app(app: Flask) -> None:
    """Set up the console's languages and its cookie sessions (on its own paths only)."""
    from server.console import i18n, sessions

    i18n.init_app(app)
    first_segments = frozenset(
        rule.rule.split("/", 2)[1] for rule in app.url_map.iter_rules() if rule.endpoint.startswith("console.")
    )
    sessions.init_app(app, first_segments)


from server.console import (  # noqa: E402,F401  (routes)
    pages,
    views_dashboard,
    views_entities,
    views_exports,
    views_forms,
    views_held,
    views_people,
    views_preview,
    views_projects,
    views_relay,
    views_submissions,
    views_webhooks,
)
