"""Staging the files of an incoming submission: hashed to a temporary file, moved into the blob store only if kept.

A refused submission must leave the store untouched, blob directory included, so uploads are not
written into the content-addressed store until the ingestion decides to keep them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from server.blobstore import CHUNK, BlobStore
from server.errors import too_large
from server.services.submissions import FileUpload


def stage_upload(
    blobs: BlobStore, name: str, stream: IO[bytes], content_type: str | None, max_bytes: int
) -> FileUpload:
    """Copy one uploaded file to a staging file while hashing it; ``413`` beyond ``max_bytes``."""
    digest = hashlib.sha256()
    size = 0
    fd, staged = tempfile.mkstemp(dir=blobs.tmp, prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes, f"file {name!r}")
                digest.update(chunk)
                handle.write(chunk)
    except BaseException:
        os.unlink(staged)
        raise
    return FileUpload(
        name=name,
        sha256=digest.hexdigest(),
        size=size,
        content_type=content_type or "application/octet-stream",
        path=Path(staged),
    )


def discard_staged(files: Iterable[FileUpload]) -> None:
    """Remove staging files the ingestion did not move into the blob store."""
    for upload in files:
        if upload.path is not None:
            # A file moved into the blob store is gone from staging: nothing to remove.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(upload.path)
