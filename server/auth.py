"""Who is calling and what they may do: HTTP Basic, bearer tokens, device tokens in the path, roles.

Roles: ``admin`` (a user flag: everything), and per project ``manager`` (forms and people),
``coach`` (download forms, submit, sync) and ``analyst`` (read and export). A device token acts
as a coach of its one project. A missing or wrong credential is ``401``; a right one without the
permission is ``403``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flask import g, request

from server.db.base import utcnow
from server.db.models import AccessToken, User
from server.db.queries import accounts as q
from server.errors import forbidden, unauthenticated
from server.passwords import token_hash, verify_password
from server.store import db_session

PERMISSIONS: dict[str, frozenset[str]] = {
    "manager": frozenset(
        {
            "project.read",
            "form.read",
            "form.write",
            "submission.read",
            "submission.create",
            "submission.review",
            "submission.delete",
            "export",
            "export.schedule",
            "people.manage",
            "entity.read",
            "entity.resolve",
            "quarantine.manage",
            "sync.push",
            "sync.pull",
            "audit.read",
            "indicator.read",
            "indicator.manage",
        }
    ),
    "coach": frozenset({"project.read", "form.read", "submission.create", "sync.push", "sync.pull", "entity.read"}),
    "analyst": frozenset({"project.read", "form.read", "submission.read", "export", "entity.read", "indicator.read"}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (maybe admin) or a device bound to one project."""

    kind: str  # "user" | "device"
    id: int
    name: str
    is_admin: bool = False
    project_id: int | None = None  # devices only
    role: str | None = None  # devices only

    @property
    def actor(self) -> str:
        """Return the audit-log name of this caller."""
        return f"{self.kind}:{self.id}"

    def role_in(self, project_id: int) -> str | None:
        """Return this caller's role in a project (``admin`` for admins)."""
        if self.is_admin:
            return "admin"
        if self.kind == "device":
            return self.role if self.project_id == project_id else None
        return q.get_membership_role(db_session(), project_id, self.id)

    def can(self, permission: str, project_id: int | None) -> bool:
        """Tell whether this caller holds ``permission`` (in ``project_id`` when given)."""
        if self.is_admin:
            return True
        if project_id is None:
            return False
        role = self.role_in(project_id)
        return role is not None and permission in PERMISSIONS.get(role, frozenset())


def principal_from_token(token: str) -> Principal | None:
    """Resolve a bearer or path token to a principal; ``None`` when unknown, revoked or expired."""
    row = q.get_token_by_hash(db_session(), token_hash(token))
    if row is None or not token_is_live(row):
        return None
    return _principal_of_token(row)


class _TokenState(Protocol):
    """What both an ``AccessToken`` and a lean token row offer (read-only)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def project_id(self) -> int | None: ...
    @property
    def role(self) -> str | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


def token_is_live(row: _TokenState) -> bool:
    """Tell whether an access token (ORM object or lean row) is neither revoked nor expired."""
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > utcnow())


def device_principal(row: _TokenState) -> Principal:
    """The principal of a device token (ORM object or lean row)."""
    return Principal("device", row.id, row.name, project_id=row.project_id, role=row.role)


def _principal_of_token(row: AccessToken) -> Principal | None:
    if row.kind == "device":
        return device_principal(row)
    if row.user_id is None:
        return None
    user = db_session().get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return Principal("user", user.id, user.username, is_admin=user.is_admin)


def principal_from_password(username: str, password: str) -> Principal | None:
    """Check a username and password; ``None`` when they do not match an enabled user."""
    user = q.get_user_by_username(db_session(), username)
    if user is None or user.disabled or not verify_password(user.password_hash, password):
        return None
    return Principal("user", user.id, user.username, is_admin=user.is_admin)


def current_principal() -> Principal | None:
    """Authenticate this request from its ``Authorization`` header (cached per request)."""
    if "principal" in g:
        cached: Principal | None = g.principal
        return cached
    principal: Principal | None = None
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        principal = principal_from_token(value.strip())
        if principal is None:
            raise unauthenticated("The bearer token is unknown, revoked or expired")
    elif scheme.lower() == "basic" and value:
        try:
            username, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthenticated("Malformed Basic credentials") from None
        principal = principal_from_password(username, password)
        if principal is None:
            raise unauthenticated("Wrong username or password", challenge='Basic realm="Fieldsync"')
    g.principal = principal
    return principal


def require(permission: str, project_id: int | None = None) -> Principal:
    """Return the caller if they hold ``permission``; else raise ``401`` (no credential) or ``403``."""
    principal = current_principal()
    if principal is None:
        raise unauthenticated(challenge='Basic realm="Fieldsync"')
    if not principal.can(permission, project_id):
        raise forbidden(f"This needs the {permission!r} permission")
    return principal


def require_admin() -> Principal:
    """Return the caller if they are an admin; else ``401``/``403``."""
    principal = current_principal()
    if principal is None:
        raise unauthenticated(challenge='Basic realm="Fieldsync"')
    if not principal.is_admin:
        raise forbidden("Only an admin can do this")
    return principal


def require_user() -> Principal:
    """Return the caller if it is an authenticated person (not a device)."""
    principal = current_principal()
    if principal is None:
        raise unauthenticated(challenge='Basic realm="Fieldsync"')
    if principal.kind != "user":
        raise forbidden("Devices cannot do this")
    return principal
