"""Blobs are named by their content: bytes always hash to the name, storing twice stores once."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.blobstore import BlobStore
from server.db.models import Blob
from server.errors import ApiError


def test_store_twice_keeps_one_blob(session: Session, tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = "صورة المقر — photo du local".encode() * 1000
    first = store.put_bytes(session, data, "image/jpeg")
    second = store.put_stream(session, io.BytesIO(data), "image/jpeg")
    session.commit()
    assert first == second == hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(store.path_for(first).read_bytes()).hexdigest() == first
    assert session.scalar(select(func.count()).select_from(Blob).where(Blob.sha256 == first)) == 1
    assert b"".join(store.iter_bytes(first)) == data


def test_oversize_stream_is_refused_and_leaves_nothing(session: Session, tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ApiError) as error:
        store.put_stream(session, io.BytesIO(b"x" * 5000), max_bytes=4096)
    assert error.value.status == 413
    assert list(store.tmp.iterdir()) == []
    assert session.scalar(select(func.count()).select_from(Blob)) == 0
