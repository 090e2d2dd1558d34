"""Accounts use cases: users, projects, memberships, device tokens and API sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import AccessToken, Membership, Project, User
from server.db.queries import accounts as q
from server.db.queries import audit
from server.db.transaction import transaction
from server.errors import ApiError, conflict, not_found
from server.passwords import digest_ha1, hash_password, new_token, token_hash

SESSION_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: the secret is shown once, only its hash is stored."""

    id: int
    token: str
    name: str
    project_id: int | None
    expires_at: datetime | None


def create_user(
    session: Session, username: str, password: str, *, is_admin: bool = False, actor: str = "system"
) -> User:
    """Create a user; ``409`` when the name is taken."""
    with transaction(session):
        user = User(
            username=username,
            password_hash=hash_password(password),
            digest_ha1=digest_ha1(username, password),
            is_admin=is_admin,
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            raise conflict("username_taken", f"A user called {username!r} already exists") from None
        audit.record(session, actor, "user.create", subject=f"user:{user.id}", details={"username": username})
    return user


def set_password(session: Session, username: str, password: str, actor: str = "system") -> None:
    """Replace a user's password."""
    with transaction(session):
        user = q.get_user_by_username(session, username)
        if user is None:
            raise not_found("user", username=username)
        user.password_hash = hash_password(password)
        user.digest_ha1 = digest_ha1(username, password)
        audit.record(session, actor, "user.password", subject=f"user:{user.id}")


def create_project(session: Session, name: str, actor: str = "system") -> Project:
    """Create a project; ``409`` when the name is taken."""
    with transaction(session):
        project = Project(name=name)
        session.add(project)
        try:
            session.flush()
        except IntegrityError:
            raise conflict("project_name_taken", f"A project called {name!r} already exists") from None
        audit.record(session, actor, "project.create", project.id, f"project:{project.id}", {"name": name})
    return project


def set_membership(session: Session, project_id: int, username: str, role: str, actor: str = "system") -> Membership:
    """Give ``username`` the ``role`` in the project (replacing an earlier role)."""
    with transaction(session):
        if q.get_project(session, project_id) is None:
            raise not_found("project", project_id=project_id)
        user = q.get_user_by_username(session, username)
        if user is None:
            raise not_found("user", username=username)
        existing = [m for m, u in q.list_memberships(session, project_id) if u.id == user.id]
        if existing:
            membership = existing[0]
            membership.role = role
        else:
            membership = Membership(project_id=project_id, user_id=user.id, role=role)
            session.add(membership)
        session.flush()
        audit.record(session, actor, "membership.set", project_id, f"user:{user.id}", {"role": role})
    return membership


def create_device(
    session: Session, project_id: int, name: str, *, expires_at: datetime | None = None, actor: str = "system"
) -> IssuedToken:
    """Issue a device token for a phone (role coach in the project)."""
    with transaction(session):
        if q.get_project(session, project_id) is None:
            raise not_found("project", project_id=project_id)
        secret = new_token()
        token = AccessToken(
            token_hash=token_hash(secret),
            kind="device",
            name=name,
            project_id=project_id,
            role="coach",
            expires_at=expires_at,
        )
        session.add(token)
        session.flush()
        audit.record(session, actor, "device.create", project_id, f"device:{token.id}", {"name": name})
    return IssuedToken(token.id, secret, name, project_id, expires_at)


def revoke_device(session: Session, project_id: int, device_id: int, actor: str = "system") -> AccessToken:
    """Revoke a device token; revoking twice is harmless."""
    with transaction(session):
        token = session.get(AccessToken, device_id)
        if token is None or token.kind != "device" or token.project_id != project_id:
            raise not_found("device", device_id=device_id)
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            audit.record(session, actor, "device.revoke", project_id, f"device:{token.id}")
    return token


def create_session_token(session: Session, user: User) -> IssuedToken:
    """Issue a 24-hour API bearer token for a user who proved their password."""
    with transaction(session):
        secret = new_token()
        expires = utcnow() + SESSION_LIFETIME
        token = AccessToken(
            token_hash=token_hash(secret),
            kind="session",
            name=f"session for {user.username}",
            user_id=user.id,
            expires_at=expires,
        )
        session.add(token)
        session.flush()
        audit.record(session, f"user:{user.id}", "session.create", subject=f"user:{user.id}")
    return IssuedToken(token.id, secret, token.name, None, expires)


def require_role_name(role: str) -> str:
    """Validate a project role name."""
    if role not in ("manager", "coach", "analyst"):
        raise ApiError(
            400, "invalid_input", f"Unknown role {role!r}", {"fields": {"role": ["Must be manager, coach or analyst."]}}
        )
    return role
