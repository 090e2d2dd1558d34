"""What the console's HTML forms may send: marshmallow schemas whose errors are short codes the pages translate.

Unknown fields are excluded rather than refused: a browser sends the CSRF token and the submit button too.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, pre_load, validate

from server.db.models.accounts import PROJECT_ROLES
from server.db.models.forms import FORM_STATES
from server.db.models.webhooks import DELIVERY_STATUSES, EVENT_KINDS, PAYLOAD_FORMATS
from server.services.signin import LOCALES

REQUIRED = {"required": "required", "null": "required"}


def _text(max_length: int, **kwargs: object) -> fields.String:
    return fields.String(
        required=True,
        error_messages=REQUIRED,
        validate=validate.Length(min=1, max=max_length, error="length"),
        **kwargs,  # type: ignore[arg-type]
    )


class ConsoleForm(Schema):
    """A console form: extra fields (CSRF token, buttons) are ignored."""

    class Meta:
        unknown = EXCLUDE


class SignInForm(ConsoleForm):
    username = _text(150)
    password = _text(200)
    next = fields.String(load_default="")


class PasswordForm(ConsoleForm):
    current_password = _text(200)
    new_password = _text(200)


class LocaleForm(ConsoleForm):
    locale = fields.String(required=True, error_messages=REQUIRED, validate=validate.OneOf(LOCALES, error="choice"))
    next = fields.String(load_default="")


class ProjectForm(ConsoleForm):
    name = _text(200)


class ArchiveForm(ConsoleForm):
    archived = fields.Boolean(required=True, error_messages=REQUIRED)


class UserForm(ConsoleForm):
    username = fields.String(
        required=True,
        error_messages=REQUIRED,
        validate=validate.Regexp(r"^[A-Za-z0-9_.@-]{2,150}$", error="username"),
    )
    password = fields.String(
        required=True, error_messages=REQUIRED, validate=validate.Length(min=8, max=200, error="password_length")
    )
    is_admin = fields.Boolean(load_default=False)


class MemberForm(ConsoleForm):
    username = _text(150)
    role = fields.String(required=True, error_messages=REQUIRED, validate=validate.OneOf(PROJECT_ROLES, error="choice"))


class PhoneForm(ConsoleForm):
    name = _text(200)


class StateForm(ConsoleForm):
    state = fields.String(required=True, error_messages=REQUIRED, validate=validate.OneOf(FORM_STATES, error="choice"))


class MediaForm(ConsoleForm):
    name = _text(255)


class AuditFilter(ConsoleForm):
    action = fields.String(load_default=None, validate=validate.Length(max=80, error="length"))
    before_id = fields.Integer(load_default=None, error_messages={"invalid": "number"})


class FiguresFilter(ConsoleForm):
    by = fields.String(load_default=None, validate=validate.Length(max=500, error="length"))
    period = fields.String(load_default=None, validate=validate.OneOf(("month", "quarter"), error="choice"))


class IndicatorForm(ConsoleForm):
    name = fields.String(
        required=True,
        error_messages=REQUIRED,
        validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,62}$", error="indicator_name"),
    )
    title_fr = fields.String(load_default="", validate=validate.Length(max=200, error="length"))
    title_ar = fields.String(load_default="", validate=validate.Length(max=200, error="length"))
    title_en = fields.String(load_default="", validate=validate.Length(max=200, error="length"))
    target = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, error="target"),
        error_messages={"invalid": "target"},
    )
    count_received = fields.Boolean(load_default=False)
    count_has_issues = fields.Boolean(load_default=False)
    count_approved = fields.Boolean(load_default=False)
    definition = _text(20_000)

    @pre_load
    def _blank_target(self, data: dict[str, object], **_: object) -> dict[str, object]:
        # "4 200" and "0,48" are how French and Arabic readers write numbers.
        if isinstance(data, dict) and "target" in data:
            text = "".join(str(data["target"] or "").split()).replace(",", ".")
            data = {**data, "target": text or None}
        return data


class WebhookForm(ConsoleForm):
    url = fields.String(
        required=True, error_messages=REQUIRED, validate=validate.Regexp(r"^https?://\S{1,1990}$", error="url")
    )
    name = fields.String(load_default=None, validate=validate.Length(max=200, error="length"))
    events = fields.List(
        fields.String(validate=validate.OneOf(EVENT_KINDS, error="choice")),
        required=True,
        error_messages=REQUIRED,
        validate=validate.Length(min=1, error="events"),
    )
    form_id = fields.String(load_default=None, validate=validate.Length(max=255, error="length"))
    language = fields.String(load_default=None, validate=validate.Length(max=100, error="length"))
    payload_format = fields.String(load_default="standard", validate=validate.OneOf(PAYLOAD_FORMATS, error="choice"))

    @pre_load
    def _blanks(self, data: dict[str, object], **_: object) -> dict[str, object]:
        # An empty optional box means "none" (every form, no labels, no name).
        if isinstance(data, dict):
            data = {
                k: (None if k in ("name", "form_id", "language") and not str(v or "").strip() else v)
                for k, v in data.items()
            }
        return data


class DeliveryFilter(ConsoleForm):
    status = fields.String(load_default=None, validate=validate.OneOf(DELIVERY_STATUSES, error="choice"))
    before_id = fields.Integer(load_default=None, error_messages={"invalid": "number"})


class ReplayForm(ConsoleForm):
    event_id = fields.Integer(load_default=None, error_messages={"invalid": "number"})
    from_event_id = fields.Integer(load_default=None, error_messages={"invalid": "number"})
    to_event_id = fields.Integer(load_default=None, error_messages={"invalid": "number"})
