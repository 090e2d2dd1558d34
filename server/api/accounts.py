"""JSON API for sessions, users, projects, role assignments, app users and the audit log, as ODK Central's.

Fieldsync's project roles are Central's: ``manager`` is Central's Project Manager (role 3), ``coach`` its
Data Collector (``formfill``, 4), ``analyst`` its Project Viewer (``viewer``, 5); an admin is Central's
Administrator (1). App users (Central's role 2) are Fieldsync's device tokens.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, Response, request

from server.api.contract import ListOf, documented
from server.api.conventions import json_list
from server.api.schemas import (
    ADMIN_ROLE,
    APP_USER_ROLE,
    CENTRAL_ROLES,
    AppUserIn,
    AppUserIssuedOut,
    AppUserOut,
    AssignmentOut,
    AuditOut,
    AuditQuery,
    FormAssignmentOut,
    ProjectIn,
    ProjectOut,
    RoleOut,
    SessionIn,
    SessionOut,
    SuccessOut,
    UserIn,
    UserOut,
)
from server.api.wire import load_json, load_query
from server.auth import principal_from_password, require, require_admin, require_user
from server.db.base import utcnow
from server.db.models import User
from server.db.queries import accounts as q
from server.errors import ApiError, not_found, unauthenticated
from server.services import accounts as svc
from server.services import audit_log
from server.store import db_session

bp = Blueprint("accounts", __name__, url_prefix="/v1")

AUDIT_PROJECT_HINT = (
    "a project manager reads their project's events by adding ?projectId=<id> "
    "(GET /v1/projects lists the projects you are in)"
)
SUCCESS = {"success": True}


def public_url() -> str:
    """Return the public URL of this server (``FIELDSYNC_PUBLIC_URL``, else the one the caller used)."""
    from flask import current_app

    return str(current_app.config.get("PUBLIC_URL") or request.host_url)


@bp.post("/sessions")
@documented({200: SessionOut}, body=SessionIn, public=True, errors=(401,))
def create_session() -> dict[str, Any]:
    """Exchange an email (or username) and password for a 24-hour bearer token."""
    body = load_json(SessionIn())
    name = svc.login_name(db_session(), body["email"])
    principal = principal_from_password(name, body["password"], scheme="session")
    if principal is None:
        raise unauthenticated("Could not authenticate with the provided credentials")
    user = db_session().get(User, principal.id)
    assert user is not None
    issued = svc.create_session_token(db_session(), user)
    result: dict[str, Any] = SessionOut().dump(
        {
            "token": issued.token,
            "csrf": secrets.token_urlsafe(32),
            "expires_at": issued.expires_at,
            "created_at": utcnow(),
        }
    )
    return result


@bp.delete("/sessions/<token>")
@documented({200: SuccessOut})
def end_session(token: str) -> dict[str, Any]:
    """Log out: revoke a session token (one's own; an admin's any)."""
    principal = require_user()
    svc.end_session(db_session(), token, principal.id, is_admin=principal.is_admin)
    return SUCCESS


@bp.get("/users/current")
@documented({200: UserOut})
def current_user() -> dict[str, Any]:
    """Describe the authenticated user."""
    principal = require_user()
    user = db_session().get(User, principal.id)
    result: dict[str, Any] = UserOut().dump(user)
    return result


@bp.get("/users")
@documented({200: ListOf(UserOut)})
def list_users() -> Response:
    """List every user (admin)."""
    require_admin()
    return json_list(svc.list_users(db_session()), UserOut())


@bp.post("/users")
@documented({200: UserOut}, body=UserIn, errors=(409,))
def create_user() -> dict[str, Any]:
    """Create a web user with an email and a password (admin)."""
    principal = require_admin()
    body = load_json(UserIn())
    user = svc.create_user(
        db_session(),
        body["username"] or body["email"],
        body["password"],
        is_admin=body["is_admin"],
        actor=principal.actor,
        email=body["email"],
        display_name=body["display_name"],
    )
    result: dict[str, Any] = UserOut().dump(user)
    return result


@bp.get("/roles")
@documented({200: ListOf(RoleOut)})
def list_roles() -> Response:
    """List Central's roles and the Fieldsync role each one is."""
    require_user()
    rows = [
        {"id": ADMIN_ROLE[0], "system": ADMIN_ROLE[1], "name": ADMIN_ROLE[2], "fieldsync_role": "admin"},
        {"id": APP_USER_ROLE[0], "system": APP_USER_ROLE[1], "name": APP_USER_ROLE[2], "fieldsync_role": "device"},
    ]
    rows += [
        {"id": i, "system": system, "name": name, "fieldsync_role": role}
        for role, (i, system, name) in CENTRAL_ROLES.items()
    ]
    return json_list(sorted(rows, key=lambda row: int(row["id"])), RoleOut())


