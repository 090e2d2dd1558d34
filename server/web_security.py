"""What a browser may do with Fieldsync: cross-site requests refused, security headers on every response.

The JSON API authenticates with HTTP Basic or bearer tokens, and a browser that once held Basic
credentials for this server sends them with any request another site makes it send. So:

- a state-changing request (not GET/HEAD/OPTIONS) whose ``Origin`` is not this server's own, or that
  the browser marks ``Sec-Fetch-Site: cross-site`` or ``same-site`` (a sibling sub-domain), is refused
  with ``403 cross_origin_refused`` before any handler runs. Phones and scripts send neither header
  and are unaffected. OpenRosa routes are left alone: ODK Collect is not a browser, and those routes
  keep their Digest/Basic challenges;
- JSON bodies must say ``Content-Type: application/json`` (``server.api.wire``): an HTML form can only
  send ``text/plain``, ``multipart/form-data`` or ``application/x-www-form-urlencoded``;
- the JSON API's ``401`` carries no ``WWW-Authenticate: Basic`` (``server.auth``), so browsers never
  prompt for, and then cache, Basic credentials for it.

Headers on every response (a view may set its own ``Content-Security-Policy``, which is kept):
``Content-Security-Policy`` (same-origin scripts, styles, images and fetches only; no inline script or
style, no framing, no plugins), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (older
browsers), ``Referrer-Policy: no-referrer`` (a device key lives in the path: a page under
``/v1/key/<token>/`` must never hand it on as a referrer), and ``Strict-Transport-Security`` only when
the request came over TLS (gunicorn honours ``X-Forwarded-Proto`` from a trusted proxy).

``TRUSTED_PROXIES`` (``FIELDSYNC_TRUSTED_PROXIES``, default 0) says how many reverse proxies stand in
front; their ``X-Forwarded-For``/``-Proto``/``-Host`` are then believed (werkzeug's ``ProxyFix``) by
everything: login throttling, HSTS, the Origin check and the console cookie's ``Secure`` flag. It is
the one proxy setting; the console's older ``FIELDSYNC_TRUST_PROXY_HEADERS=1`` is read as one proxy.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from server.errors import OPENROSA_BLUEPRINTS, ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Swagger UI and the console load their scripts, styles and icons from this server (``data:`` images
# are the icons inlined in Swagger UI's stylesheet). No 'unsafe-inline' anywhere: styles set from a
# script through the CSSOM are allowed by CSP, ``<style>`` elements and ``style=""`` attributes are not.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"
REFUSED_SITES = frozenset({"cross-site", "same-site"})
_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
_HEADERS_OVER_TLS = (*_HEADERS, ("Strict-Transport-Security", HSTS))


def security_headers(secure: bool) -> tuple[tuple[str, str], ...]:
    """The headers every response carries (HSTS only over TLS); also for answers made before Flask."""
    return _HEADERS_OVER_TLS if secure else _HEADERS


def _own_hosts() -> set[str]:
    hosts = {request.host.lower()}
    public = current_app.config.get("PUBLIC_URL")
    if public:
        hosts.add(urlsplit(str(public)).netloc.lower())
    return hosts


def is_cross_site(origin: str | None, fetch_site: str | None, own_hosts: set[str]) -> bool:
    """Tell whether a browser sent this request on behalf of another site (``Origin`` / ``Sec-Fetch-Site``)."""
    if fetch_site is not None and fetch_site.strip().lower() in REFUSED_SITES:
        return True
    if origin is None:
        return False  # not a browser (or a same-origin GET-style navigation): nothing to check
    parts = urlsplit(origin.strip())
    # "null" (sandboxed frames, file: pages) and anything that is not a plain http(s) origin is foreign.
    return parts.scheme not in ("http", "https") or parts.netloc.lower() not in own_hosts


class TrustedProxies:
    """WSGI middleware: believe as many ``X-Forwarded-*`` hops as ``TRUSTED_PROXIES`` says (read per request).

    Only that many hops are believed: a client cannot forge its address (login throttling), scheme
    (HSTS, the console cookie's ``Secure``) or host (the Origin check) past them.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wsgi_app = app.wsgi_app
        self._fixes: dict[int, ProxyFix] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Serve the request, through ``ProxyFix`` for the configured number of proxies."""
        proxies = int(self.app.config.get("TRUSTED_PROXIES") or 0)
        if proxies <= 0:
            return self.wsgi_app(environ, start_response)
        fix = self._fixes.get(proxies)
        if fix is None:
            fix = self._fixes.setdefault(
                proxies, ProxyFix(self.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
            )
        return fix(environ, start_response)


def init_app(app: Flask) -> None:
    """Refuse cross-site state changes on the JSON API and add the security headers to every response."""
    app.wsgi_app = TrustedProxies(app)  # type: ignore[method-assign]

    @app.before_request
    def _refuse_cross_site() -> None:
        if request.method in SAFE_METHODS or request.blueprint in OPENROSA_BLUEPRINTS:
            return
        origin = request.headers.get("Origin")
        if is_cross_site(origin, request.headers.get("Sec-Fetch-Site"), _own_hosts()):
            raise ApiError(
                403,
                "cross_origin_refused",
                "This request was sent by a page of another site; Fieldsync only accepts changes from its own pages",
                {"origin": origin},
            )

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in security_headers(request.is_secure):
            headers.setdefault(name, value)
        return response
