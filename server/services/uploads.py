"""Resumable blob uploads (tus 1.0 core + creation + expiration; SYNC.md "Attachments", research §8.8).

A partial upload's bytes are kept by the blob store (``server/blobstore.py``: ``<storage>/uploads/<id>``
locally, segments in the bucket on S3, so any host can take the next PATCH); its offset in the
``uploads`` row is only moved after the bytes are stored, with a compare-and-set, so a PATCH cut
mid-body keeps what arrived and the client resumes from ``HEAD``. Concurrent PATCHes of one upload are
serialised by the store's lock (an exclusive file lock locally).
When the last byte arrives the whole file is hashed: a mismatch with the declared sha256 discards it
(``460``); a match adopts it into the blob store and tells the submissions area that the blob is here.
A blob that already exists short-circuits the creation (``Upload-Offset`` = length at once).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from server.blobstore import blob_store
from server.db.base import utcnow
from server.db.models.sync import Upload
from server.db.queries import accounts as accounts_q
from server.db.queries import sync as q
from server.db.queries.blobs import grant_blob
from server.db.transaction import transaction
from server.errors import ApiError, bad_request, conflict, not_found

log = logging.getLogger("fieldsync.uploads")

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,expiration"
UPLOAD_EXPIRES = timedelta(days=30)  # coaches stay offline for weeks
CHUNK = 64 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_metadata(header: str) -> dict[str, str]:
    """Parse ``Upload-Metadata`` (``key b64,key2 b64``): UTF-8 values; a raw 32-byte sha256 becomes hex."""
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            raw = base64.b64decode(value.strip(), validate=True) if value else b""
        except (binascii.Error, ValueError):
            raise bad_request("bad_upload_metadata", f"Upload-Metadata value of {key!r} is not base64") from None
        if key == "sha256" and len(raw) == 32:
            result[key] = raw.hex()  # the raw digest
        else:
            try:
                result[key] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request("bad_upload_metadata", f"Upload-Metadata value of {key!r} is not UTF-8") from None
            if "\x00" in result[key]:  # PostgreSQL cannot store it
                raise bad_request("bad_upload_metadata", f"Upload-Metadata value of {key!r} holds a NUL character")
    return result


@dataclass(frozen=True)
class UploadState:
    """What HEAD/POST/PATCH report."""

    id: str
    offset: int
    length: int
    expires_at: datetime
    done: bool


def _state(row: Upload) -> UploadState:
    return UploadState(row.id, row.offset, row.length, row.expires_at, row.state == "done")


def create_upload(
    session: Session,
    storage_dir: Path,
    *,
    project_id: int,
    length: int,
    sha256: str,
    content_type: str,
    actor: str,
    max_size: int,
) -> UploadState:
    """Create an upload; when the blob exists already, it is born complete (dedupe)."""
    if not _HEX64.fullmatch(sha256):
        raise bad_request("bad_upload_metadata", "Upload-Metadata sha256 must be 64 lowercase hex (or the raw digest)")
    if length < 0:
        raise bad_request("bad_upload_length", "Upload-Length must be >= 0")
    if length > max_size:
        raise ApiError(413, "too_large", f"Uploads are limited to {max_size} bytes", {"limit_bytes": max_size})
    now = utcnow()
    upload_id = uuid.uuid4().hex
    with transaction(session):
        if accounts_q.get_project(session, project_id) is None:  # an admin may name any id
            raise not_found("project", project_id=project_id)
        # Only this project's own blobs short-circuit: deduplicating against another project's would tell
        # the caller that a hash exists there, and would let it reference bytes it never had.
        exists = sha256 in q.present_blobs(session, project_id, [sha256])
        row = Upload(
            id=upload_id,
            project_id=project_id,
            sha256=sha256,
            length=length,
            offset=length if exists else 0,
            state="done" if exists else "open",
            content_type=content_type[:200] or "application/octet-stream",
            actor=actor,
            created_at=now,
            expires_at=now + UPLOAD_EXPIRES,
            completed_at=now if exists else None,
        )
        session.add(row)
        if exists:
            # Born complete (this project delivered the bytes earlier): its pushed submissions awaiting
            # them become complete now, as after a last PATCH.
            blob_arrived(session, project_id, sha256)
        else:
            blob_store(storage_dir).create_partial(upload_id)
    return _state(row)


def get_upload(session: Session, upload_id: str) -> Upload:
    """An upload by id (``404`` unknown, ``410`` expired or failed)."""
    row = q.get_upload(session, upload_id)
    if row is None:
        raise not_found("upload", id=upload_id)
    if row.state in ("expired", "failed") or (row.state == "open" and row.expires_at < utcnow()):
        raise ApiError(410, "upload_gone", "This upload expired or failed; start a new one")
    return row


def upload_state(session: Session, upload_id: str) -> UploadState:
    """The current offset of an upload (for ``HEAD``)."""
    with transaction(session):
        return _state(get_upload(session, upload_id))


def patch_upload(
    session: Session,
    storage_dir: Path,
    *,
    upload_id: str,
    offset: int,
    chunks: Iterator[bytes],
    on_blob: Callable[[Session, int, str], None] | None = None,
) -> UploadState:
    """Append a PATCH body at ``offset``; on the last byte, verify the sha256 and adopt the blob.

    ``on_blob`` runs in the transaction that adopts the blob; by default :func:`blob_arrived`
    (pushed submissions of the project awaiting that blob become complete).
    """
    if on_blob is None:
        on_blob = blob_arrived
    with transaction(session):
        row = get_upload(session, upload_id)
        length, current, sha256, content_type, done = row.length, row.offset, row.sha256, row.content_type, row.state
        project_id = row.project_id
    if done == "done":
        if offset != current:
            raise conflict("offset_mismatch", "Upload-Offset does not match", offset=current)
        return _state(row)
    if offset != current:
        raise conflict("offset_mismatch", "Upload-Offset does not match", offset=current)
    store = blob_store(storage_dir)
    with store.partial_lock(upload_id):  # one PATCH at a time per upload
        with transaction(session):
            row = get_upload(session, upload_id)
            if row.offset != offset:
                raise conflict("offset_mismatch", "Upload-Offset does not match", offset=row.offset)
        written, error = store.write_partial(upload_id, offset, chunks, length - offset)
        with transaction(session):
            q.advance_upload(session, upload_id, offset, offset + written)
        if error is not None:
            if isinstance(error, ApiError):
                raise error
            raise bad_request("incomplete_body", "The connection was cut; HEAD the upload and resume")
        if offset + written < length:
            with transaction(session):
                return _state(get_upload(session, upload_id))
        return _finish(session, storage_dir, upload_id, project_id, sha256, length, content_type, on_blob)


def _finish(
    session: Session,
    storage_dir: Path,
    upload_id: str,
    project_id: int,
    sha256: str,
    length: int,
    content_type: str,
    on_blob: Callable[[Session, int, str], None] | None,
) -> UploadState:
    store = blob_store(storage_dir)
    if store.finish_partial(upload_id, length) != sha256:
        with transaction(session):
            q.set_upload_state(session, upload_id, "failed", completed_at=utcnow())
        store.delete_partial(upload_id)
        raise ApiError(460, "checksum_mismatch", "The uploaded bytes do not hash to the declared sha256; start again")
    with transaction(session):
        if q.set_upload_state(session, upload_id, "done", completed_at=utcnow()):
            store.adopt_partial(session, upload_id, sha256, length, content_type)
            grant_blob(session, project_id, sha256)  # the bytes came in this project's upload
            if on_blob is not None:
                on_blob(session, project_id, sha256)
        row = get_upload(session, upload_id)
    store.delete_partial(upload_id)
    return _state(row)


def blob_arrived(session: Session, project_id: int, sha256: str) -> None:
    """Tell the submissions area a blob is here: pushed submissions awaiting it may become complete."""
    from server.services import submissions

    submissions.attach_uploaded_blob(session, project_id, sha256)


def missing_blobs(session: Session, project_id: int, hashes: list[str]) -> list[str]:
    """The hashes (in the order asked, once each) the project has not delivered (another project's count)."""
    bad = [h for h in hashes if not _HEX64.fullmatch(h)]
    if bad:
        raise bad_request("bad_sha256", "Expected 64 lowercase hex characters", values=bad[:10])
    with transaction(session):
        present = q.present_blobs(session, project_id, hashes)
    return list(dict.fromkeys(h for h in hashes if h not in present))


def expire_uploads(session_factory: sessionmaker[Session], storage_dir: Path, now: datetime) -> int:
    """Mark open uploads past their expiry expired and delete their partial files; return how many."""
    session = session_factory()
    count = 0
    try:
        with transaction(session):
            ids = [row.id for row in q.expired_uploads(session, now)]
        for upload_id in ids:
            with transaction(session):
                # Compare-and-set: two scheduler processes never expire (or count) one upload twice.
                claimed = q.set_upload_state(session, upload_id, "expired", completed_at=now)
            if claimed:
                blob_store(storage_dir).delete_partial(upload_id)
                count += 1
    finally:
        session.close()
    return count