@bp.get("/projects")
@documented({200: ListOf(ProjectOut)})
def list_projects() -> Response:
    """List the projects the caller can see."""
    principal = require_user()
    projects = q.list_projects(db_session(), None if principal.is_admin else principal.id)
    return json_list(projects, ProjectOut())


@bp.post("/projects")
@documented({200: ProjectOut}, body=ProjectIn, errors=(409,))
def create_project() -> dict[str, Any]:
    """Create a project (admin)."""
    principal = require_admin()
    body = load_json(ProjectIn())
    project = svc.create_project(db_session(), body["name"], actor=principal.actor)
    result: dict[str, Any] = ProjectOut().dump(project)
    return result


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


def fieldsync_role(role_id: str) -> str:
    """The Fieldsync project role of a Central role id or system name (``3`` or ``manager``); ``400`` otherwise."""
    for role, (number, system, _) in CENTRAL_ROLES.items():
        if role_id in (str(number), system):
            return role
    raise ApiError(
        400,
        "invalid_input",
        f"Unknown project role {role_id!r}: use 3 (manager), 4 (formfill, a coach) or 5 (viewer, an analyst)",
        {"fields": {"roleId": ["Must be 3, 4 or 5."]}},
    )


@bp.get("/projects/<int:project_id>/assignments")
@documented({200: ListOf(AssignmentOut)})
def list_assignments(project_id: int) -> Response:
    """List who holds which role in the project (manager)."""
    require("people.manage", project_id)
    rows = [
        {"actor_id": u.id, "role_id": CENTRAL_ROLES[m.role][0]} for m, u in q.list_memberships(db_session(), project_id)
    ]
    return json_list(rows, AssignmentOut())


@bp.post("/projects/<int:project_id>/assignments/<role_id>/<int:actor_id>")
@documented({200: SuccessOut})
def assign(project_id: int, role_id: str, actor_id: int) -> dict[str, Any]:
    """Give a user a role in the project, replacing the one they had (manager)."""
    principal = require("people.manage", project_id)
    svc.assign_role(db_session(), project_id, actor_id, fieldsync_role(role_id), principal.actor)
    return SUCCESS


@bp.delete("/projects/<int:project_id>/assignments/<role_id>/<int:actor_id>")
@documented({200: SuccessOut})
def unassign(project_id: int, role_id: str, actor_id: int) -> dict[str, Any]:
    """Take a role in the project away from a user (manager)."""
    principal = require("people.manage", project_id)
    svc.unassign_role(db_session(), project_id, actor_id, fieldsync_role(role_id), principal.actor)
    return SUCCESS


@bp.get("/projects/<int:project_id>/app-users")
@documented({200: ListOf(AppUserOut)})
def list_app_users(project_id: int) -> Response:
    """List the project's live app users (device tokens; manager); tokens are never shown again."""
    require("people.manage", project_id)
    live = [token for token in svc.list_devices(db_session(), project_id) if token.revoked_at is None]
    return json_list(live, AppUserOut())


@bp.post("/projects/<int:project_id>/app-users")
@documented({200: AppUserIssuedOut}, body=AppUserIn)
def create_app_user(project_id: int) -> dict[str, Any]:
    """Create an app user: its token and ODK Collect URL are in the answer, once (manager).

    It sees no form until one is assigned to it (``POST .../forms/{xmlFormId}/assignments/2/{id}``).
    """
    principal = require("people.manage", project_id)
    body = load_json(AppUserIn())
    issued = svc.create_app_user(db_session(), project_id, body["display_name"], actor=principal.actor)
    return _issued(issued)


