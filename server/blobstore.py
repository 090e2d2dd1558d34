"""Content-addressed file storage: bytes in a folder or an S3 bucket, a row in ``blobs``.

``FIELDSYNC_BLOB_STORE`` chooses where the bytes live: empty (the default) for the folder
``<STORAGE_DIR>/blobs``, or ``s3://bucket/prefix`` for any S3-compatible store (endpoint and credentials
from ``FIELDSYNC_S3_*``, else boto3's usual environment). Every caller gets its store from
:func:`blob_store`; both stores offer the same methods, so nothing else knows which one it has.

The row is written first (inserted, or touched when the content is already here: either way it stays
locked until the writer commits), then the bytes are put in place if they are missing (local: atomic
rename of an fsync'ed file; S3: one PUT or a multipart upload, visible whole or not at all), then the
writer commits: a committed row always has its bytes. The row lock orders a writer against the blob
garbage collector (``server/services/retention.py``), which deletes a row and its bytes in one
transaction: a writer either touches the row first (and the collector then keeps it) or waits for the
collector and writes row and bytes anew. An orphan file left by a rolled-back transaction is harmless:
the next write of the same content reuses it, and ``fieldsync purge`` deletes it after the grace period.

Files are streamed both ways: writes are hashed chunk by chunk into a local staging file (its hash is
the name, known only at the end) that is then moved or uploaded; reads are iterated in chunks.

A tus upload's partial bytes live with the blobs: locally one file, written in place (``pwrite``) by
every PATCH of the upload; on S3 one object per ``PROGRESS_BYTES`` of a PATCH and one for whatever
arrived after the last of them (``uploads/<id>/<start>-<end>-<nonce>``), so a PATCH that arrives at
another host continues the same upload, and the whole file is assembled by streaming the segments, in
offset order (overlapping ones read from where the previous ends), into a multipart upload.

No lock is held while a PATCH body arrives (a PATCH behind a dead connection must never wait for it):
:meth:`BlobStore.write_partial` hands the bytes to the store as they come and calls ``advance(end)``
(the service's compare-and-set of the offset) each time ``PROGRESS_BYTES`` more are durable and where
the body ends, cut or not. Two PATCHes of one upload may then write the same bytes at the same places;
the offset only moves forward and the one left behind stops (:class:`PartialSuperseded`). Granularity:
locally every byte that reached the server counts after a cut (buffered writes are flushed before the
answer); on S3 likewise as long as the receiving process lives to store its last segment, and a PATCH
still in progress has its bytes durable in steps of ``PROGRESS_BYTES`` (one PUT each).

``receiving(upload_id)`` marks a PATCH being received (a shared lock on a file of this host's storage
folder) and ``wait_for_receiving`` lets a HEAD wait for it: see ``server/services/uploads.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import Blob
from server.errors import bad_request, too_large

CHUNK = 256 * 1024
# A PATCH in progress makes its bytes durable (fsync locally, one segment on S3) and moves the offset
# every this many bytes; writes to the local partial file go in steps of WRITE_STEP.
PROGRESS_BYTES = 256 * 1024
WRITE_STEP = 64 * 1024
_POLL = 0.01


class PartialGone(Exception):
    """The partial bytes a PATCH writes to were completed or removed meanwhile (another PATCH finished it)."""


class PartialSuperseded(Exception):
    """Another PATCH of the same upload got further: this one stops writing."""


# S3 multipart: parts of 8 MiB (S3 wants at least 5 MiB but the last); smaller files go in one PUT.
MULTIPART_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    """A blob file as the store lists it (for garbage collection)."""

    sha256: str
    modified_at: datetime


class BlobStore:
    """Blobs named by sha256 under ``root/blobs``; partial uploads under ``root/uploads``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "blobs"
        self.tmp = Path(root) / "tmp"
        self.partials = Path(root) / "uploads"
        self.locks = Path(root) / "locks" / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    # --- whole blobs --------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """Return where the bytes of ``sha256`` live (the local store only)."""
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has_file(self, sha256: str) -> bool:
        """Tell whether the bytes of ``sha256`` are stored."""
        return self.path_for(sha256).is_file()

    def size_of(self, sha256: str) -> int:
        """The stored size of ``sha256`` in bytes."""
        return self.path_for(sha256).stat().st_size

    def put_bytes(self, session: Session, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store ``data`` (idempotently) and return its sha256."""
        return self.put_chunks(session, [data], content_type)

    def put_stream(
        self,
        session: Session,
        stream: BinaryIO,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> str:
        """Store a stream read in chunks (refusing more than ``max_bytes``) and return its sha256."""
        return self.put_chunks(session, _read_chunks(stream), content_type, max_bytes)

    def put_chunks(
        self,
        session: Session,
        chunks: Iterable[bytes],
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> str:
        """Store the concatenated ``chunks`` and return their sha256."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise too_large(max_bytes, "file")
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            sha = digest.hexdigest()
            self.adopt_file(session, Path(tmp_name), sha, size, content_type)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return sha

    def adopt_file(self, session: Session, path: Path, sha256: str, size: int, content_type: str) -> None:
        """Move a fully written, already hashed local file into place and record its row."""
        record_blob(session, sha256, size, content_type)  # first: the row lock orders this against the collector
        final = self.path_for(sha256)
        if not final.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)

    def record_present(self, session: Session, sha256: str, size: int, content_type: str) -> None:
        """Record the row of bytes already stored (the same content staged twice)."""
        record_blob(session, sha256, size, content_type)

    def open(self, sha256: str) -> BinaryIO:
        """Open the bytes of ``sha256`` for reading."""
        return open(self.path_for(sha256), "rb")

    def iter_bytes(self, sha256: str) -> Iterator[bytes]:
        """Yield the bytes of ``sha256`` in chunks (for streamed responses)."""
        with self.open(sha256) as handle:
            yield from _read_chunks(handle)

    def list_blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob with its modification time (garbage collection)."""
        for path in self.root.glob("??/??/*"):
            with contextlib.suppress(FileNotFoundError):
                yield StoredBlob(path.name, datetime.fromtimestamp(path.stat().st_mtime, UTC))

    def delete(self, sha256: str) -> None:
        """Delete the bytes of ``sha256`` (garbage collection; the row is the caller's)."""
        self.path_for(sha256).unlink(missing_ok=True)

    # --- partial (tus) uploads ----------------------------------------------------------------

    def _partial(self, upload_id: str) -> Path:
        self.partials.mkdir(parents=True, exist_ok=True)
        return self.partials / upload_id

    def _finishing(self, upload_id: str) -> Path:
        return self.tmp / f"finishing-{upload_id}"

    def create_partial(self, upload_id: str) -> None:
        """Make room for an upload's bytes."""
        self._partial(upload_id).touch()

    def _receiving_path(self, upload_id: str) -> Path:
        self.locks.mkdir(parents=True, exist_ok=True)
        return self.locks / upload_id

    @contextlib.contextmanager
    def receiving(self, upload_id: str) -> Iterator[None]:
        """Mark a PATCH of ``upload_id`` as being received, on this host (a shared lock on a file).

        The file is removed by the last receiver (or a waiter) that can lock it exclusively, so nothing
        stays behind once an upload's PATCHes have ended, whichever host finishes it.
        """
        path = self._receiving_path(upload_id)
        while True:
            handle = open(path, "a")  # noqa: SIM115  (closed below)
            fcntl.flock(handle, fcntl.LOCK_SH)
            if _same_file(path, handle.fileno()):
                break
            handle.close()  # removed between open and lock: take the new one
        try:
            yield
        finally:
            _remove_if_unlocked(path, handle.fileno())
            handle.close()

    def wait_for_receiving(self, upload_id: str, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until no PATCH of ``upload_id`` is being received on this host."""
        try:
            fd = os.open(self._receiving_path(upload_id), os.O_RDONLY)
        except FileNotFoundError:
            return
        deadline = time.monotonic() + timeout
        try:
            while not _remove_if_unlocked(self._receiving_path(upload_id), fd):
                if time.monotonic() >= deadline:
                    return
                time.sleep(_POLL)
        finally:
            os.close(fd)

    def write_partial(
        self,
        upload_id: str,
        offset: int,
        chunks: Iterable[bytes],
        limit: int,
        *,
        advance: Callable[[int], bool] | None = None,
        keep_cut: bool = True,
    ) -> tuple[int, BaseException | None]:
        """Write ``chunks`` at ``offset`` (at most ``limit`` bytes); return bytes written and a read error if any.

        ``advance(end)`` is called each time ``PROGRESS_BYTES`` more are durable (``end`` counts from
        ``offset``); False means another PATCH is further: :class:`PartialSuperseded`. A partial file
        completed meanwhile raises :class:`PartialGone`. ``keep_cut`` is for stores that would have to
        keep a cut body explicitly (S3); the local file keeps bytes where they land either way.
        """
        path = self._partial(upload_id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            raise PartialGone() from None
        try:
            return _receive_body(
                chunks,
                limit,
                lambda data, at: _write_unless_moved(fd, path, data, offset + at),
                lambda _end: os.fsync(fd),
                advance,
                keep_cut=keep_cut,
            )
        finally:
            os.close(fd)

    def finish_partial(self, upload_id: str, length: int) -> str:
        """Take the partial file away from writers, hash it; return the sha256 hex ("" when bytes are missing).

        Under an exclusive lock the file is moved to a staging name: a writer still in flight (a PATCH
        left behind) waits for the instant of the move, then finds its file gone and stops, so no byte
        lands in the file after it was hashed.
        """
        path, staged = self._partial(upload_id), self._finishing(upload_id)
        try:
            with open(path, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                os.replace(path, staged)
        except FileNotFoundError:
            if not staged.exists():  # another PATCH finished it, or a crash after the move: hash the staged file
                raise PartialGone() from None
        digest = hashlib.sha256()
        size = 0
        with open(staged, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
                size += len(block)
        return digest.hexdigest() if size == length else ""

    def adopt_partial(self, session: Session, upload_id: str, sha256: str, length: int, content_type: str) -> None:
        """Make a finished, verified upload the blob ``sha256`` and record its row."""
        self.adopt_file(session, self._finishing(upload_id), sha256, length, content_type)

    def delete_partial(self, upload_id: str) -> None:
        """Remove what is kept of an upload (finished, failed or expired)."""
        self._partial(upload_id).unlink(missing_ok=True)
        self._finishing(upload_id).unlink(missing_ok=True)
        self._receiving_path(upload_id).unlink(missing_ok=True)

    def list_partials(self) -> Iterator[str]:
        """The ids of every upload with bytes kept (retention)."""
        if self.partials.is_dir():
            yield from (p.name for p in self.partials.iterdir())

    def publish_export(self, export_dir: Path, path: Path, to_prune: Callable[[list[str]], list[str]]) -> None:
        """Make a scheduled export written at ``path`` (under ``export_dir``) available: locally it already is."""

    def list_exports(self, folder: str) -> list[str]:
        """File names of the scheduled exports in ``folder`` (relative to the export root)."""
        return []

    def list_staged(self) -> Iterator[tuple[Path, datetime]]:
        """Staging files (local, on this host) with their modification times (retention)."""
        for path in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                yield path, datetime.fromtimestamp(path.stat().st_mtime, UTC)


def record_blob(session: Session, sha256: str, size: int, content_type: str) -> None:
    """Insert the ``blobs`` row, or touch it when it exists; either way it is locked until the writer commits."""
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    now = utcnow()
    stmt = module.insert(Blob.__table__).values(sha256=sha256, size=size, content_type=content_type, created_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["sha256"], set_={"touched_at": now}))


def _receive_body(
    chunks: Iterable[bytes],
    limit: int,
    write: Callable[[bytes, int], object],
    persist: Callable[[int], object],
    advance: Callable[[int], bool] | None,
    *,
    keep_cut: bool,
) -> tuple[int, BaseException | None]:
    """Hand a PATCH body to ``write(data, position)`` in steps, make it durable with ``persist(end)``.

    Every ``PROGRESS_BYTES`` (when ``advance`` is given) ``persist`` then ``advance`` run; where the body
    ends, cut or not, the rest is written and persisted (a cut body only with ``keep_cut``); moving the
    offset for that last part is the caller's. Returns the bytes written and the read error, if any.
    """
    written = durable = 0
    pending = bytearray()
    error: BaseException | None = None
    body = iter(chunks)
    while True:
        try:
            chunk = next(body)
        except StopIteration:
            break
        except Exception as exc:  # a cut connection, a silent client: keep what arrived
            error = exc
            break
        if written + len(pending) + len(chunk) > limit:
            error = bad_request("upload_too_long", "The PATCH body goes past Upload-Length")
            break
        pending += chunk
        if len(pending) >= WRITE_STEP:
            write(bytes(pending), written)
            written += len(pending)
            pending.clear()
        if advance is not None and written - durable >= PROGRESS_BYTES:
            persist(written)
            if not advance(written):
                raise PartialSuperseded()
            durable = written
    if error is not None and not keep_cut:
        return durable, error
    if pending:
        write(bytes(pending), written)
        written += len(pending)
    persist(written)
    return written, error


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _remove_if_unlocked(path: Path, fd: int) -> bool:
    """Lock ``fd`` exclusively if nobody else holds it and remove its file; False when someone does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    if _same_file(path, fd):
        path.unlink(missing_ok=True)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def _write_unless_moved(fd: int, path: Path, data: bytes, position: int) -> None:
    """``pwrite`` into the partial file, unless it was taken away (completed) since ``fd`` was opened.

    The completing PATCH moves the file under an exclusive lock; a writer holds a shared one for the
    instant of its write and checks that ``path`` is still its file.
    """
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        if not _same_file(path, fd):
            raise PartialGone()
        os.pwrite(fd, data, position)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk


# --- S3 ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Settings:
    """Where an S3 blob store lives and how to reach it."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix"); ValueError when it is not one."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
    return parts.netloc, parts.path.strip("/")


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix>/blobs/<aa>/<bb>/<sha256>`` of one bucket; staging stays in a local folder."""

    def __init__(self, root: Path, settings: S3Settings, client: Any | None = None) -> None:
        self.tmp = Path(root) / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.root = self.tmp / "no-local-blobs"  # never created: path_for() names nothing on S3
        self.partials = self.tmp / "no-local-uploads"
        self.locks = Path(root) / "locks" / "uploads"  # this host's PATCHes being received (HEAD waits)
        self.bucket = settings.bucket
        self.prefix = f"{settings.prefix}/" if settings.prefix else ""
        self.client = client or s3_client(settings)
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES, max_concurrency=4
        )

    def key_for(self, sha256: str) -> str:
        """The object key of ``sha256``."""
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            found: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return found

    def has_file(self, sha256: str) -> bool:
        """Tell whether the object of ``sha256`` exists."""
        return self._head(self.key_for(sha256)) is not None

    def size_of(self, sha256: str) -> int:
        """The stored size of ``sha256`` in bytes."""
        found = self._head(self.key_for(sha256))
        if found is None:
            raise FileNotFoundError(sha256)
        return int(found["ContentLength"])

    def adopt_file(self, session: Session, path: Path, sha256: str, size: int, content_type: str) -> None:
        """Record the row, then upload a hashed local file (multipart when big) unless the object exists."""
        record_blob(session, sha256, size, content_type)  # first: the row lock orders this against the collector
        if not self.has_file(sha256):
            self.client.upload_file(
                str(path),
                self.bucket,
                self.key_for(sha256),
                ExtraArgs={"ContentType": content_type},
                Config=self.transfer,
            )
        path.unlink(missing_ok=True)

    def open(self, sha256: str) -> BinaryIO:
        """A streaming body of the object of ``sha256`` (read in chunks; never loaded whole)."""
        body: BinaryIO = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))["Body"]
        return body

    def iter_bytes(self, sha256: str) -> Iterator[bytes]:
        """Yield the object's bytes in chunks."""
        body = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def list_blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob object with its modification time."""
        for item in self._list(f"{self.prefix}blobs/"):
            yield StoredBlob(item["Key"].rsplit("/", 1)[-1], item["LastModified"])

    def delete(self, sha256: str) -> None:
        """Delete the object of ``sha256``."""
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))

    def _export_key(self, relative: str) -> str:
        return f"{self.prefix}exports/{relative}".replace("//", "/")

    def publish_export(self, export_dir: Path, path: Path, to_prune: Callable[[list[str]], list[str]]) -> None:
        """Upload a scheduled export to ``<prefix>/exports/<folder>/<name>``, drop the local copy, prune old ones."""
        relative = path.resolve().relative_to(export_dir.resolve())
        self.client.upload_file(str(path), self.bucket, self._export_key(relative.as_posix()), Config=self.transfer)
        path.unlink(missing_ok=True)
        folder = relative.parent.as_posix()
        for name in to_prune(self.list_exports(folder)):
            self.client.delete_object(Bucket=self.bucket, Key=self._export_key(f"{folder}/{name}"))

    def list_exports(self, folder: str) -> list[str]:
        """File names of the scheduled exports in ``folder`` (relative to the export root)."""
        prefix = self._export_key(f"{folder}/") if folder not in ("", ".") else self._export_key("")
        return [item["Key"][len(prefix) :] for item in self._list(prefix) if "/" not in item["Key"][len(prefix) :]]

    # --- partial uploads: one object per PATCH ---------------------------------------------------

    def _segments_prefix(self, upload_id: str) -> str:
        return f"{self.prefix}uploads/{upload_id}/"

    def _assembled_key(self, upload_id: str) -> str:
        return f"{self.prefix}tmp/{upload_id}"

    def create_partial(self, upload_id: str) -> None:
        """Nothing to prepare: segments are written by each PATCH."""

    def write_partial(
        self,
        upload_id: str,
        offset: int,
        chunks: Iterable[bytes],
        limit: int,
        *,
        advance: Callable[[int], bool] | None = None,
        keep_cut: bool = True,
    ) -> tuple[int, BaseException | None]:
        """Spool the PATCH body locally and store it as segments: one per ``PROGRESS_BYTES``, one for the rest.

        A cut body's bytes are stored too (``keep_cut``), so nothing that reached this host is lost
        while it lives; a crash loses at most the bytes since the last segment.
        """
        fd, spool = tempfile.mkstemp(dir=self.tmp, prefix="patch-")
        stored = 0  # of this body, in segments already

        def persist(end: int) -> None:
            nonlocal stored
            if end <= stored:
                return
            handle.flush()
            key = f"{self._segments_prefix(upload_id)}{offset + stored:016d}-{offset + end:016d}-{uuid.uuid4().hex[:8]}"
            self.client.upload_file(spool, self.bucket, key, Config=self.transfer)
            handle.seek(0)
            handle.truncate()
            stored = end

        try:
            with os.fdopen(fd, "wb") as handle:
                return _receive_body(
                    chunks, limit, lambda chunk, _at: handle.write(chunk), persist, advance, keep_cut=keep_cut
                )
        finally:
            os.unlink(spool)

    def _chain(self, upload_id: str, length: int) -> list[tuple[str, int]] | None:
        """Segments covering [0, length) end to end, each with where to start reading it, else None.

        PATCHes of one upload may overlap (one resumed while another was still arriving): from each
        position the segment reaching furthest is taken, read from that position on.
        """
        segments: list[tuple[int, int, str]] = []
        for item in self._list(self._segments_prefix(upload_id)):
            start, end, _nonce = item["Key"].rsplit("/", 1)[-1].split("-")
            segments.append((int(start), int(end), item["Key"]))
        chain: list[tuple[str, int]] = []
        position = 0
        while position < length:
            reach = [(end, start, key) for start, end, key in segments if start <= position < end <= length]
            if not reach:
                return None
            end, start, key = max(reach)
            chain.append((key, position - start))
            position = end
        return chain

    def finish_partial(self, upload_id: str, length: int) -> str:
        """Stream the segments in order into one object while hashing; return the sha256 ("" if incomplete)."""
        chain = self._chain(upload_id, length)
        if chain is None:
            return ""
        reader = _SegmentReader(self.client, self.bucket, chain)
        self.client.upload_fileobj(reader, self.bucket, self._assembled_key(upload_id), Config=self.transfer)
        return reader.digest.hexdigest()

    def adopt_partial(self, session: Session, upload_id: str, sha256: str, length: int, content_type: str) -> None:
        """Record the row, then copy the assembled object to its content address (server side)."""
        record_blob(session, sha256, length, content_type)
        if not self.has_file(sha256):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._assembled_key(upload_id)},
                self.bucket,
                self.key_for(sha256),
                ExtraArgs={"ContentType": content_type, "MetadataDirective": "REPLACE"},
                Config=self.transfer,
            )

    def delete_partial(self, upload_id: str) -> None:
        """Delete an upload's segments and its assembled object."""
        keys = [item["Key"] for item in self._list(self._segments_prefix(upload_id))]
        keys.append(self._assembled_key(upload_id))
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at a time
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        self._receiving_path(upload_id).unlink(missing_ok=True)

    def list_partials(self) -> Iterator[str]:
        """The ids of every upload with segments kept."""
        seen: set[str] = set()
        for item in self._list(f"{self.prefix}uploads/"):
            upload_id = item["Key"][len(self.prefix) + len("uploads/") :].split("/", 1)[0]
            if upload_id not in seen:
                seen.add(upload_id)
                yield upload_id


