"""OpenRosa form serving for ODK Collect and Enketo: formList, form download, manifest, media, entity integrity.

Each route answers under ``/v1/projects/<p>/`` (Digest or Basic challenge) and under
``/v1/key/<token>/projects/<p>/`` (device token in the path), as docs/OPENROSA.md sets out; the
rules followed are those of docs/reference/peers.md §4 (namespaces, required children, ``md5:``
hashes of the exact bytes served, ``type="entityList"`` with ``integrityUrl``). Access needs
``submission.create``: the formList holds only the forms the caller may fill.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape, quoteattr

from flask import Flask, Response, current_app, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import SecurityError
from werkzeug.http import parse_etags, quote_etag
from werkzeug.wsgi import get_current_url

from server import metrics, request_log
from server.api.downloads import content_disposition
from server.auth import use_is_recent
from server.blobstore import blob_store
from server.database_ids import parse_database_id
from server.db.queries.forms import DeviceTokenRow, FormListRow
from server.db.transaction import read_without_transaction
from server.openrosa.auth import COLLECT_PERMISSION, adopt_device, live_device, require_openrosa
from server.openrosa.blueprint import bp
from server.openrosa.responses import XML_CONTENT_TYPE, date_headers, etag_of, openrosa_headers, xml_response
from server.passwords import token_hash
from server.services import forms as svc
from server.store import db_session, get_store
from server.web_security import security_headers

XFORMS_LIST_NS = "http://openrosa.org/xforms/xformsList"
MANIFEST_NS = "http://openrosa.org/xforms/xformsManifest"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _routes(suffix: str) -> list[str]:
    return [f"/v1/projects/<int:project_id>{suffix}", f"/v1/key/<token>/projects/<int:project_id>{suffix}"]


def _base_url(project_id: int, token: str | None) -> str:
    """Return the absolute server URL the caller used (token or not), for downloadUrl and friends."""
    return _base_under(current_app.config.get("PUBLIC_URL") or request.host_url, project_id, token)


def _base_under(root: str, project_id: int, token: str | None) -> str:
    base = root.rstrip("/")
    if token is not None:
        return f"{base}/v1/key/{quote(token, safe='')}/projects/{project_id}"
    return f"{base}/v1/projects/{project_id}"


def _segment(value: str) -> str:
    return quote(value, safe="")


def _text(tag: str, value: str) -> str:
    return f"<{tag}>{escape(value)}</{tag}>"


def _add_routes(suffix: str, view: Callable[..., Response], endpoint: str) -> None:
    for rule in _routes(suffix):
        bp.add_url_rule(rule, endpoint=f"{endpoint}_{'key' if '/key/' in rule else 'user'}", view_func=view)


@dataclass(frozen=True, slots=True)
class _Listing:
    """A rendered formList document and the project stamp it was read at (or before)."""

    stamp: int
    body: bytes
    etag: str


_Key = tuple[int, str | None, str]  # project, formID filter, base URL (which holds a device's token)
_V = TypeVar("_V")


class _Bounded(Generic[_V]):
    """A process's dict by ``_Key``, emptied when it holds ``capacity`` entries (threads of one worker share
    it; each read and write is atomic)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._entries: dict[_Key, _V] = {}

    def peek(self, key: _Key) -> _V | None:
        """Return what is kept for ``key``, if anything."""
        return self._entries.get(key)

    def put(self, key: _Key, value: _V) -> None:
        """Keep ``value`` for ``key``."""
        if len(self._entries) >= self.capacity:
            self._entries.clear()
        self._entries[key] = value

    def drop(self, key: _Key) -> None:
        """Forget what is kept for ``key``."""
        self._entries.pop(key, None)


class FormListCache(_Bounded[_Listing]):
    """This process's rendered formList documents, by project, ``formID`` filter and base URL (so per device).

    Valid while the project's stamp (one indexed row, read with the caller's token) has not moved; the
    stamp moves in the transaction of every change a formList shows, so a publish is visible to the
    next request on every process and host. Bounded: emptied when it holds too many documents.
    """

    def get(self, key: _Key, stamp: int) -> _Listing | None:
        """Return the document cached for ``key`` if it was read at ``stamp``."""
        found = self.peek(key)
        return found if found is not None and found.stamp == stamp else None


_cache = FormListCache()


