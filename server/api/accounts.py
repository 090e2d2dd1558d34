"""JSON API for projects, users, memberships, devices, sessions and the audit log."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from server.api.contract import documented
from server.api.schemas import (
    AuditListOut,
    AuditOut,
    AuditQuery,
    DeviceIn,
    DeviceIssuedOut,
    DeviceListOut,
    DeviceOut,
    MemberListOut,
    MembershipIn,
    MembershipOut,
    ProjectIn,
    ProjectListOut,
    ProjectOut,
    SessionIn,
    SessionOut,
    UserIn,
    UserListOut,
    UserOut,
)
from server.api.wire import load_json, load_query
from server.auth import principal_from_password, require, require_admin, require_user
from server.db.models import User
from server.db.queries import accounts as q
from server.errors import not_found, unauthenticated
from server.services import accounts as svc
from server.services import audit_log
from server.store import db_session

bp = Blueprint("accounts", __name__, url_prefix="/v1")

AUDIT_PROJECT_HINT = (
    "a project manager reads their project's events by adding ?project_id=<id> "
    "(GET /v1/projects lists the projects you are in)"
)


def public_url() -> str:
    """Return the public URL of this server (``FIELDSYNC_PUBLIC_URL``, else the one the caller used)."""
    from flask import current_app

    return str(current_app.config.get("PUBLIC_URL") or request.host_url)


@bp.post("/sessions")
@documented({201: SessionOut}, body=SessionIn, public=True, errors=(401,))
def create_session() -> tuple[dict[str, Any], int]:
    """Exchange a username and password for a 24-hour bearer token."""
    body = load_json(SessionIn())
    principal = principal_from_password(body["username"], body["password"], scheme="session")
    if principal is None:
        raise unauthenticated("Wrong username or password")
    user = db_session().get(User, principal.id)
    assert user is not None
    issued = svc.create_session_token(db_session(), user)
    return {"token": issued.token, "expires_at": issued.expires_at.isoformat() if issued.expires_at else None}, 201


@bp.get("/users/current")
@documented({200: UserOut})
def current_user() -> dict[str, Any]:
    """Describe the authenticated user."""
    principal = require_user()
    user = db_session().get(User, principal.id)
    result: dict[str, Any] = UserOut().dump(user)
    return result


@bp.get("/users")
@documented({200: UserListOut})
def list_users() -> dict[str, Any]:
    """List every user (admin)."""
    require_admin()
    from sqlalchemy import select

    users = db_session().scalars(select(User).order_by(User.id)).all()
    return {"users": UserOut(many=True).dump(users)}


@bp.post("/users")
@documented({201: UserOut}, body=UserIn, errors=(409,))
def create_user() -> tuple[dict[str, Any], int]:
    """Create a user (admin)."""
    principal = require_admin()
    body = load_json(UserIn())
    user = svc.create_user(
        db_session(), body["username"], body["password"], is_admin=body["is_admin"], actor=principal.actor
    )
    return UserOut().dump(user), 201


@bp.get("/projects")
@documented({200: ProjectListOut})
def list_projects() -> dict[str, Any]:
    """List the projects the caller can see."""
    principal = require_user()
    projects = q.list_projects(db_session(), None if principal.is_admin else principal.id)
    return {"projects": ProjectOut(many=True).dump(projects)}


@bp.post("/projects")
@documented({201: ProjectOut}, body=ProjectIn, errors=(409,))
def create_project() -> tuple[dict[str, Any], int]:
    """Create a project (admin)."""
    principal = require_admin()
    body = load_json(ProjectIn())
    project = svc.create_project(db_session(), body["name"], actor=principal.actor)
    return ProjectOut().dump(project), 201


@bp.get("/projects/<int:project_id>")
@documented({200: ProjectOut})
def get_project(project_id: int) -> dict[str, Any]:
    """Describe one project."""
    require("project.read", project_id)
    project = q.get_project(db_session(), project_id)
    if project is None:
        raise not_found("project", project_id=project_id)
    result: dict[str, Any] = ProjectOut().dump(project)
    return result


@bp.get("/projects/<int:project_id>/members")
@documented({200: MemberListOut})
def list_members(project_id: int) -> dict[str, Any]:
    """List a project's members and roles (manager)."""
    require("people.manage", project_id)
    rows = q.list_memberships(db_session(), project_id)
    members = [{"username": u.username, "user_id": u.id, "role": m.role} for m, u in rows]
    return {"members": MembershipOut(many=True).dump(members)}


@bp.post("/projects/<int:project_id>/members")
@documented({201: MembershipOut}, body=MembershipIn)
def set_member(project_id: int) -> tuple[dict[str, Any], int]:
    """Give a user a role in the project (manager)."""
    principal = require("people.manage", project_id)
    body = load_json(MembershipIn())
    membership = svc.set_membership(db_session(), project_id, body["username"], body["role"], principal.actor)
    return {"username": body["username"], "user_id": membership.user_id, "role": membership.role}, 201


@bp.get("/projects/<int:project_id>/devices")
@documented({200: DeviceListOut})
def list_devices(project_id: int) -> dict[str, Any]:
    """List the project's device tokens (manager); secrets are never shown again."""
    require("people.manage", project_id)
    return {"devices": DeviceOut(many=True).dump(q.list_devices(db_session(), project_id))}


@bp.post("/projects/<int:project_id>/devices")
@documented({201: DeviceIssuedOut}, body=DeviceIn)
def create_device(project_id: int) -> tuple[dict[str, Any], int]:
    """Issue a device token and its ODK Collect URL (manager)."""
    principal = require("people.manage", project_id)
    body = load_json(DeviceIn())
    issued = svc.create_device(
        db_session(), project_id, body["name"], expires_at=body["expires_at"], actor=principal.actor
    )
    return _issued_device(issued), 201


@bp.post("/projects/<int:project_id>/devices/<int:device_id>/reissue")
@documented({201: DeviceIssuedOut})
def reissue_device(project_id: int, device_id: int) -> tuple[dict[str, Any], int]:
    """Replace a device's token (lost phone or URL): the old one is revoked, the new one shown once (manager)."""
    principal = require("people.manage", project_id)
    issued = svc.reissue_device(db_session(), project_id, device_id, principal.actor)
    return _issued_device(issued), 201


def _issued_device(issued: svc.IssuedToken) -> dict[str, Any]:
    return {
        "id": issued.id,
        "name": issued.name,
        "token": issued.token,
        "collect_url": issued.collect_url(public_url()),
        "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
    }


@bp.delete("/projects/<int:project_id>/devices/<int:device_id>")
@documented({200: DeviceOut})
def revoke_device(project_id: int, device_id: int) -> dict[str, Any]:
    """Revoke a device token (manager)."""
    principal = require("people.manage", project_id)
    token = svc.revoke_device(db_session(), project_id, device_id, principal.actor)
    result: dict[str, Any] = DeviceOut().dump(token)
    return result


@bp.get("/audits")
@documented({200: AuditListOut}, query=AuditQuery)
def list_audits() -> dict[str, Any]:
    """Read the audit log (admin; managers with ``project_id`` of their project)."""
    params = load_query(AuditQuery())
    if params["project_id"] is None:
        require_admin(AUDIT_PROJECT_HINT)
    else:
        require("audit.read", params["project_id"])
    events = audit_log.read_audit_log(
        db_session(),
        params["project_id"],
        params["action"],
        params["limit"],
        params["before_id"],
        since=params["since"],
        until=params["until"],
    )
    return {"events": AuditOut(many=True).dump(events)}
