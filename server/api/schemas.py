"""What crosses the wire for accounts: marshmallow schemas (loading refuses unknown fields)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

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


# ---------------------------------------------------------------------------------------------------
# Submissions, as ODK Central describes them

# Fieldsync's review states and Central's spellings of them. ``received`` is Central's ``null`` (never
# reviewed), or ``edited`` once the submission has been edited since (Central's own rule).
CENTRAL_REVIEW_STATES: dict[str, str] = {"has_issues": "hasIssues", "approved": "approved", "rejected": "rejected"}
REVIEW_STATES_FROM_CENTRAL: dict[str | None, str] = {
    None: "received",
    "null": "received",
    **{central: ours for ours, central in CENTRAL_REVIEW_STATES.items()},
}
CENTRAL_REVIEW_SPELLINGS = ("null", "hasIssues", "approved", "rejected")


def central_review_state(review_state: str, edits: int) -> str | None:
    """Central's ``reviewState`` of a submission in Fieldsync's ``review_state`` with ``edits`` edits."""
    if review_state == "received":
        return "edited" if edits > 0 else None
    return CENTRAL_REVIEW_STATES.get(review_state, review_state)


def actor_id(actor: str | None) -> int | None:
    """The numeric id of an actor written ``user:<id>`` or ``device:<id>`` (``None`` for the system)."""
    if actor is None or ":" not in actor:
        return None
    number = actor.split(":", 1)[1]
    return int(number) if number.isdigit() else None


class ActorOut(CamelSchema):
    """Who did something, as Central names an actor (a web user, or an app user: ``field_key``)."""

    id = fields.Integer()
    type = fields.String()
    display_name = fields.String(allow_none=True)


class SubmissionVersionOut(CamelSchema):
    """One version of a submission (Central's ``currentVersion`` and versions list)."""

    instance_id = fields.String()
    instance_name = fields.String(allow_none=True)
    submitter_id = fields.Integer(allow_none=True)
    device_id = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    created_at = fields.DateTime()
    current = fields.Boolean()
    deprecated_id = fields.String(allow_none=True, metadata={"description": "The version it replaced (Fieldsync)"})
    form_version = fields.String(metadata={"description": "The form version it was filled in (Fieldsync)"})
    source = fields.String(metadata={"description": "openrosa, push or api (Fieldsync)"})
    encrypted = fields.Boolean()


class SubmissionFileOut(CamelSchema):
    """A file a version names: Central's ``{name, exists}``, with Fieldsync's hash and download URL."""

    name = fields.String()
    exists = fields.Boolean()
    sha256 = fields.String(allow_none=True)
    url = fields.String(allow_none=True)


class SubmissionOut(CamelSchema):
    """A submission as Central lists it, with Fieldsync's own fields beside Central's.

    ``submitterId`` is the web user or app user (device token) that sent the first version.
    ``currentVersion`` and ``submitter`` come with ``X-Extended-Metadata: true``.
    """

    instance_id = fields.String()
    submitter_id = fields.Integer(allow_none=True)
    device_id = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    instance_name = fields.String(allow_none=True)
    review_state = fields.String(
        allow_none=True, metadata={"enum": [None, "hasIssues", "edited", "approved", "rejected"]}
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)
    deleted_at = fields.DateTime(allow_none=True)
    # Fieldsync's own
    current_instance_id = fields.String()
    xml_form_id = fields.String()
    form_version = fields.String()
    edits = fields.Integer()
    attachments_expected = fields.Integer()
    attachments_present = fields.Integer()
    encrypted = fields.Boolean()
    deleted_by = fields.String(allow_none=True)
    data = fields.Dict(metadata={"description": "The current version's answers by question path (Fieldsync)"})
    # Extended metadata
    submitter = fields.Nested(ActorOut, allow_none=True)
    current_version = fields.Nested(SubmissionVersionOut)


class SubmissionRowOut(SubmissionOut):
    """A row of the submissions table: the submission and its cells (one per column asked, in order)."""

    cells = fields.List(fields.String(allow_none=True))


class ReviewEntryOut(CamelSchema):
    from_state = fields.String(allow_none=True)
    to_state = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    actor = fields.String()
    at = fields.DateTime()


class SubmissionDetailOut(SubmissionOut):
    """One submission: Central's fields, and Fieldsync's files, versions (in edit order) and reviews."""

    files = fields.List(fields.Nested(SubmissionFileOut))
    versions = fields.List(fields.Nested(SubmissionVersionOut))
    reviews = fields.List(fields.Nested(ReviewEntryOut))


class CommentIn(StrictCamelSchema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=10_000))


class CommentOut(CamelSchema):
    """A comment as Central describes it, with the review state it left (Fieldsync)."""

    body = fields.String()
    actor_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    actor = fields.Nested(ActorOut, allow_none=True, metadata={"description": "With X-Extended-Metadata: true"})
    review_state = fields.String(allow_none=True)


class ReviewIn(StrictCamelSchema):
    review_state = fields.String(
        load_default=None,
        validate=validate.OneOf(CENTRAL_REVIEW_SPELLINGS),
        metadata={"description": "JSON null (not reviewed; the text null too), hasIssues, approved or rejected"},
    )
    comment = fields.String(load_default=None, validate=validate.Length(max=10_000))

    @pre_load
    def _null_is_a_state(self, data: Any, **kwargs: Any) -> Any:
        """Central's ``"reviewState": null`` sets "not reviewed"; leaving the field out changes nothing."""
        if isinstance(data, dict) and "reviewState" in data and data["reviewState"] is None:
            return {**data, "reviewState": "null"}
        return data
