"""OpenRosa form serving for ODK Collect and Enketo: formList, form download, manifest, media, entity integrity.

Each route answers under ``/v1/projects/<p>/`` (Digest or Basic challenge) and under
``/v1/key/<token>/projects/<p>/`` (device token in the path), as docs/OPENROSA.md sets out; the
rules followed are those of docs/reference/peers.md §4 (namespaces, required children, ``md5:``
hashes of the exact bytes served, ``type="entityList"`` with ``integrityUrl``). Access needs
``submission.create``: the formList holds only the forms the caller may fill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from flask import Response, current_app, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from server.api.downloads import content_disposition
from server.blobstore import blob_store
from server.db.queries.forms import FormListRow
from server.openrosa.auth import COLLECT_PERMISSION, adopt_device, require_openrosa
from server.openrosa.blueprint import bp
from server.openrosa.responses import etag_of, xml_response
from server.passwords import token_hash
from server.services import forms as svc
from server.store import db_session, get_store

XFORMS_LIST_NS = "http://openrosa.org/xforms/xformsList"
MANIFEST_NS = "http://openrosa.org/xforms/xformsManifest"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _routes(suffix: str) -> list[str]:
    return [f"/v1/projects/<int:project_id>{suffix}", f"/v1/key/<token>/projects/<int:project_id>{suffix}"]


def _base_url(project_id: int, token: str | None) -> str:
    """Return the absolute server URL the caller used (token or not), for downloadUrl and friends."""
    base = (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")
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


class FormListCache:
    """This process's rendered formList documents, by project, ``formID`` filter and base URL (so per device).

    Valid while the project's stamp (one indexed row, read with the caller's token) has not moved; the
    stamp moves in the transaction of every change a formList shows, so a publish is visible to the
    next request on every process and host. Bounded: emptied when it holds too many documents.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._entries: dict[tuple[int, str | None, str], _Listing] = {}

    def get(self, key: tuple[int, str | None, str], stamp: int) -> _Listing | None:
        """Return the document cached for ``key`` if it was read at ``stamp``."""
        found = self._entries.get(key)
        return found if found is not None and found.stamp == stamp else None

    def put(self, key: tuple[int, str | None, str], listing: _Listing) -> None:
        """Keep ``listing`` for ``key`` (threads of one worker share the dict; each write is atomic)."""
        if len(self._entries) >= self.capacity:
            self._entries.clear()
        self._entries[key] = listing


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


def _autocommit_read(session: Session) -> None:
    """Run this request's reads without BEGIN/ROLLBACK (PostgreSQL, session on the app's engine).

    formList reads in one or two statements, so a transaction around them adds two round trips and
    guarantees nothing more; the pool puts the connection's isolation level back when the request ends.
    """
    if isinstance(session.bind, Engine) and session.bind.dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _device_stamp(session: Session, project_id: int, token: str) -> int | None:
    """Authenticate a device token and read its project's formList stamp in one query (Collect's usual request)."""
    _autocommit_read(session)
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
