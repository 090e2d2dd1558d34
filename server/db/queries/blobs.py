"""Queries on which blobs a project may use (``project_blobs``); the session comes first, nothing commits."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.blobs import ProjectBlob
from server.db.upsert import insert_ignore


def grant_blob(session: Session, project_id: int, sha256: str) -> None:
    """Record that ``project_id`` delivered the bytes of ``sha256`` (idempotent, race-free)."""
    values = {"project_id": project_id, "sha256": sha256, "created_at": utcnow()}
    insert_ignore(session, ProjectBlob.__table__, values, ["project_id", "sha256"])  # type: ignore[arg-type]


def project_blobs(session: Session, project_id: int, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` this project delivered (and so may reference); other projects' blobs are absent."""
    wanted = sorted(set(hashes))
    if not wanted:
        return set()
    rows = session.scalars(
        select(ProjectBlob.sha256).where(ProjectBlob.project_id == project_id, ProjectBlob.sha256.in_(wanted))
    )
    return set(rows.all())