def form_list(project_id: int, token: str | None = None) -> Response:
    """``GET formList``: the open, published forms (``?formID=`` filters; ``deviceID`` is accepted)."""
    form_id = request.args.get("formID") or None
    session = db_session()
    stamp = _device_stamp(session, project_id, token) if token is not None else None
    if stamp is None:
        # Not a live device token of this project: the general path authenticates (or answers 401/403).
        require_openrosa(COLLECT_PERMISSION, project_id, token)
        stamp = svc.formlist_stamp(session, project_id)
    base = _base_url(project_id, token)
    key = (project_id, form_id, base)
    listing = _cache.get(key, stamp)
    if listing is None:
        # Read after the stamp: the rows are at least as new as it, so a later stamp never finds them stale.
        if token is None:
            rows = svc.form_list(session, project_id, form_id)
        else:  # a device token's own list (an app user's assigned forms; the key holds the token)
            rows = svc.device_form_list(session, token_hash(token), project_id, form_id)
        body = _render(base, rows)
        listing = _Listing(stamp, body, etag_of(body))
        _cache.put(key, listing)
    return xml_response(listing.body, etag=listing.etag)


def _render(base: str, rows: list[FormListRow]) -> bytes:
    parts = [_XML_DECLARATION, f'<xforms xmlns="{XFORMS_LIST_NS}">']
    for row in rows:
        form_url = f"{base}/forms/{_segment(row.xml_form_id)}"
        parts.append("<xform>")
        parts.append(_text("formID", row.xml_form_id))
        parts.append(_text("name", row.title or row.xml_form_id))
        parts.append(_text("version", row.version))
        parts.append(_text("hash", f"md5:{row.xform_md5}"))
        parts.append(_text("downloadUrl", f"{form_url}.xml"))
        if row.has_manifest:
            parts.append(_text("manifestUrl", f"{form_url}/manifest"))
        parts.append("</xform>")
    parts.append("</xforms>")
    return "".join(parts).encode("utf-8")


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FORM_LIST_KEY_RULE = "/v1/key/<token>/projects/<int:project_id>/formList"
# The device-token formList as Collect asks for it; any other spelling is left to the full app.
_KEY_FORM_LIST = re.compile(r"/v1/key/([A-Za-z0-9_\-]+)/projects/([0-9]{1,19})/formList")
_STATUS_LINES = {200: "200 OK", 304: "304 NOT MODIFIED"}


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    actor: str
    device_id: str | None


@dataclass(frozen=True, slots=True)
class _Checked:
    """A token row and cached document found valid together at ``generation`` of the change listener."""

    generation: int
    listing: _Listing
    row: DeviceTokenRow


