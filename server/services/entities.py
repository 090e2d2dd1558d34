"""Entity use cases (filled by the sync issue): apply a submission's entity changes, resolve conflicts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session


def apply_entity_changes(
    session: Session, project_id: int, record: Any, submission_version_id: int, actor: str
) -> None:
    """Apply the entity blocks of a stored submission version inside the caller's transaction."""
    return None
