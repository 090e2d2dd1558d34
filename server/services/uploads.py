"""Resumable blob uploads (tus 1.0 core + creation + expiration; SYNC.md "Attachments", research §8.8).

A partial upload lives in ``<storage>/uploads/<id>``; its offset in the ``uploads`` row is only moved
after the bytes are fsync'ed, with a compare-and-set that only moves it forward, so a PATCH cut mid-body
keeps what arrived and the client resumes from ``HEAD`` (see :func:`patch_upload`). No lock is held
while a body arrives: a PATCH behind a dead connection never waits for it. Extensions: creation,
expiration, checksum (sha256) and termination.
When the last byte arrives the whole file is hashed: a mismatch with the declared sha256 discards it
(``460``); a match adopts it into the blob store and tells the submissions area that the blob is here.
A blob that already exists short-circuits the creation (``Upload-Offset`` = length at once).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from server.blobstore import BlobStore
from server.db.base import utcnow
from server.db.models.sync import Upload
from server.db.queries import sync as q
from server.db.transaction import transaction
from server.errors import ApiError, bad_request, conflict, not_found

log = logging.getLogger("fieldsync.uploads")

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,expiration,checksum,termination"
TUS_CHECKSUM_ALGORITHMS = "sha256"
UPLOAD_EXPIRES = timedelta(days=30)  # coaches stay offline for weeks
CHUNK = 64 * 1024
# The offset of a PATCH in progress is made durable (fsync + compare-and-set) every this many bytes.
PROGRESS_BYTES = 256 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


def uploads_dir(storage_dir: Path) -> Path:
    """Where partial uploads live."""
    path = Path(storage_dir) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


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
        exists = sha256 in q.present_blobs(session, [sha256])
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
            # Born complete (the bytes came earlier, maybe for another project): this project's
            # pushed submissions awaiting them become complete now, as after a last PATCH.
            blob_arrived(session, project_id, sha256)
        else:
            (uploads_dir(storage_dir) / upload_id).touch()
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
HEAD_WAIT = 2.0  # seconds a HEAD waits at most for the PATCHes of its upload being received
_POLL = 0.01


def _receiving_lock(storage_dir: Path, upload_id: str) -> Path | None:
    """The lock file PATCHes of ``upload_id`` hold while they are received (``None``: not an upload id)."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        return None
    return uploads_dir(storage_dir) / f"{upload_id}.receiving"


@contextmanager
def patch_in_progress(storage_dir: Path, upload_id: str) -> Iterator[None]:
    """Mark a PATCH of ``upload_id`` as being received; a door wraps the whole request in it, auth included.

    A client whose connection was cut asks ``HEAD`` at once, on a new connection, while the server is
    still writing down what the cut PATCH delivered (flush, fsync, commit: milliseconds, or longer when
    that PATCH still waits for the database). Answered before that, HEAD gives the old offset, the client
    resends bytes the server has, and on a link that cuts every connection after the same number of
    bytes it never gets further. So each PATCH holds a shared lock on a file beside the partial upload
    (the storage folder is shared by every worker and host) and HEAD waits, at most ``HEAD_WAIT``
    seconds, until it could take that lock exclusively. A PATCH that is really alive only makes that
    HEAD answer a little later, with the offset durable then. No database connection is held for it.
    """
    path = _receiving_lock(storage_dir, upload_id)
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield


def _wait_for_patches(storage_dir: Path, upload_id: str) -> None:
    path = _receiving_lock(storage_dir, upload_id)
    if path is None or not path.exists():
        return
    deadline = time.monotonic() + HEAD_WAIT
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(_POLL)
                continue
            fcntl.flock(handle, fcntl.LOCK_UN)
            return


def upload_state(session: Session, storage_dir: Path, upload_id: str) -> UploadState:
    """The current offset of an upload (for ``HEAD``), once the PATCHes of it being received have ended."""
    if session.in_transaction():
        # End the authorisation's read first: on SQLite it holds the write lock the PATCH needs to finish.
        session.commit()
    _wait_for_patches(storage_dir, upload_id)
    with transaction(session):
        return _state(get_upload(session, upload_id))


class _Superseded(Exception):
    """Another PATCH of the same upload got further (or completed it): this one stops."""