class _SegmentReader:
    """A read()-able stream over several objects in order, hashing what it hands out."""

    def __init__(self, client: Any, bucket: str, keys: list[tuple[str, int]]) -> None:
        self.client, self.bucket, self.keys = client, bucket, list(keys)
        self.digest = hashlib.sha256()
        self.body: Any = None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (boto3 reads parts of the multipart upload this way)."""
        wanted = CHUNK if size is None or size < 0 else size
        out = bytearray()
        while len(out) < wanted:
            if self.body is None:
                if not self.keys:
                    break
                key, skip = self.keys.pop(0)
                ranged = {"Range": f"bytes={skip}-"} if skip else {}
                self.body = self.client.get_object(Bucket=self.bucket, Key=key, **ranged)["Body"]
            block = self.body.read(wanted - len(out))
            if not block:
                self.body.close()
                self.body = None
                continue
            out += block
        data = bytes(out)
        self.digest.update(data)
        return data


def s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for ``settings`` (path-style addressing when an endpoint is given: MinIO, moto)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region or "us-east-1",
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        config=Config(
            s3={"addressing_style": "path"} if settings.endpoint_url else {},
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=32,
        ),
    )


# --- choosing the store -----------------------------------------------------------------------

_STORES: dict[tuple[Any, ...], BlobStore] = {}
_S3_KEYS = ("BLOB_STORE", "S3_ENDPOINT_URL", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
_STORES_LOCK = threading.Lock()


def s3_settings(config: Any) -> S3Settings | None:
    """The S3 settings of an app config (``BLOB_STORE=s3://...``), or None for the local folder."""
    url = (config.get("BLOB_STORE") or "").strip()
    if not url:
        return None
    bucket, prefix = parse_s3_url(url)
    return S3Settings(
        bucket,
        prefix,
        endpoint_url=config.get("S3_ENDPOINT_URL") or None,
        region=config.get("S3_REGION") or None,
        access_key_id=config.get("S3_ACCESS_KEY_ID") or None,
        secret_access_key=config.get("S3_SECRET_ACCESS_KEY") or None,
    )


def check_config(config: Any) -> None:
    """Refuse a ``FIELDSYNC_BLOB_STORE`` that is neither empty nor ``s3://bucket/prefix``, at start."""
    try:
        s3_settings(config)
    except ValueError as exc:
        raise ValueError(f"FIELDSYNC_BLOB_STORE: {exc}") from None


def configured_blob_store() -> BlobStore | None:
    """The current app's blob store, or None outside an app (callers then use the local folders only)."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    return blob_store(Path(current_app.config["STORAGE_DIR"]))


def blob_store(storage_dir: Path, config: Any | None = None) -> BlobStore:
    """The configured blob store for ``storage_dir`` (``config``: the current app's by default), one per setting."""
    if config is None:
        from flask import current_app, has_app_context

        config = current_app.config if has_app_context() else {}
    # The raw values are the key: a dict probe per call (this runs on every submission), parsing on a miss.
    key = (storage_dir, *(config.get(name) for name in _S3_KEYS))
    found = _STORES.get(key)
    if found is None:
        with _STORES_LOCK:
            found = _STORES.get(key)
            if found is None:
                settings = s3_settings(config)
                found = S3BlobStore(Path(storage_dir), settings) if settings else BlobStore(Path(storage_dir))
                _STORES[key] = found
    return found
