"""What crosses the wire for accounts: marshmallow schemas (loading refuses unknown fields)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

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


class ProjectIn(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ProjectOut(Schema):
    id = fields.Integer()
    name = fields.String()
    created_at = fields.DateTime()
    archived = fields.Boolean()


class UserIn(StrictSchema):
    username = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.@-]{2,150}$"))
    # The service's own rules (length, common passwords), here too so one answer names every bad field.
    password = fields.String(required=True, load_only=True, validate=_password_rule)
    is_admin = fields.Boolean(load_default=False)


class UserOut(Schema):
    id = fields.Integer()
    username = fields.String()
    is_admin = fields.Boolean()
    created_at = fields.DateTime()


PROJECT_ROLES = ("manager", "coach", "analyst")


class MembershipIn(StrictSchema):
    username = fields.String(required=True)
    role = fields.String(
        required=True,
        validate=validate.OneOf(PROJECT_ROLES),
        metadata={"description": "manager: forms and people; coach: forms, submit, sync; analyst: read, export"},
    )


class MembershipOut(Schema):
    username = fields.String()
    user_id = fields.Integer()
    role = fields.String(validate=validate.OneOf(PROJECT_ROLES))


class DeviceIn(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True)


class DeviceOut(Schema):
    id = fields.Integer()
    name = fields.String()
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)


class DeviceIssuedOut(Schema):
    id = fields.Integer()
    name = fields.String()
    token = fields.String(metadata={"description": "Shown once: the server keeps only its hash"})
    collect_url = fields.String(metadata={"description": "The server URL to give ODK Collect"})
    expires_at = fields.DateTime(allow_none=True)


class SessionIn(StrictSchema):
    username = fields.String(required=True)
    password = fields.String(required=True, load_only=True)


class SessionOut(Schema):
    token = fields.String(metadata={"description": "Send as `Authorization: Bearer <token>`"})
    expires_at = fields.DateTime(allow_none=True)


class AuditOut(Schema):
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


class AuditQuery(StrictSchema):
    project_id = DatabaseId(load_default=None)
    action = fields.String(load_default=None)
    # ISO 8601; a time without an offset is UTC. ``since`` is inclusive, ``until`` exclusive.
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    until = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    before_id = DatabaseId(load_default=None)


class UserListOut(Schema):
    users = fields.List(fields.Nested(UserOut))


class ProjectListOut(Schema):
    projects = fields.List(fields.Nested(ProjectOut))


class MemberListOut(Schema):
    members = fields.List(fields.Nested(MembershipOut))


class DeviceListOut(Schema):
    devices = fields.List(fields.Nested(DeviceOut))


class AuditListOut(Schema):
    events = fields.List(fields.Nested(AuditOut))
