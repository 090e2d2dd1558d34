"""Resumable blob uploads (tus 1.0 core + creation, expiration, checksum, termination; SYNC.md "Attachments").

A partial upload's bytes are kept by the blob store (``server/blobstore.py``: ``<storage>/uploads/<id>``
locally, segments in the bucket on S3, so any host can take the next PATCH). The offset in the
``uploads`` row is only moved after bytes are durable, with a compare-and-set that only moves it
forward, every ``PROGRESS_BYTES`` and where the body ends, cut or not: a PATCH cut mid-body keeps what
arrived and the client resumes from ``HEAD``. No lock is held while a body arrives, so a PATCH behind a
dead connection never waits for it: the two write the same bytes at the same places and the one left
behind stops with 409. The PATCH that moves the offset to the end hashes the whole file: a mismatch
with the declared sha256 discards it (``460``); a match adopts it into the blob store and tells the
submissions area that the blob is here. A blob the project already has short-circuits the creation
(``Upload-Offset`` = length at once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from server.blobstore import PROGRESS_BYTES, PartialGone, PartialSuperseded, blob_store
from server.db.base import utcnow
from server.db.models.sync import Upload
from server.db.queries import accounts as accounts_q
from server.db.queries import sync as q
from server.db.queries.blobs import grant_blob
from server.db.transaction import transaction
from server.errors import ApiError, bad_request, conflict, not_found

log = logging.getLogger("fieldsync.uploads")

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,expiration,checksum,termination"
TUS_CHECKSUM_ALGORITHMS = "sha256"
UPLOAD_EXPIRES = timedelta(days=30)  # coaches stay offline for weeks
HEAD_WAIT = 2.0  # seconds a HEAD waits at most for the PATCHes of its upload being received
__all__ = ["PROGRESS_BYTES"]  # re-exported: how often a PATCH in progress makes its offset durable
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


_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


@contextmanager
def patch_in_progress(storage_dir: Path, upload_id: str) -> Iterator[None]:
    """Mark a PATCH of ``upload_id`` as being received; a door wraps the whole request in it, auth included.

    A client whose connection was cut asks ``HEAD`` at once, on a new connection, while the server is
    still writing down what the cut PATCH delivered (flush, fsync or the last segment, commit:
    milliseconds, or longer when that PATCH still waits for the database). Answered before that, HEAD
    gives the old offset, the client resends bytes the server has, and on a link that cuts every
    connection after the same number of bytes it never gets further. So each PATCH holds a shared lock
    (``BlobStore.receiving``: a file of this host's storage folder, seen by every worker of the host)
    and HEAD waits, at most ``HEAD_WAIT`` seconds, until none is held. A PATCH that is really alive only
    makes that HEAD answer a little later, with the offset durable then. No database connection is held
    for it. Across hosts (S3) a HEAD routed elsewhere does not wait; a resend from the older offset is
    then accepted and overlaps harmlessly (the offset only moves forward).
    """
    if not _UPLOAD_ID.fullmatch(upload_id):
        yield
        return
    with blob_store(storage_dir).receiving(upload_id):
        yield


def upload_state(session: Session, storage_dir: Path, upload_id: str) -> UploadState:
    """The current offset of an upload (for ``HEAD``), once the PATCHes of it being received have ended."""
    if session.in_transaction():
        # End the authorisation's read first: on SQLite it holds the write lock the PATCH needs to finish.
        session.commit()
    if _UPLOAD_ID.fullmatch(upload_id):
        blob_store(storage_dir).wait_for_receiving(upload_id, HEAD_WAIT)
    with transaction(session):
        return _state(get_upload(session, upload_id))


def _advance(session: Session, upload_id: str, start: int, end: int) -> bool:
    """Make ``[start, end)`` count: the offset moves to ``end`` unless another PATCH is there already."""
    with transaction(session):
        return q.extend_upload(session, upload_id, start, end)


def _current(session: Session, upload_id: str) -> Upload:
    with transaction(session):
        return get_upload(session, upload_id)


def patch_upload(
    session: Session,
    storage_dir: Path,
    *,
    upload_id: str,
    offset: int,
    chunks: Iterator[bytes],
    checksum: str | None = None,
    authorize: Callable[[int], object] | None = None,
    on_blob: Callable[[Session, int, str], None] | None = None,
) -> UploadState:
    """Write a PATCH body at ``offset``; on the last byte, verify the sha256 and adopt the blob.

    No lock is held while the body arrives, and no transaction: the blob store takes the bytes as they
    come and the offset is made durable every ``PROGRESS_BYTES`` and where the body ends, cut or not.
    So a HEAD during or after a cut PATCH answers what is really stored, and a client that gave up on a
    dead connection resumes at once with a new PATCH; overlapping PATCHes and the completion race
    answer 409, never 500. With ``checksum`` (the tus checksum extension: ``sha256 <base64>`` of this
    PATCH's body) nothing of the body counts until all of it arrived and matched (460 otherwise).

    ``authorize(project_id)`` checks the caller may write to the upload's project (it raises if not).
    ``on_blob`` runs in the transaction that adopts the blob; by default :func:`blob_arrived`
    (pushed submissions of the project awaiting that blob become complete).
    """
    if on_blob is None:
        on_blob = blob_arrived
    row = _current(session, upload_id)
    if authorize is not None:
        authorize(row.project_id)
    expected_digest = _parse_checksum(checksum) if checksum is not None else None
    if offset != row.offset:
        raise conflict("offset_mismatch", "Upload-Offset does not match", offset=row.offset)
    if row.state == "done":
        return _state(row)
    length, sha256, content_type, project_id = row.length, row.sha256, row.content_type, row.project_id
    body = chunks if expected_digest is None else _verified(chunks, expected_digest)
    store = blob_store(storage_dir)

    def progress(end: int) -> bool:  # the body's first ``end`` bytes are durable: make them count
        return _advance(session, upload_id, offset, offset + end)

    with patch_in_progress(storage_dir, upload_id):
        try:
            written, error = store.write_partial(
                upload_id,
                offset,
                body,
                length - offset,
                advance=progress if expected_digest is None else None,
                keep_cut=expected_digest is None,
            )
        except (PartialGone, PartialSuperseded):
            raise _behind(session, upload_id) from None
        if expected_digest is not None and error is not None:
            if isinstance(error, ApiError):
                raise error
            raise bad_request("incomplete_body", "The connection was cut; a PATCH with a checksum counts only whole")
        if written and not _advance(session, upload_id, offset, offset + written):
            raise _behind(session, upload_id)
        if error is not None:
            if isinstance(error, ApiError):
                raise error
            raise bad_request("incomplete_body", "The connection was cut; HEAD the upload and resume")
        if offset + written < length:
            return _state(_current(session, upload_id))
        return _finish(session, storage_dir, upload_id, project_id, sha256, length, content_type, on_blob)


def _verified(chunks: Iterator[bytes], expected: bytes) -> Iterator[bytes]:
    """``chunks``, then a 460 (as a read error: nothing counts) when they do not hash to ``expected``."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.digest() != expected:
        raise ApiError(460, "checksum_mismatch", "The PATCH body does not match its Upload-Checksum; send it again")


def _behind(session: Session, upload_id: str) -> ApiError:
    """409 for a PATCH another one overtook (or completed): the client HEADs and carries on from there."""
    row = _current(session, upload_id)
    return conflict("offset_mismatch", "Another PATCH of this upload got further; HEAD it", offset=row.offset)


def _parse_checksum(header: str) -> bytes:
    algorithm, _, value = header.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise bad_request("bad_upload_checksum", "Upload-Checksum supports the algorithm sha256 only")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise bad_request("bad_upload_checksum", "Upload-Checksum must be 'sha256 <base64 of the 32-byte digest>'")
    return digest


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
    # Only the PATCH that moved the offset to the end gets here; writers still in flight behind it find
    # the partial taken away (PartialGone) and answer 409.
    store = blob_store(storage_dir)
    try:
        digest = store.finish_partial(upload_id, length)
    except PartialGone:
        raise _behind(session, upload_id) from None
    if digest != sha256:
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


def terminate_upload(session: Session, storage_dir: Path, upload_id: str) -> None:
    """The tus termination extension: an open upload is given up and its partial bytes deleted.

    A completed upload is left as it is (its blob may already be referenced); terminating twice is fine.
    """
    with transaction(session):
        row = q.get_upload(session, upload_id)
        if row is None:
            raise not_found("upload", id=upload_id)
        terminated = q.set_upload_state(session, upload_id, "failed", completed_at=utcnow())
    if terminated:
        blob_store(storage_dir).delete_partial(upload_id)


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
