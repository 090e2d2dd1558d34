"""What every OpenRosa response carries: headers, XML content type, ETags and 304s, message envelopes.

Collect refuses a formList, manifest or integrity answer without ``X-OpenRosa-Version`` or whose
``Content-Type`` lacks ``text/xml`` (docs/reference/peers.md §4), so one ``after_request`` hook on the
``openrosa`` blueprint sets the headers on every answer, errors included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

from flask import Response, current_app, g, request

from server.errors import openrosa_message_xml
from server.openrosa.blueprint import bp

XML_CONTENT_TYPE = "text/xml; charset=utf-8"
OPENROSA_VERSION = "1.0"


def xml_response(body: bytes | str, status: int = 200, etag: str | None = None) -> Response:
    """Answer with an XML body; with ``etag``, answer ``304`` when the client already has it."""
    if etag is not None and request.if_none_match.contains(etag):
        response = Response(status=304)
        response.set_etag(etag)
        return response
    response = Response(body, status=status, content_type=XML_CONTENT_TYPE)
    if etag is not None:
        response.set_etag(etag)
    return response


def message_response(message: str, status: int = 200, nature: str = "") -> Response:
    """Answer with an ``OpenRosaResponse`` envelope holding one message."""
    return xml_response(openrosa_message_xml(message, nature), status)


def etag_of(*parts: str | bytes) -> str:
    """Return a strong ETag built from the parts that decide a response's content."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()[:40]


def add_challenges(*challenges: str) -> None:
    """Ask the response hook to send each challenge as its own ``WWW-Authenticate`` header.

    One header per scheme: Collect's Digest authenticator reads the first header value that starts
    with ``Digest`` and would misparse a combined ``Digest ..., Basic ...`` value.
    """
    g.openrosa_challenges = list(challenges)


def advertised_content_length(config: Mapping[str, Any] | None = None) -> int:
    """What Collect is told to keep each POST under: about one photo, never above what is accepted."""
    config = current_app.config if config is None else config
    return min(int(config["OPENROSA_ACCEPT_CONTENT_LENGTH"]), int(config["MAX_SUBMISSION_BYTES"]))


def openrosa_headers(config: Mapping[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    """``X-OpenRosa-Version`` and ``X-OpenRosa-Accept-Content-Length``; also for answers made before Flask."""
    accept = str(advertised_content_length(config))
    return ("X-OpenRosa-Version", OPENROSA_VERSION), ("X-OpenRosa-Accept-Content-Length", accept)


# The HTTP servers Fieldsync runs under write a Date header on every response themselves: gunicorn
# drops the app's own (it counts Date as its header) after it was formatted for nothing, and
# werkzeug's development server would send both, a repeated singleton field (RFC 9110 6.6.1).
# Anywhere else (a WSGI test client, another server) the app writes it.
_SERVERS_SENDING_DATE = ("gunicorn/", "werkzeug/")


def date_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``Date`` header OpenRosa requires, unless the WSGI server in ``environ`` writes one itself."""
    if str(environ.get("SERVER_SOFTWARE", "")).lower().startswith(_SERVERS_SENDING_DATE):
        return []
    return [("Date", formatdate(usegmt=True))]


@bp.after_request
def add_openrosa_headers(response: Response) -> Response:
    """Set the OpenRosa headers on every response of the blueprint (errors and 304s included)."""
    for name, value in openrosa_headers(current_app.config):
        response.headers[name] = value
    if "Date" not in response.headers:
        response.headers.extend(date_headers(request.environ))
    challenges: list[str] | None = g.get("openrosa_challenges")
    if response.status_code == 401 and challenges:
        response.headers.pop("WWW-Authenticate", None)
        for challenge in challenges:
            response.headers.add("WWW-Authenticate", challenge)
    return response
