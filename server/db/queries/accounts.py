"""Queries over projects, users, memberships and access tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AccessToken, Membership, Project, User


def get_user_by_username(session: Session, username: str) -> User | None:
    """Return the user called ``username``."""
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def get_project(session: Session, project_id: int) -> Project | None:
    """Return the project with this id."""
    return session.get(Project, project_id)


def list_projects(session: Session, user_id: int | None = None) -> Sequence[Project]:
    """Return every project, or only those ``user_id`` is a member of."""
    stmt = select(Project).order_by(Project.id)
    if user_id is not None:
        stmt = stmt.join(Membership, Membership.project_id == Project.id).where(Membership.user_id == user_id)
    return session.scalars(stmt).all()


def get_membership_role(session: Session, project_id: int, user_id: int) -> str | None:
    """Return the user's role in the project, if any."""
    return session.scalars(
        select(Membership.role).where(Membership.project_id == project_id, Membership.user_id == user_id)
    ).one_or_none()


def list_memberships(session: Session, project_id: int) -> Sequence[tuple[Membership, User]]:
    """Return the project's members with their users."""
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project_id)
        .order_by(User.username)
    ).all()
    return [(m, u) for m, u in rows]


def get_token_by_hash(session: Session, token_hash: str) -> AccessToken | None:
    """Return the access token whose sha256 is ``token_hash``."""
    return session.scalars(select(AccessToken).where(AccessToken.token_hash == token_hash)).one_or_none()


def list_devices(session: Session, project_id: int) -> Sequence[AccessToken]:
    """Return the project's device tokens, newest first."""
    return session.scalars(
        select(AccessToken)
        .where(AccessToken.project_id == project_id, AccessToken.kind == "device")
        .order_by(AccessToken.id.desc())
    ).all()
