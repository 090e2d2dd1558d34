"""A form version's preview in ODK Web Forms, and the browser files it needs, served from ``node_modules``.

The files come from the npm registry at set-up (``package.json``: ``@getodk/web-forms`` and its peer
``vue``) and are never copied into the repository; without them the preview page says so. Only two
folders are served, and only their files: nothing else of ``node_modules`` is reachable.
"""

from __future__ import annotations

import base64
import hashlib
import json

from flask import Response, abort, send_from_directory, url_for

from server.auth import require
from server.config import PROJECT_ROOT
from server.console import bp
from server.console.pages import render
from server.services import forms as forms_svc
from server.services import overview
from server.store import db_session

NODE_MODULES = PROJECT_ROOT / "node_modules"
ASSETS = {
    "web-forms": NODE_MODULES / "@getodk" / "web-forms" / "dist",
    "vue": NODE_MODULES / "vue" / "dist",
}
VUE_BUILD = "vue.runtime.esm-browser.prod.js"  # Web Forms' components are compiled: no template compiler


def assets_installed() -> bool:
    """Tell whether ``make install`` has put the preview's browser files in place."""
    return (ASSETS["web-forms"] / "index.js").exists() and (ASSETS["vue"] / VUE_BUILD).exists()


@bp.get("/console/assets/<package>/<path:filename>")
def asset(package: str, filename: str) -> Response:
    """Serve a file of one of the npm packages the preview uses (cached: their names carry versions)."""
    folder = ASSETS.get(package)
    if folder is None or not folder.is_dir():
        abort(404)
    response = send_from_directory(folder, filename, max_age=86400)
    return response


def _import_map() -> str:
    return json.dumps({"imports": {"vue": url_for("console.asset", package="vue", filename=VUE_BUILD)}})


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/preview")
def preview(project_id: int, xml_form_id: str, version: str) -> tuple[str, int]:
    """A version's form, filled in the browser with ODK Web Forms (nothing is sent to the server)."""
    require("form.read", project_id)
    session = db_session()
    forms_svc.version_xform(session, project_id, xml_form_id, version)  # 404 for an unknown version
    return render(
        "preview.html",
        project=overview.get_project(session, project_id),
        form=forms_svc.describe_form(session, project_id, xml_form_id),
        version=version,
        installed=assets_installed(),
    )


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/preview/frame")
def preview_frame(project_id: int, xml_form_id: str, version: str) -> Response:
    """The frame Web Forms runs in: its own page, so its styles never reach the console's."""
    require("form.read", project_id)
    language, direction = overview.form_direction(db_session(), project_id, xml_form_id, version)
    import_map = _import_map()
    body, status = render(
        "preview_frame.html",
        project_id=project_id,
        xml_form_id=xml_form_id,
        version=version,
        import_map=import_map,
        form_language=language,
        form_direction=direction,
    )
    response = Response(body, status=status, mimetype="text/html")
    digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    # The engine compiles its XPath parser from WebAssembly held in data: URLs; the import map is inline.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'sha256-{digest}' 'wasm-unsafe-eval'; "
        "connect-src 'self' data:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "font-src 'self' data:; frame-ancestors 'self'"
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
