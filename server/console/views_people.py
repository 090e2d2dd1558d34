"""Console pages of people and phones: project members and roles, users (admin), phones with their QR codes.

A phone's token is shown once, when it is issued: the QR code page is the answer to that POST itself
(never a redirect, never stored, ``Cache-Control: no-store``), because only the token's hash is kept.
"""

from __future__ import annotations

from flask import Response, redirect, request, url_for
from markupsafe import Markup

from server.api.accounts import public_url
from server.auth import require, require_admin
from server.console import bp
from server.console.pages import api_field_errors, load_form, notice, render
from server.console.schemas import MemberForm, PhoneForm, UserForm
from server.db.models.accounts import PROJECT_ROLES
from server.errors import ApiError
from server.services import accounts as accounts_svc
from server.services import forms as forms_svc
from server.services import overview
from server.services.collect_settings import collect_payload, qr_svg
from server.store import db_session


def _members_page(project_id: int, status: int = 200, **context: object) -> tuple[str, int]:
    session = db_session()
    context.setdefault("values", {"role": "coach"})
    context.setdefault("errors", {})
    return render(
        "members.html",
        status,
        project=overview.get_project(session, project_id),
        members=overview.members(session, project_id),
        roles=PROJECT_ROLES,
        **context,
    )


@bp.get("/projects/<int:project_id>/members")
def members(project_id: int) -> tuple[str, int]:
    """The project's members and their roles, with the form to add one."""
    require("people.manage", project_id)
    return _members_page(project_id)


@bp.post("/projects/<int:project_id>/members")
def set_member(project_id: int) -> Response | tuple[str, int]:
    """Give an existing user a role in the project (or change it)."""
    principal = require("people.manage", project_id)
    values, errors = load_form(MemberForm())
    if errors:
        return _members_page(project_id, 400, values=values, errors=errors)
    try:
        accounts_svc.set_membership(
            db_session(), project_id, values["username"].strip(), values["role"], principal.actor
        )
    except ApiError as error:
        fields = api_field_errors(error) or {"username": ["unknown_user" if error.status == 404 else error.code]}
        return _members_page(project_id, error.status, values=values, errors=fields)
    notice("member_saved")
    return redirect(url_for("console.members", project_id=project_id))


def _users_page(status: int = 200, **context: object) -> tuple[str, int]:
    context.setdefault("values", {})
    context.setdefault("errors", {})
    return render("users.html", status, **context)


@bp.get("/users")
def users() -> tuple[str, int]:
    """The form to create a user (admin)."""
    require_admin()
    return _users_page()


@bp.post("/users")
def create_user() -> Response | tuple[str, int]:
    """Create a user (admin); a manager then gives them a role in a project."""
    principal = require_admin()
    values, errors = load_form(UserForm())
    if errors:
        return _users_page(400, values=values, errors=errors)
    try:
        accounts_svc.create_user(
            db_session(), values["username"], values["password"], is_admin=values["is_admin"], actor=principal.actor
        )
    except ApiError as error:
        return _users_page(error.status, values=values, errors={"username": [error.code]})
    notice("user_created")
    return redirect(url_for("console.users"))


def _phones_page(project_id: int, status: int = 200, **context: object) -> tuple[str, int]:
    session = db_session()
    context.setdefault("values", {})
    context.setdefault("errors", {})
    return render(
        "phones.html",
        status,
        project=overview.get_project(session, project_id),
        phones=overview.devices(session, project_id),
        forms_seen=forms_svc.form_list(session, project_id),
        **context,
    )


@bp.get("/projects/<int:project_id>/phones")
def phones(project_id: int) -> tuple[str, int]:
    """The project's phones: last use, revoked or not, and the form to set up a new one."""
    require("people.manage", project_id)
    return _phones_page(project_id)


def _qr_page(project_id: int, issued: accounts_svc.IssuedToken, status: int) -> Response:
    project = overview.get_project(db_session(), project_id)
    name = issued.name
    url = issued.collect_url(public_url())
    svg = qr_svg(collect_payload(url, project.name), title=name)
    body, code = render("phone_qr.html", status, project=project, name=name, url=url, qr=Markup(svg))
    response = Response(body, status=code, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/projects/<int:project_id>/phones")
def create_phone(project_id: int) -> Response | tuple[str, int]:
    """Issue a phone's token and show the QR code ODK Collect scans (once)."""
    principal = require("people.manage", project_id)
    values, errors = load_form(PhoneForm())
    if errors:
        return _phones_page(project_id, 400, values=values, errors=errors)
    try:
        issued = accounts_svc.create_device(db_session(), project_id, values["name"].strip(), actor=principal.actor)
    except ApiError as error:
        return _phones_page(project_id, error.status, values=values, errors=api_field_errors(error), error=error)
    return _qr_page(project_id, issued, 201)


@bp.post("/projects/<int:project_id>/phones/<int:device_id>/revoke")
def revoke_phone(project_id: int, device_id: int) -> Response:
    """Revoke a phone's token (a lost or returned phone)."""
    principal = require("people.manage", project_id)
    accounts_svc.revoke_device(db_session(), project_id, device_id, principal.actor)
    notice("phone_revoked")
    return redirect(url_for("console.phones", project_id=project_id))


@bp.post("/projects/<int:project_id>/phones/<int:device_id>/reissue")
def reissue_phone(project_id: int, device_id: int) -> Response:
    """A new QR code for a lost phone: its token is revoked and a new one issued under the same name."""
    principal = require("people.manage", project_id)
    # One transaction: the old token is revoked and the new one issued together (the JSON API's reissue).
    issued = accounts_svc.reissue_device(db_session(), project_id, device_id, principal.actor)
    return _qr_page(project_id, issued, 201)


def _phone_forms_page(project_id: int, device_id: int, status: int = 200, **context: object) -> tuple[str, int]:
    session = db_session()
    return render(
        "phone_forms.html",
        status,
        project=overview.get_project(session, project_id),
        phone=accounts_svc.phone_forms(session, project_id, device_id),
        forms=forms_svc.form_list(session, project_id),
        **context,
    )


@bp.get("/projects/<int:project_id>/phones/<int:device_id>/forms")
def phone_forms(project_id: int, device_id: int) -> tuple[str, int]:
    """Which forms a phone sees: every open form, or only those chosen for it."""
    require("people.manage", project_id)
    return _phone_forms_page(project_id, device_id)


@bp.post("/projects/<int:project_id>/phones/<int:device_id>/forms")
def set_phone_forms(project_id: int, device_id: int) -> Response | tuple[str, int]:
    """Limit a phone to the forms ticked (the JSON API's form assignments, in one transaction)."""
    principal = require("people.manage", project_id)
    chosen = {value for value in request.form.getlist("forms") if value}
    try:
        accounts_svc.set_phone_forms(db_session(), project_id, device_id, chosen, actor=principal.actor)
    except ApiError as error:
        if error.code == "not_found" and "app_user_id" in (error.details or {}):
            raise
        return _phone_forms_page(project_id, device_id, error.status, error=error)
    notice("phone_forms_saved")
    return redirect(url_for("console.phone_forms", project_id=project_id, device_id=device_id))
