"""Console pages of projects: the list, creating and archiving a project, its entity lists, the audit log."""

from __future__ import annotations

from flask import Response, redirect, request, url_for

from server.auth import require, require_admin, require_user
from server.console import bp
from server.console.pages import api_field_errors, load_form, notice, render, who
from server.console.schemas import ArchiveForm, AuditFilter, ProjectForm
from server.errors import ApiError
from server.services import accounts as accounts_svc
from server.services import overview
from server.services import projects as projects_svc
from server.store import db_session


def _projects_page(status: int = 200, **context: object) -> tuple[str, int]:
    signed_in = who()
    assert signed_in is not None
    projects = overview.visible_projects(db_session(), signed_in.user_id, signed_in.is_admin)
    context.setdefault("values", {})
    context.setdefault("errors", {})
    return render("projects.html", status, projects=projects, **context)


@bp.get("/projects")
def projects() -> tuple[str, int]:
    """The projects the user sees; admins also get the form to create one."""
    require_user()
    return _projects_page()


@bp.post("/projects")
def create_project() -> Response | tuple[str, int]:
    """Create a project (admin)."""
    principal = require_admin()
    values, errors = load_form(ProjectForm())
    if errors:
        return _projects_page(400, values=values, errors=errors)
    try:
        project = accounts_svc.create_project(db_session(), values["name"].strip(), actor=principal.actor)
    except ApiError as error:
        fields = api_field_errors(error) or {"name": [error.code]}
        return _projects_page(error.status, values=values, errors=fields, error=error)
    notice("project_created")
    return redirect(url_for("console.forms", project_id=project.id))


@bp.post("/projects/<int:project_id>/archive")
def archive_project(project_id: int) -> Response:
    """Archive or restore a project (admin)."""
    principal = require_admin()
    values, errors = load_form(ArchiveForm())
    if errors:
        raise ApiError(400, "invalid_input", "archived must be true or false")
    projects_svc.set_archived(db_session(), project_id, values["archived"], actor=principal.actor)
    notice("project_archived" if values["archived"] else "project_restored")
    return redirect(url_for("console.projects"))


@bp.get("/projects/<int:project_id>/entities")
def entity_lists(project_id: int) -> tuple[str, int]:
    """The project's entity lists with their properties and sizes."""
    require("entity.read", project_id)
    session = db_session()
    return render(
        "entities.html",
        project=overview.get_project(session, project_id),
        lists=overview.entity_lists(session, project_id),
    )


def _audit_page(project_id: int | None) -> tuple[str, int]:
    values, errors = load_form(AuditFilter(), request.args)
    if errors:
        values = {"action": None, "before_id": None}
    session = db_session()
    page = overview.audit_page(session, project_id, values.get("action") or None, values.get("before_id"))
    project = overview.get_project(session, project_id) if project_id is not None else None
    return render("audit.html", project=project, page=page, action=values.get("action") or "")


@bp.get("/audit")
def audit_log() -> tuple[str, int]:
    """The whole audit log (admin), newest first, filtered by action, paged."""
    require_admin()
    return _audit_page(None)


@bp.get("/projects/<int:project_id>/audit")
def project_audit_log(project_id: int) -> tuple[str, int]:
    """A project's audit log (managers), newest first, filtered by action, paged."""
    require("audit.read", project_id)
    return _audit_page(project_id)
