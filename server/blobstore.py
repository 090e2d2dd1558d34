"""Content-addressed file storage under ``FIELDSYNC_STORAGE_DIR``: bytes on disk, a row in ``blobs``.

The file is written (temporary name, fsync, atomic rename) before its row is inserted, so a row
never exists without its bytes; an orphan file left by a rolled-back transaction is harmless and
is simply reused by the next write of the same content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from server.db.models import Blob
from server.db.upsert import insert_ignore
from server.errors import too_large

CHUNK = 256 * 1024


class BlobStore:
    """Blobs named by sha256 under ``root/blobs``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "blobs"
        self.tmp = Path(root) / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Return where the bytes of ``sha256`` live."""
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has_file(self, sha256: str) -> bool:
        """Tell whether the bytes of ``sha256`` are on disk."""
        return self.path_for(sha256).is_file()

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
        """Move a fully written, already hashed file into place and record its row."""
        final = self.path_for(sha256)
        if not final.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
        insert_ignore(
            session, Blob.__table__, {"sha256": sha256, "size": size, "content_type": content_type}, ["sha256"]
        )

    def open(self, sha256: str) -> BinaryIO:
        """Open the bytes of ``sha256`` for reading."""
        return open(self.path_for(sha256), "rb")

    def iter_bytes(self, sha256: str) -> Iterator[bytes]:
        """Yield the bytes of ``sha256`` in chunks (for streamed responses)."""
        with self.open(sha256) as handle:
            yield from _read_chunks(handle)


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk


def blob_store(storage_dir: Path) -> BlobStore:
    """Return the blob store rooted at ``storage_dir``."""
    return BlobStore(storage_dir)