class FormListShortcut:
    """WSGI middleware: a device's unchanged formList answered from this process's cache, before Flask runs.

    Profiled in-process (a cached answer to the device-token URL, PostgreSQL): of about 650 µs of CPU
    per request, Flask's request context, routing, hooks and response object took about 400 µs and
    the ORM session about 190 µs around a 60 µs read of the token and the stamp. Collect repeats this
    request more than any other, so it is answered here when everything the full app checks holds:
    a document cached for this project, ``formID`` and server URL; the token row and the project's
    stamp read in one query (so a publish, a state change or a revoked key made on any process or
    host is seen at once) or, on PostgreSQL, taken from the last such read while this process's
    change listener vouches that nothing they depend on was committed since (``server.db.change_listener``:
    no database round trip at all for a phone asking again); a live device key of this project with
    ``submission.create``; its ``last_used_at`` recent (nothing to write); the stamp the document was
    rendered at. The answer carries the full app's headers (``security_headers``,
    ``openrosa_headers``), is counted in the request metrics and logged like any other request.
    Anything else (no cached document, a moved stamp, another key, a body, credentials, a query that
    is not plain text, another URL spelling) goes to the full app, which answers and fills the cache.
    """

    def __init__(self, app: Flask, inner: WsgiApp) -> None:
        self.app = app
        self.inner = inner
        self.enabled = True
        self.log_requests = request_log.enabled(app)
        self._host_urls: dict[tuple[str, str, str, str], str] = {}
        # Token rows and documents checked together, by the cache's key: the listener's generation vouches for them.
        self._checked: _Bounded[_Checked] = _Bounded()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer a cached formList, or hand the request to the full app."""
        started = time.perf_counter()
        answer = self._answer(environ) if self.enabled else None
        if answer is None:
            return self.inner(environ, start_response)
        start_response(_STATUS_LINES[answer.status], answer.headers)
        seconds = time.perf_counter() - started
        metrics.observe_request("GET", FORM_LIST_KEY_RULE, answer.status, seconds)
        if self.log_requests:
            ms = round(seconds * 1000, 2)
            request_log.log_request(
                "GET", environ["PATH_INFO"], answer.status, ms, answer.actor, answer.device_id, None
            )
        return [answer.body]

    def _answer(self, environ: dict[str, Any]) -> _Answer | None:
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("CONTENT_LENGTH", "") not in ("", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
            or "HTTP_AUTHORIZATION" in environ
        ):
            return None
        match = _KEY_FORM_LIST.fullmatch(environ.get("PATH_INFO", ""))
        project_id = parse_database_id(match.group(2)) if match is not None else None
        query = plain_query(environ.get("QUERY_STRING", ""))
        root = self.app.config.get("PUBLIC_URL") or self._host_url(environ)
        if match is None or project_id is None or query is None or not root:
            return None
        token = match.group(1)
        form_id, device_id = query
        key = (project_id, form_id, _base_under(root, project_id, token))
        listing = _cache.peek(key)
        if listing is None:
            return None
        store = get_store(self.app)
        generation = store.change_generation()  # before the read: a change told after it drops what is kept
        checked = self._checked.peek(key) if generation is not None else None
        if checked is not None and checked.generation == generation and checked.listing is listing:
            row = checked.row
        else:
            try:
                with store.read_connection() as connection:
                    found = svc.device_and_formlist_stamp(connection, token_hash(token), project_id)
            except SQLAlchemyError:
                return None  # the full app gives a store that fails its usual answer
            if found is None or found[1] != listing.stamp:
                return None
            row = found[0]
            if generation is not None:
                self._checked.put(key, _Checked(generation, listing, row))
        if not use_is_recent(row.last_used_at):
            self._checked.drop(key)  # the full app writes it; the next request reads it back
            return None
        principal = live_device(row, project_id)
        if principal is None:
            return None
        common = [
            ("ETag", quote_etag(listing.etag)),
            *openrosa_headers(self.app.config),
            *date_headers(environ),
            *security_headers(environ.get("wsgi.url_scheme") in ("https", "wss")),
        ]
        if parse_etags(environ.get("HTTP_IF_NONE_MATCH")).contains(listing.etag):
            return _Answer(304, common, b"", principal.actor, device_id)
        body = listing.body
        headers = [("Content-Type", XML_CONTENT_TYPE), ("Content-Length", str(len(body))), *common]
        return _Answer(200, headers, body, principal.actor, device_id)

    def _host_url(self, environ: dict[str, Any]) -> str | None:
        """``request.host_url`` as Flask would compute it (``TRUSTED_HOSTS`` checked), remembered per host."""
        key = (
            environ.get("wsgi.url_scheme", ""),
            environ.get("HTTP_HOST", ""),
            environ.get("SERVER_NAME", ""),
            environ.get("SERVER_PORT", ""),
        )
        found = self._host_urls.get(key)
        if found is None:
            try:
                found = get_current_url(environ, host_only=True, trusted_hosts=self.app.config.get("TRUSTED_HOSTS"))
            except SecurityError:
                return None  # the full app answers 400
            if len(self._host_urls) >= 256:
                self._host_urls.clear()
            self._host_urls[key] = found
        return found


def plain_query(raw: str) -> tuple[str | None, str | None] | None:
    """``formID`` and ``deviceID`` as ``request.args`` reads them; ``None`` when the full app must look (a NUL ...)."""
    if not raw:
        return None, None
    try:
        text = raw.encode("latin-1").decode()
    except UnicodeError:
        return None
    form_id: str | None = None
    device_id: str | None = None
    seen: set[str] = set()
    for key, value in parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"):
        if "\x00" in key or "\x00" in value:
            return None  # server.request_text answers 400
        if key not in seen:  # request.args.get gives the first value
            seen.add(key)
            if key == "formID":
                form_id = value or None
            elif key == "deviceID":
                device_id = value
    return form_id, device_id


def init_shortcut(app: Flask) -> None:
    """Put the formList shortcut in front of ``app``'s WSGI stack (inside the trusted-proxy fix-up)."""
    shortcut = FormListShortcut(app, app.wsgi_app)
    app.extensions["fieldsync.formlist_shortcut"] = shortcut
    app.wsgi_app = shortcut  # type: ignore[method-assign]


