"""Read-only figures the console's lists show: per-form submission counts, held items, entity list sizes,
and the names behind audit actors. Queries never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from server.db.models import AccessToken, Project, User
from server.db.models.submissions import Submission
from server.db.models.sync import Entity, EntityList, HeldItem


def submission_counts(session: Session, project_id: int) -> dict[int, tuple[int, datetime | None, int]]:
    """Return {form pk: (live submissions, newest arrival, awaiting review)} for a project."""
    rows = session.execute(
        select(
            Submission.form_id,
            func.count(),
            func.max(Submission.updated_at),
            func.sum(case((Submission.review_state == "received", 1), else_=0)),
        )
        .where(Submission.project_id == project_id, Submission.deleted_at.is_(None))
        .group_by(Submission.form_id)
    ).all()
    return {form_id: (int(count), newest, int(awaiting or 0)) for form_id, count, newest, awaiting in rows}


def open_held_submissions(session: Session, project_id: int) -> Sequence[Any]:
    """Return the raw items of the project's open quarantined submissions (few: each one awaits a person)."""
    return session.scalars(
        select(HeldItem.raw).where(
            HeldItem.project_id == project_id,
            HeldItem.status == "open",
            HeldItem.outcome == "quarantined",
            HeldItem.kind == "submission",
        )
    ).all()


def entity_list_sizes(session: Session, project_id: int) -> Sequence[tuple[EntityList, int]]:
    """Return the project's entity lists with how many live entities each holds."""
    live = (
        select(Entity.list_id, func.count().label("n"))
        .where(Entity.deleted.is_(False))
        .group_by(Entity.list_id)
        .subquery()
    )
    rows = session.execute(
        select(EntityList, func.coalesce(live.c.n, 0))
        .outerjoin(live, live.c.list_id == EntityList.id)
        .where(EntityList.project_id == project_id)
        .order_by(EntityList.name)
    ).all()
    return [(entity_list, int(n)) for entity_list, n in rows]


def usernames(session: Session, user_ids: Iterable[int]) -> dict[int, str]:
    """Return {user id: username} for the given ids."""
    ids = set(user_ids)
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()
    return {user_id: username for user_id, username in rows}


def project_names(session: Session, project_ids: Iterable[int]) -> dict[int, str]:
    """Return {project id: name} for the given ids."""
    ids = set(project_ids)
    if not ids:
        return {}
    rows = session.execute(select(Project.id, Project.name).where(Project.id.in_(ids))).all()
    return {project_id: name for project_id, name in rows}


def device_names(session: Session, token_ids: Iterable[int]) -> dict[int, str]:
    """Return {device token id: name} for the given ids."""
    ids = set(token_ids)
    if not ids:
        return {}
    rows = session.execute(select(AccessToken.id, AccessToken.name).where(AccessToken.id.in_(ids))).all()
    return {token_id: name for token_id, name in rows}
