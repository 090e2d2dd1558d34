"""JSON twins of console actions the API lacked: archive a project, change one's password, keep a language
choice, download the XForm of any form version. The console adds no capability of its own."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from marshmallow import Schema, fields, validate

from server.api import downloads
from server.api.contract import documented
from server.api.conventions import StrictCamelSchema
from server.api.schemas import ProjectOut, StrictSchema
from server.api.wire import load_json
from server.auth import require, require_admin, require_user
from server.services import forms as forms_svc
from server.services import projects as projects_svc
from server.services import signin as signin_svc
from server.store import db_session

bp = Blueprint("console_actions", __name__, url_prefix="/v1")


class ProjectPatch(StrictSchema):
    archived = fields.Boolean(required=True)


class PasswordChange(StrictCamelSchema):
    current_password = fields.String(required=True, load_only=True)
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(max=200))


class UserPatch(StrictSchema):
    locale = fields.String(required=True, validate=validate.OneOf(signin_svc.LOCALES))


class LocaleOut(Schema):
    locale = fields.String()


@bp.patch("/projects/<int:project_id>")
@documented({200: ProjectOut}, body=ProjectPatch)
def patch_project(project_id: int) -> dict[str, Any]:
    """Archive or restore a project (admin)."""
    principal = require_admin()
    body = load_json(ProjectPatch())
    project = projects_svc.set_archived(db_session(), project_id, body["archived"], actor=principal.actor)
    result: dict[str, Any] = ProjectOut().dump(project)
    return result


@bp.post("/users/current/password")
@documented({204: None}, body=PasswordChange)
def change_password() -> tuple[str, int]:
    """Change the caller's password (the current one is required)."""
    principal = require_user()
    body = load_json(PasswordChange())
    signin_svc.change_password(db_session(), principal.id, body["current_password"], body["new_password"])
    return "", 204


@bp.patch("/users/current")
@documented({200: LocaleOut}, body=UserPatch)
def patch_current_user() -> dict[str, Any]:
    """Store the language the caller reads the console in."""
    principal = require_user()
    body = load_json(UserPatch())
    signin_svc.set_locale(db_session(), principal.id, body["locale"])
    return {"locale": body["locale"]}


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/xform")
@documented({200: "text/xml"})
def get_version_xform(project_id: int, xml_form_id: str, version: str) -> Response:
    """Return the XForm a version serves (draft or published)."""
    require("form.read", project_id)
    data = forms_svc.version_xform(db_session(), project_id, xml_form_id, version)
    return downloads.version_xform(data, xml_form_id, version)
