"""Project lifecycle beyond creation: archive a finished programme, or bring it back."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.db.models import Project
from server.db.queries import accounts as q
from server.db.queries import audit
from server.db.transaction import transaction
from server.errors import not_found


def set_archived(session: Session, project_id: int, archived: bool, *, actor: str) -> Project:
    """Archive (or restore) a project; setting the state it already has changes nothing and logs nothing."""
    with transaction(session):
        project = q.get_project(session, project_id)
        if project is None:
            raise not_found("project", project_id=project_id)
        if project.archived != archived:
            project.archived = archived
            audit.record(
                session,
                actor,
                "project.archive" if archived else "project.restore",
                project_id,
                f"project:{project_id}",
            )
        session.flush()
    return project