@bp.post("/projects/<int:project_id>/app-users/<int:app_user_id>/reissue")
@documented({200: AppUserIssuedOut})
def reissue_app_user(project_id: int, app_user_id: int) -> dict[str, Any]:
    """Replace an app user's token (lost phone or URL): the old one is revoked, the new one shown once (manager)."""
    principal = require("people.manage", project_id)
    return _issued(svc.reissue_device(db_session(), project_id, app_user_id, principal.actor))


def _issued(issued: svc.IssuedToken) -> dict[str, Any]:
    result: dict[str, Any] = AppUserIssuedOut().dump(
        {
            "id": issued.id,
            "display_name": issued.name,
            "project_id": issued.project_id,
            "token": issued.token,
            "collect_url": issued.collect_url(public_url()),
            "created_at": utcnow(),
            "expires_at": issued.expires_at,
        }
    )
    return result


@bp.delete("/projects/<int:project_id>/app-users/<int:app_user_id>")
@documented({200: SuccessOut})
def revoke_app_user(project_id: int, app_user_id: int) -> dict[str, Any]:
    """Revoke an app user's token (manager)."""
    principal = require("people.manage", project_id)
    svc.revoke_device(db_session(), project_id, app_user_id, principal.actor)
    return SUCCESS


def _app_user_role(role_id: str) -> None:
    if role_id not in (str(APP_USER_ROLE[0]), APP_USER_ROLE[1]):
        raise ApiError(
            400,
            "invalid_input",
            f"Only the app-user role (2) can be given on a form, not {role_id!r}",
            {"fields": {"roleId": ["Must be 2 (app-user)."]}},
        )


@bp.get("/projects/<int:project_id>/assignments/forms")
@documented({200: ListOf(FormAssignmentOut)})
def list_form_assignments(project_id: int) -> Response:
    """List which forms each app user of the project sees (manager)."""
    require("people.manage", project_id)
    return json_list(_form_assignments(project_id, None), FormAssignmentOut())


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/assignments")
@documented({200: ListOf(FormAssignmentOut)})
def list_one_form_assignments(project_id: int, xml_form_id: str) -> Response:
    """List the app users a form is assigned to (manager)."""
    require("people.manage", project_id)
    return json_list(_form_assignments(project_id, xml_form_id), FormAssignmentOut())


def _form_assignments(project_id: int, xml_form_id: str | None) -> list[dict[str, Any]]:
    rows = svc.list_app_user_forms(db_session(), project_id, xml_form_id)
    return [{"actor_id": r.token_id, "role_id": APP_USER_ROLE[0], "xml_form_id": r.xml_form_id} for r in rows]


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/assignments/<role_id>/<int:actor_id>")
@documented({200: SuccessOut})
def assign_form(project_id: int, xml_form_id: str, role_id: str, actor_id: int) -> dict[str, Any]:
    """Let an app user see a form (role 2, app-user; manager): its formList then lists it."""
    principal = require("people.manage", project_id)
    _app_user_role(role_id)
    svc.set_app_user_form(db_session(), project_id, xml_form_id, actor_id, True, principal.actor)
    return SUCCESS


@bp.delete("/projects/<int:project_id>/forms/<xml_form_id>/assignments/<role_id>/<int:actor_id>")
@documented({200: SuccessOut})
def unassign_form(project_id: int, xml_form_id: str, role_id: str, actor_id: int) -> dict[str, Any]:
    """Stop an app user seeing a form (manager)."""
    principal = require("people.manage", project_id)
    _app_user_role(role_id)
    svc.set_app_user_form(db_session(), project_id, xml_form_id, actor_id, False, principal.actor)
    return SUCCESS


@bp.get("/audits")
@documented({200: ListOf(AuditOut)}, query=AuditQuery)
def list_audits() -> Response:
    """Read the audit log (admin; managers with ``projectId`` of their project)."""
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
    return json_list(events, AuditOut())
