"""The input row of every export: one stored submission version with its server-side metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """One submission version as the server hands it to an export.

    ``values`` has the shape of ``forms.record.SubmissionRecord.values``: groups are dicts, repeats
    lists of dicts, leaves strings. ``current`` is False for a version superseded by an edit;
    ``submission_date`` must be timezone-aware (it is written in UTC).
    """

    instance_id: str
    form_version: str
    submission_date: datetime
    values: Mapping[str, Any]
    submitter: str = ""
    device_id: str = ""
    review_state: str | None = None  # None: received, never reviewed
    attachments_present: int = 0
    attachments_expected: int = 0
    edits: int = 0
    deleted: bool = False
    current: bool = True
    submitter_id: int | None = None  # the submitting user's id (None: a device or nobody)
    updated_at: datetime | None = None  # the submission's last change (review, edit)

    def __post_init__(self) -> None:
        if self.submission_date.tzinfo is None:
            raise ValueError("ExportRecord.submission_date must be timezone-aware (it is written in UTC)")