def shortcut_of(app: Flask) -> FormListShortcut:
    """The formList shortcut installed in ``app``."""
    shortcut: FormListShortcut = app.extensions["fieldsync.formlist_shortcut"]
    return shortcut


def _device_stamp(session: Session, project_id: int, token: str) -> int | None:
    """Authenticate a device token and read its project's formList stamp in one query (Collect's usual request)."""
    read_without_transaction(session)  # one or two statements: a transaction guarantees nothing more
    found = svc.device_and_formlist_stamp(session, token_hash(token), project_id)
    if found is None:
        return None
    row, stamp = found
    return stamp if adopt_device(row, project_id) is not None else None


def form_xml(project_id: int, xml_form_id: str, token: str | None = None) -> Response:
    """``GET forms/<id>.xml``: the published XForm, byte for byte what pyxform produced."""
    principal = require_openrosa(COLLECT_PERMISSION, project_id, token)
    svc.require_form_access(db_session(), principal, project_id, xml_form_id)
    md5, data = svc.served_xform(db_session(), project_id, xml_form_id)
    response = xml_response(data, etag=md5)
    if response.status_code == 200:
        response.headers["Content-Disposition"] = content_disposition(f"{xml_form_id}.xml")
    return response


def manifest(project_id: int, xml_form_id: str, token: str | None = None) -> Response:
    """``GET forms/<id>/manifest``: the media files present, itemsets.csv and entity lists."""
    principal = require_openrosa(COLLECT_PERMISSION, project_id, token)
    svc.require_form_access(db_session(), principal, project_id, xml_form_id)
    entries = svc.manifest_entries(db_session(), project_id, xml_form_id)
    base = _base_url(project_id, token)
    form_url = f"{base}/forms/{_segment(xml_form_id)}"
    parts = [_XML_DECLARATION, f'<manifest xmlns="{MANIFEST_NS}">']
    for entry in entries:
        parts.append('<mediaFile type="entityList">' if entry.is_entity_list else "<mediaFile>")
        parts.append(_text("filename", entry.name))
        parts.append(_text("hash", f"md5:{entry.md5}"))
        parts.append(_text("downloadUrl", f"{form_url}/attachments/{_segment(entry.name)}"))
        if entry.is_entity_list:
            parts.append(_text("integrityUrl", f"{base}/datasets/{_segment(entry.list_name)}/integrity"))
        parts.append("</mediaFile>")
    parts.append("</manifest>")
    body = "".join(parts).encode("utf-8")
    return xml_response(body, etag=etag_of(body))


def media(project_id: int, xml_form_id: str, name: str, token: str | None = None) -> Response:
    """``GET forms/<id>/attachments/<name>``: one media file of the published version."""
    principal = require_openrosa(COLLECT_PERMISSION, project_id, token)
    svc.require_form_access(db_session(), principal, project_id, xml_form_id)
    found = svc.media_file(db_session(), project_id, xml_form_id, name)
    if found.data is not None:
        response = Response(found.data, content_type=found.content_type)
    else:
        assert found.blob_sha256 is not None
        blobs = blob_store(get_store().storage_dir)
        response = Response(blobs.iter_bytes(found.blob_sha256), content_type=found.content_type)
        response.set_etag(found.blob_sha256)
    response.headers["Content-Disposition"] = content_disposition(name)
    return response


def integrity(project_id: int, list_name: str, token: str | None = None) -> Response:
    """``GET datasets/<list>/integrity?id=a,b``: whether each entity a device holds was deleted."""
    require_openrosa(COLLECT_PERMISSION, project_id, token)
    ids = [i.strip() for i in request.args.get("id", "").split(",") if i.strip()]
    states = svc.entity_list_integrity(db_session(), project_id, list_name, ids)
    parts = [_XML_DECLARATION, "<data><entities>"]
    for entity_id, deleted in states:
        parts.append(f"<entity id={quoteattr(entity_id)}>{_text('deleted', 'true' if deleted else 'false')}</entity>")
    parts.append("</entities></data>")
    return xml_response("".join(parts).encode("utf-8"))


_add_routes("/formList", form_list, "form_list")
_add_routes("/forms/<xml_form_id>.xml", form_xml, "form_xml")
_add_routes("/forms/<xml_form_id>/manifest", manifest, "manifest")
_add_routes("/forms/<xml_form_id>/attachments/<name>", media, "media")
_add_routes("/datasets/<list_name>/integrity", integrity, "integrity")

__all__ = ["bp"]
