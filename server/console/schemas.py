"""What the console's HTML forms may send: marshmallow schemas whose errors are short codes the pages translate.

Unknown fields are excluded rather than refused: a browser sends the CSRF token and the submit button too.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

from server.db.models.accounts import PROJECT_ROLES
from server.db.models.exports import EXPORT_FORMATS
from server.db.models.forms import FORM_STATES
from server.db.models.submissions import REVIEW_STATES
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


def _review_states(value: str) -> bool:
    if not all(part in REVIEW_STATES for part in value.split(",")):
        raise ValidationError("choice")
    return True


class TableFilter(ConsoleForm):
    """A submissions table's GET form (empty fields are dropped before loading)."""

    since = fields.Date(load_default=None, error_messages={"invalid": "date"})
    until = fields.Date(load_default=None, error_messages={"invalid": "date"})
    # One state, or several separated by commas (a dashboard's drill-down: the states an indicator counts).
    review_state = fields.String(load_default=None, validate=lambda v: _review_states(v))
    submitter = fields.Integer(load_default=None, error_messages={"invalid": "number"})
    device = fields.Integer(load_default=None, error_messages={"invalid": "number"})
    form_version = fields.String(load_default=None, validate=validate.Length(max=255, error="length"))
    sort = fields.String(load_default=None, validate=validate.Length(max=500, error="length"))
    order = fields.String(load_default=None, validate=validate.OneOf(("asc", "desc"), error="choice"))
    lang = fields.String(load_default=None, validate=validate.Length(max=100, error="length"))
    display = fields.String(load_default=None, validate=validate.OneOf(("labels", "values"), error="choice"))
    cursor = fields.String(load_default=None, validate=validate.Length(max=2000, error="length"))


class ColumnsForm(ConsoleForm):
    """The columns form of a submissions table (``paths`` is read as a list from the request)."""

    lang = fields.String(load_default=None, validate=validate.Length(max=100, error="length"))
    display = fields.String(load_default="labels", validate=validate.OneOf(("labels", "values"), error="choice"))


class ReviewForm(ConsoleForm):
    """A reviewer's change of state and/or comment."""

    review_state = fields.String(load_default=None, validate=validate.OneOf(("", *REVIEW_STATES), error="choice"))
    comment = fields.String(load_default=None, validate=validate.Length(max=10_000, error="length"))
    seen = fields.Integer(load_default=None, error_messages={"invalid": "number"})  # reviews the page showed


class EntityTableQuery(ConsoleForm):
    after = fields.String(load_default="", validate=validate.Length(max=200, error="length"))
    deleted = fields.Boolean(load_default=False)
    conflict = fields.String(load_default=None, validate=validate.OneOf(("hard", "soft"), error="choice"))


class EntityBaseForm(ConsoleForm):
    """The state a reviewer saw: a stale one is refused (409) rather than overwriting a newer change."""

    base_version = fields.Integer(required=True, error_messages={**REQUIRED, "invalid": "number"})
    base_rev = fields.String(load_default=None, validate=validate.Length(max=64, error="length"))


class HeldFilter(ConsoleForm):
    status = fields.String(
        load_default="open", validate=validate.OneOf(("open", "released", "discarded"), error="choice")
    )
    after_id = fields.Integer(load_default=0, validate=validate.Range(min=0, error="number"))


class RefusedFilter(ConsoleForm):
    after_id = fields.Integer(load_default=0, validate=validate.Range(min=0, error="number"))


class PresetForm(ConsoleForm):
    name = fields.String(
        required=True,
        error_messages=REQUIRED,
        validate=validate.Regexp(r"^[\w][\w .\-]{0,99}$", error="preset_name"),
    )


class ScheduleForm(ConsoleForm):
    cron = _text(100)
    preset = fields.String(load_default=None, validate=validate.Length(max=100, error="length"))
    folder = fields.String(load_default=None, validate=validate.Length(max=255, error="length"))
    keep = fields.Integer(
        load_default=7, validate=validate.Range(min=1, max=10_000, error="number"), error_messages={"invalid": "number"}
    )
    format = fields.String(load_default="zip", validate=validate.OneOf(EXPORT_FORMATS, error="choice"))

    @post_load
    def _empty_is_none(self, data: dict[str, object], **_: object) -> dict[str, object]:
        return {k: (None if v == "" else v) for k, v in data.items()}


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
