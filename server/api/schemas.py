"""What crosses the wire for accounts: marshmallow schemas (loading refuses unknown fields)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from server.api.conventions import CamelSchema, StrictCamelSchema
from server.database_ids import MAX_DATABASE_ID
from server.services.password_policy import password_problem


def _password_rule(value: str) -> None:
    problem = password_problem(value)
    if problem is not None:
        raise ValidationError(problem)


class DatabaseId(fields.Integer):
    """An id (or a counter compared with one): an integer the stores' 64-bit keys can hold.

    A larger one is a 400 naming the field, not an ``OverflowError`` from the driver (a 500).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Range(min=0, max=MAX_DATABASE_ID))
        super().__init__(**kwargs)


class StrictSchema(Schema):
    """A schema that refuses unknown fields."""

    class Meta:
        unknown = RAISE


class ProjectIn(StrictCamelSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ProjectOut(CamelSchema):
    """A project as ODK Central describes it (``description``, ``keyId``: Fieldsync keeps none)."""

    id = fields.Integer()
    name = fields.String()
    description = fields.Constant(None, allow_none=True)
    archived = fields.Boolean()
    key_id = fields.Constant(None, allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.Constant(None, allow_none=True)
    deleted_at = fields.Constant(None, allow_none=True)


class UserIn(StrictCamelSchema):
    email = fields.Email(required=True, validate=validate.Length(max=320))
    # The service's own rules (length, common passwords), here too so one answer names every bad field.
    password = fields.String(required=True, load_only=True, validate=_password_rule)
    display_name = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    username = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[A-Za-z0-9_.@-]{2,150}$"),
        metadata={"description": "The name for OpenRosa Digest and the console; the email when not given"},
    )
    is_admin = fields.Boolean(load_default=False)


class UserOut(CamelSchema):
    """A web user as ODK Central describes one (``type`` is always ``user``), with Fieldsync's username."""

    id = fields.Integer()
    type = fields.Constant("user")
    display_name = fields.Function(lambda user: user.display_name or user.username)
    email = fields.Function(lambda user: user.email or user.username)
    username = fields.String()
    is_admin = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.Constant(None, allow_none=True)
    deleted_at = fields.Constant(None, allow_none=True)


# Central's role ids and system names, and the Fieldsync role each means (README: "Roles").
CENTRAL_ROLES: dict[str, tuple[int, str, str]] = {
    "manager": (3, "manager", "Project Manager"),
    "coach": (4, "formfill", "Data Collector"),
    "analyst": (5, "viewer", "Project Viewer"),
}
ADMIN_ROLE = (1, "admin", "Administrator")
APP_USER_ROLE = (2, "app-user", "App User")


class RoleOut(CamelSchema):
    id = fields.Integer()
    name = fields.String()
    system = fields.String()
    fieldsync_role = fields.String(allow_none=True, metadata={"description": "The Fieldsync role it is"})


class AssignmentOut(CamelSchema):
    actor_id = fields.Integer()
    role_id = fields.Integer()


class FormAssignmentOut(CamelSchema):
    actor_id = fields.Integer()
    role_id = fields.Integer()
    xml_form_id = fields.String()


class SuccessOut(Schema):
    success = fields.Boolean()


class AppUserIn(StrictCamelSchema):
    display_name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class AppUserOut(CamelSchema):
    """An app user (Fieldsync's device token); ``token`` is shown only when it is issued."""

    id = fields.Integer()
    type = fields.Constant("field_key")
    display_name = fields.String(attribute="name")
    project_id = fields.Integer()
    token = fields.Constant(None, allow_none=True, metadata={"description": "Only the hash is kept: null"})
    form_access = fields.String(metadata={"description": "all: every form of the project; assigned: its own"})
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)
    updated_at = fields.Constant(None, allow_none=True)
    deleted_at = fields.DateTime(attribute="revoked_at", allow_none=True)


class AppUserIssuedOut(CamelSchema):
    id = fields.Integer()
    type = fields.Constant("field_key")
    display_name = fields.String()
    project_id = fields.Integer()
    token = fields.String(metadata={"description": "Shown once: the server keeps only its hash"})
    collect_url = fields.String(metadata={"description": "The server URL to give ODK Collect"})
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    updated_at = fields.Constant(None, allow_none=True)
    deleted_at = fields.Constant(None, allow_none=True)


class SessionIn(StrictCamelSchema):
    email = fields.String(required=True, metadata={"description": "The user's email (or Fieldsync username)"})
    password = fields.String(required=True, load_only=True)


class SessionOut(CamelSchema):
    token = fields.String(metadata={"description": "Send as `Authorization: Bearer <token>`"})
    csrf = fields.String(metadata={"description": "Central's CSRF token (this API needs none with a bearer)"})
    expires_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class AuditOut(CamelSchema):
    id = fields.Integer()
    at = fields.DateTime()
    actor = fields.String()
    # The user name or device name of ``actor``/``subject`` when they are ``user:<id>``/``device:<id>``.
    actor_name = fields.String(allow_none=True)
    action = fields.String()
    project_id = fields.Integer(allow_none=True)
    subject = fields.String(allow_none=True)
    subject_name = fields.String(allow_none=True)
    details = fields.Dict()


class AuditQuery(StrictCamelSchema):
    project_id = DatabaseId(load_default=None)
    action = fields.String(load_default=None)
    # ISO 8601; a time without an offset is UTC. ``since`` is inclusive, ``until`` exclusive.
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    until = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    before_id = DatabaseId(load_default=None)
