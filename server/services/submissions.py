"""Submission use cases: ingest one submission (OpenRosa POST or JSON push item), review it.

The decisions (created, duplicate, edit, id conflict, closed or unknown form, missing files) are made by
``sync.submissions.decide_submission``; this module loads what the decision needs, applies it to the
store and reports the ``sync.outcomes`` value. Uniqueness of ``(project, form, instance_id)`` is the
database's job (``INSERT ... ON CONFLICT DO NOTHING``); a per-chain advisory lock on PostgreSQL keeps
edit chains consistent when their versions arrive concurrently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from server.auth import Principal
from sync.submissions import AttachmentRef, SubmissionOutcome

__all__ = ["AttachmentRef", "FileUpload", "IngestResult", "ingest_submission"]


@dataclass(frozen=True, slots=True)
class FileUpload:
    """A file delivered with a submission, already hashed and staged, not yet in the blob store.

    Exactly one of ``path`` (a staged file the service moves into the blob store when the file is
    kept) and ``data`` (the bytes in memory) is set.
    """

    name: str
    sha256: str
    size: int
    content_type: str = "application/octet-stream"
    path: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingesting one submission did: the ``sync.outcomes`` value and where it was stored."""

    outcome: SubmissionOutcome
    instance_id: str | None = None
    submission_id: int | None = None
    version_id: int | None = None
    form_id: str | None = None  # the XForm id of the submission's root
    form_version: str | None = None
    missing_attachments: tuple[str, ...] = ()


def ingest_submission(
    session: Session,
    *,
    project_id: int,
    xml: bytes,
    files: Mapping[str, FileUpload],
    principal: Principal,
    device_id: str | None,
    source: Literal["openrosa", "push"],
    declared_attachments: Sequence[AttachmentRef] = (),
    nested: bool = False,
    user_agent: str | None = None,
) -> IngestResult:
    """Store one submission (or add its files) and return its outcome; own transaction, or a SAVEPOINT if ``nested``."""
    raise NotImplementedError