def _flush(fd: int, path: Path, data: bytes | bytearray, position: int) -> None:
    """Write ``data`` at ``position`` of the partial file, unless the upload was completed meanwhile.

    The completing PATCH holds an exclusive lock while it hashes and moves the file into the blob
    store; a writer takes a shared one for the instant of its write and checks that ``path`` is still
    the file it opened, so no byte ever lands in a blob after it was verified.
    """
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        try:
            moved = os.stat(path).st_ino != os.fstat(fd).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            raise _Superseded()
        os.pwrite(fd, data, position)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


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

    No lock is held while the body arrives, and no transaction: the bytes are written as they come and
    the offset is made durable (fsync, then a compare-and-set) every ``PROGRESS_BYTES`` and where the
    body ends, cut or not. So a HEAD during or after a cut PATCH answers what is really on disk, and a
    client that gave up on a dead connection resumes at once with a new PATCH: the two write the same
    bytes at the same places, the offset only moves forward, and the one left behind stops with 409.
    With ``checksum`` (the tus checksum extension: ``sha256 <base64>`` of this PATCH's body) nothing of
    the body counts until all of it arrived and matched (460 otherwise).

    ``authorize(project_id)`` checks the caller may write to the upload's project (it raises if not).
    ``on_blob`` runs in the transaction that adopts the blob; by default :func:`blob_arrived`
    (pushed submissions of the project awaiting that blob become complete).
    """
    row = _current(session, upload_id)
    if authorize is not None:
        authorize(row.project_id)
    expected_digest = _parse_checksum(checksum) if checksum is not None else None
    if offset != row.offset:
        raise conflict("offset_mismatch", "Upload-Offset does not match", offset=row.offset)
    if row.state == "done":
        return _state(row)
    with patch_in_progress(storage_dir, upload_id):
        return _receive(session, storage_dir, upload_id, offset, chunks, expected_digest, on_blob, row)


def _receive(
    session: Session,
    storage_dir: Path,
    upload_id: str,
    offset: int,
    chunks: Iterator[bytes],
    expected_digest: bytes | None,
    on_blob: Callable[[Session, int, str], None] | None,
    row: Upload,
) -> UploadState:
    length, sha256, content_type, project_id = row.length, row.sha256, row.content_type, row.project_id
    path = uploads_dir(storage_dir) / upload_id
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise _behind(session, upload_id) from None
    digest = hashlib.sha256() if expected_digest is not None else None
    durable = end = offset
    pending = bytearray()
    error: BaseException | None = None
    try:
        try:
            for chunk in chunks:
                if end + len(pending) + len(chunk) > length:
                    raise bad_request("upload_too_long", "The PATCH body goes past Upload-Length")
                pending += chunk
                if digest is not None:
                    digest.update(chunk)
                if len(pending) >= CHUNK:
                    _flush(fd, path, pending, end)
                    end += len(pending)
                    pending.clear()
                if digest is None and end - durable >= PROGRESS_BYTES:
                    os.fsync(fd)
                    if not _advance(session, upload_id, offset, end):
                        raise _Superseded()
                    durable = end
        except (ApiError, _Superseded):
            raise
        except Exception as exc:  # a cut connection, a silent client: keep what arrived
            error = exc
        if pending:
            _flush(fd, path, pending, end)
            end += len(pending)
        os.fsync(fd)
    except _Superseded:
        raise _behind(session, upload_id) from None
    finally:
        os.close(fd)
    if digest is not None:
        if error is not None:
            raise bad_request("incomplete_body", "The connection was cut; a PATCH with a checksum counts only whole")
        if digest.digest() != expected_digest:
            raise ApiError(460, "checksum_mismatch", "The PATCH body does not match its Upload-Checksum; send it again")
    if end > durable and not _advance(session, upload_id, offset, end):
        raise _behind(session, upload_id)
    if error is not None:
        raise bad_request("incomplete_body", "The connection was cut; HEAD the upload and resume")
    if end < length:
        return _state(_current(session, upload_id))
    return _finish(session, storage_dir, upload_id, project_id, path, sha256, length, content_type, on_blob)


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
    path: Path,
    sha256: str,
    length: int,
    content_type: str,
    on_blob: Callable[[Session, int, str], None] | None,
) -> UploadState:
    # Only the PATCH that moved the offset to the end gets here. Writers still in flight (behind
    # this one) wait for the lock for the instant of a write, then find the file gone (_flush).
    try:
        handle = open(path, "rb")  # noqa: SIM115  (closed below, after the move)
    except FileNotFoundError:
        raise _behind(session, upload_id) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        digest = hashlib.sha256()
        while block := handle.read(CHUNK):
            digest.update(block)
        if digest.hexdigest() != sha256:
            with transaction(session):
                q.set_upload_state(session, upload_id, "failed", completed_at=utcnow())
            path.unlink(missing_ok=True)
            raise ApiError(
                460, "checksum_mismatch", "The uploaded bytes do not hash to the declared sha256; start again"
            )
        with transaction(session):
            if q.set_upload_state(session, upload_id, "done", completed_at=utcnow()):
                BlobStore(storage_dir).adopt_file(session, path, sha256, length, content_type)
                if on_blob is not None:
                    on_blob(session, project_id, sha256)
            row = get_upload(session, upload_id)
    path.unlink(missing_ok=True)
    _forget(storage_dir, upload_id)
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
        (uploads_dir(storage_dir) / upload_id).unlink(missing_ok=True)
        _forget(storage_dir, upload_id)


def _forget(storage_dir: Path, upload_id: str) -> None:
    lock = _receiving_lock(storage_dir, upload_id)
    if lock is not None:
        lock.unlink(missing_ok=True)


def blob_arrived(session: Session, project_id: int, sha256: str) -> None:
    """Tell the submissions area a blob is here: pushed submissions awaiting it may become complete."""
    from server.services import submissions

    submissions.attach_uploaded_blob(session, project_id, sha256)


def missing_blobs(session: Session, hashes: list[str]) -> list[str]:
    """The hashes (in the order asked, once each) the server does not have."""
    bad = [h for h in hashes if not _HEX64.fullmatch(h)]
    if bad:
        raise bad_request("bad_sha256", "Expected 64 lowercase hex characters", values=bad[:10])
    with transaction(session):
        present = q.present_blobs(session, hashes)
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
                (uploads_dir(storage_dir) / upload_id).unlink(missing_ok=True)
                _forget(storage_dir, upload_id)
                count += 1
    finally:
        session.close()
    return count
