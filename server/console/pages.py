"""The console's frame: who is signed in, CSRF on every POST, the language, error pages, and the pages of
one's own account (sign in, sign out, password, language)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Response, g, redirect, render_template, request, session, url_for
from flask_babel import format_datetime, format_decimal, lazy_gettext
from marshmallow import Schema, ValidationError
from werkzeug.datastructures import MultiDict

from server.auth import Principal, require_user
from server.console import bp
from server.console.i18n import LOCALES, current_locale, locale_display_name
from server.console.schemas import LocaleForm, PasswordForm, SignInForm
from server.console.sessions import CSRF_FIELD, check_csrf, csrf_token
from server.errors import ApiError
from server.services import signin as signin_svc
from server.services.signin import SignedIn
from server.store import db_session

# Endpoints a visitor who is not signed in may reach.
PUBLIC_ENDPOINTS = frozenset(
    {"console.sign_in_page", "console.sign_in", "console.set_locale", "console.static", "console.asset"}
)

# Field error codes (console/schemas.py) and the API's field messages, in words the pages translate.
FIELD_MESSAGES = {
    "required": lazy_gettext("This field is required."),
    "length": lazy_gettext("This is too long."),
    "choice": lazy_gettext("Choose one of the options."),
    "number": lazy_gettext("Enter a whole number."),
    "username": lazy_gettext("Use 2 to 150 letters, digits, or . _ @ -"),
    "password_length": lazy_gettext("Use at least 8 characters."),
    "date": lazy_gettext("Enter a date such as 2026-12-31."),
    "This is not your current password.": lazy_gettext("This is not your current password."),
    "The new password needs at least 8 characters.": lazy_gettext("Use at least 8 characters."),
    "username_taken": lazy_gettext("Someone already has this username."),
    "project_name_taken": lazy_gettext("A project already has this name."),
    "unknown_user": lazy_gettext("No user has this username. An admin creates users first."),
    "preset_name": lazy_gettext("Use 1 to 100 letters, digits, spaces, '.', '-' or '_'."),
    "invalid_cron": lazy_gettext("Write five fields: minute hour day month weekday (for example 0 6 * * 1)."),
    "invalid_folder": lazy_gettext("Use a relative folder name, inside the export directory."),
    "export_option_invalid": lazy_gettext("Choose one of the presets."),
    "indicator_name": lazy_gettext("Use lower-case letters, digits and _, starting with a letter (e.g. women_share)."),
    "target": lazy_gettext("Enter a number of 0 or more."),
    "json": lazy_gettext("This is not a JSON object: check the braces, quotes and commas."),
    "events": lazy_gettext("Choose at least one event."),
    "url": lazy_gettext("Enter the receiver's address, starting with https:// or http://"),
}

# Stable API error codes, in words the pages translate (anything else shows the service's own message).
ERROR_MESSAGES = {
    "csrf_failed": lazy_gettext("This form has expired. Reload the page and send it again."),
    "forbidden": lazy_gettext("Your role does not allow this."),
    "not_found": lazy_gettext("This page does not exist, or you cannot see it."),
    "username_taken": lazy_gettext("Someone already has this username."),
    "project_name_taken": lazy_gettext("A project already has this name."),
    "no_draft": lazy_gettext("This form has no draft to publish."),
    "version_reused": lazy_gettext(
        "This version number was already used with other content. Raise it in the settings sheet."
    ),
    "empty_upload": lazy_gettext("The file is empty."),
    "missing_file": lazy_gettext("Choose a file to upload."),
    "too_large": lazy_gettext("The file is larger than the server accepts."),
    "conversion_timeout": lazy_gettext("Converting this form took too long and was stopped."),
    "missing_form_id": lazy_gettext("The form has no id: fill form_id in the settings sheet."),
    "invalid_input": lazy_gettext("Check the fields marked below."),
    "invalid_cursor": lazy_gettext("This page link is out of date: start again from the first page."),
    "invalid_field": lazy_gettext("The form has no such question outside a repeat."),
    "invalid_sort": lazy_gettext("Choose a question to sort by."),
    "invalid_language": lazy_gettext("The form has no such language."),
    "stale_base": lazy_gettext("The entity changed since you loaded the page. Check the new values and try again."),
    "already_decided": lazy_gettext("Someone already decided about this item."),
    "preset_exists": lazy_gettext("The form already has a preset with this name."),
    "form_has_no_version": lazy_gettext("The form has no published version to export yet."),
}


# Audit actions (server/services/*: audit.record) and attachment kinds, in words the pages translate.
AUDIT_ACTIONS = {
    "user.create": lazy_gettext("User created"),
    "user.password": lazy_gettext("Password changed"),
    "user.sign_in": lazy_gettext("Signed in to the console"),
    "session.create": lazy_gettext("API session opened"),
    "project.create": lazy_gettext("Project created"),
    "project.archive": lazy_gettext("Project archived"),
    "project.restore": lazy_gettext("Project restored"),
    "membership.set": lazy_gettext("Role given"),
    "device.create": lazy_gettext("Phone set up"),
    "device.revoke": lazy_gettext("Phone revoked"),
    "device.reissue": lazy_gettext("New QR code issued"),
    "form.draft_uploaded": lazy_gettext("Draft uploaded"),
    "form.version_published": lazy_gettext("Version published"),
    "form.state_changed": lazy_gettext("Form state changed"),
    "form.attachment_uploaded": lazy_gettext("Form file uploaded"),
    "form.export": lazy_gettext("Data exported"),
    "submission.create": lazy_gettext("Submission received"),
    "submission.update": lazy_gettext("Submission edited"),
    "submission.attachments": lazy_gettext("Submission files received"),
    "submission.review": lazy_gettext("Submission reviewed"),
    "submission.delete": lazy_gettext("Submission deleted"),
    "submission.restore": lazy_gettext("Submission restored"),
    "entity.resolve": lazy_gettext("Entity conflict resolved"),
    "entity.delete": lazy_gettext("Entity deleted"),
    "entity.restore": lazy_gettext("Entity restored"),
    "quarantine.release": lazy_gettext("Quarantined item released"),
    "quarantine.discard": lazy_gettext("Quarantined item discarded"),
}
ATTACHMENT_KINDS = {
    "image": lazy_gettext("image"),
    "audio": lazy_gettext("audio"),
    "video": lazy_gettext("video"),
    "csv": lazy_gettext("CSV list"),
    "xml": lazy_gettext("XML list"),
    "geojson": lazy_gettext("GeoJSON map"),
    "itemsets": lazy_gettext("choice list (itemsets)"),
    "entity_list": lazy_gettext("entity list"),
    "other": lazy_gettext("other file"),
}


def who() -> SignedIn | None:
    """The signed-in user of this console request."""
    signed_in: SignedIn | None = g.get("console_user")
    return signed_in


@bp.before_request
def _console_request() -> Response | None:
    """Recognise the session's user, make them the request's principal, check CSRF, ask to sign in."""
    signed_in: SignedIn | None = None
    user_id, fingerprint = session.get("uid"), session.get("fp")
    if isinstance(user_id, int) and isinstance(fingerprint, str):
        signed_in = signin_svc.signed_in_user(db_session(), user_id, fingerprint)
        if signed_in is None:
            session.clear()
    g.console_user = signed_in
    # The console's caller is its cookie's user, never an Authorization header.
    g.principal = (
        Principal("user", signed_in.user_id, signed_in.username, is_admin=signed_in.is_admin) if signed_in else None
    )
    g.console_locale = (signed_in.locale if signed_in else None) or session.get("locale")
    if request.method == "POST":
        check_csrf()
    if signed_in is None and request.endpoint not in PUBLIC_ENDPOINTS:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("console.sign_in_page", next=target))
    return None


@bp.after_request
def _console_headers(response: Response) -> Response:
    """Pages are never cached by shared caches and never framed; every asset is our own."""
    response.headers.setdefault("Cache-Control", "no-store" if response.mimetype == "text/html" else "private")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    )
    return response


@bp.context_processor
def _page_context() -> dict[str, Any]:
    return {
        "user": who(),
        "locale": current_locale(),
        "locales": LOCALES,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token,
        "format_datetime": format_datetime,
        "format_number": format_decimal,
        "field_message": field_message,
        "error_message": error_message,
        "take_notice": take_notice,
        "can": can,
        "language_name": locale_display_name,
        "audit_actions": AUDIT_ACTIONS,
        "action_name": lambda code: str(AUDIT_ACTIONS.get(code, code)),
        "kind_name": lambda code: str(ATTACHMENT_KINDS.get(code, code)),
        "ms_datetime": lambda ms: datetime.fromtimestamp(ms / 1000, UTC),
        "iso_datetime": datetime.fromisoformat,
    }


def can(permission: str, project_id: int | None) -> bool:
    """Tell whether the signed-in user holds ``permission`` (to show only the actions they may take)."""
    principal: Principal | None = g.get("principal")
    return principal is not None and principal.can(permission, project_id)


def field_message(code: str) -> str:
    """A field error in the reader's language."""
    return str(FIELD_MESSAGES.get(code, code))


def error_message(error: ApiError) -> str:
    """An API error in the reader's language (the service's English words when the console has none)."""
    known = ERROR_MESSAGES.get(error.code)
    return str(known) if known is not None else error.message


def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render a console page."""
    return render_template(template, **context), status


def load_form(schema: Schema, data: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Load a posted form: (values, {}) when valid, else (what was sent, {field: [error codes]})."""
    source = request.form if data is None else data
    raw = source.to_dict() if isinstance(source, MultiDict) else dict(source)
    try:
        loaded: dict[str, Any] = schema.load(raw)
        return loaded, {}
    except ValidationError as err:
        messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        return raw, {str(k): [str(m) for m in v] if isinstance(v, list) else [str(v)] for k, v in messages.items()}


def api_field_errors(error: ApiError) -> dict[str, list[str]]:
    """The per-field errors an ``ApiError`` carries (``details.fields``), if any."""
    fields = error.details.get("fields") if isinstance(error.details, dict) else None
    if not isinstance(fields, dict):
        return {}
    return {str(k): [str(m) for m in v] if isinstance(v, list) else [str(v)] for k, v in fields.items()}


def safe_next(target: str | None) -> str:
    """A local path to go back to after signing in or switching language (never another site)."""
    if target:
        parts = urlsplit(target)
        # "//host" and "/\\host" both leave the site in browsers.
        if not parts.scheme and not parts.netloc and target.startswith("/") and target[1:2] not in ("/", "\\"):
            return target
    return url_for("console.index")


@bp.errorhandler(ApiError)
def _console_error(error: ApiError) -> Response | tuple[str, int]:
    if error.status == 401:
        return redirect(url_for("console.sign_in_page"))
    return render("error.html", error.status, error=error)


@bp.get("/")
def index() -> Response:
    """The console's home: the projects."""
    return redirect(url_for("console.projects"))


@bp.get("/signin")
def sign_in_page() -> tuple[str, int]:
    """The sign-in form."""
    return render("signin.html", values={"next": request.args.get("next", "")}, errors={})


@bp.post("/signin")
def sign_in() -> Response | tuple[str, int]:
    """Check the password, start a fresh session, go where the visitor was heading."""
    values, errors = load_form(SignInForm())
    if errors:
        return render("signin.html", 400, values=values, errors=errors)
    signed_in = signin_svc.sign_in(db_session(), values["username"], values["password"], request.remote_addr or "-")
    if signed_in is None:
        return render("signin.html", 401, values=values, errors={}, failed=True)
    locale = session.get("locale")
    session.clear()  # a new session id's worth: nothing from before signing in carries over but the language
    session["uid"], session["fp"] = signed_in.user_id, signed_in.fingerprint
    if locale and not signed_in.locale:
        session["locale"] = locale
    return redirect(safe_next(values.get("next")))


@bp.post("/signout")
def sign_out() -> Response:
    """Forget the session."""
    locale = g.console_locale
    session.clear()
    if locale:
        session["locale"] = locale
    return redirect(url_for("console.sign_in_page"))


@bp.post("/locale")
def set_locale() -> Response | tuple[str, int]:
    """Switch the language (stored on the user when signed in, else in the session)."""
    values, errors = load_form(LocaleForm())
    if errors:
        return render("error.html", 400, error=ApiError(400, "invalid_input", "Unknown language"))
    signed_in = who()
    if signed_in is not None:
        signin_svc.set_locale(db_session(), signed_in.user_id, values["locale"])
    session["locale"] = values["locale"]
    return redirect(safe_next(values.get("next")))


@bp.get("/account")
def account() -> tuple[str, int]:
    """One's own account: the password form."""
    require_user()
    return render("account.html", values={}, errors={})


@bp.post("/account/password")
def change_password() -> Response | tuple[str, int]:
    """Change one's password; the session continues with the new password's fingerprint."""
    principal = require_user()
    values, errors = load_form(PasswordForm())
    if errors:
        return render("account.html", 400, values={}, errors=errors)
    try:
        signed_in = signin_svc.change_password(
            db_session(), principal.id, values["current_password"], values["new_password"]
        )
    except ApiError as error:
        return render("account.html", error.status, values={}, errors=api_field_errors(error), error=error)
    session["fp"] = signed_in.fingerprint
    session["notice"] = "password_changed"
    return redirect(url_for("console.account"))


NOTICES = {
    "password_changed": lazy_gettext("Your password was changed."),
    "project_created": lazy_gettext("The project was created."),
    "project_archived": lazy_gettext("The project was archived."),
    "project_restored": lazy_gettext("The project was restored."),
    "member_saved": lazy_gettext("The member's role was saved."),
    "user_created": lazy_gettext("The user was created."),
    "draft_uploaded": lazy_gettext("The draft was uploaded. Check it, add its media, then publish it."),
    "published": lazy_gettext("The draft was published: phones now download this version."),
    "state_changed": lazy_gettext("The form's state was changed."),
    "media_uploaded": lazy_gettext("The file was uploaded."),
    "phone_revoked": lazy_gettext("The phone was revoked: it can no longer send or download."),
    "phone_forms_saved": lazy_gettext("Saved: the phone sees these forms at its next refresh."),
    "columns_saved": lazy_gettext("Your columns were saved for this form."),
    "review_saved": lazy_gettext("The review was saved."),
    "entity_deleted": lazy_gettext("The entity was deleted: phones drop it from their list."),
    "entity_restored": lazy_gettext("The entity was restored."),
    "conflict_resolved": lazy_gettext("The conflict was resolved: phones receive the chosen values."),
    "held_released": lazy_gettext("The item was released and processed."),
    "held_again": lazy_gettext("The item was processed again and is still held: read why below."),
    "held_discarded": lazy_gettext("The item was discarded. It is kept in the audit log."),
    "refused_released": lazy_gettext("The XML was stored as an edit of the submission."),
    "refused_discarded": lazy_gettext("The XML was discarded. It is kept, and the decision is in the audit log."),
    "preset_saved": lazy_gettext("The preset was saved: the project's analysts can use it."),
    "preset_deleted": lazy_gettext("The preset was deleted."),
    "schedule_created": lazy_gettext("The export was scheduled."),
    "schedule_deleted": lazy_gettext("The schedule was deleted; the files it wrote stay."),
    "indicator_saved": lazy_gettext("The indicator was saved as a new version."),
    "indicator_unchanged": lazy_gettext("Nothing changed: the indicator is as it was."),
    "indicator_removed": lazy_gettext("The indicator was taken off the dashboard. Its versions stay in the history."),
    "webhook_saved": lazy_gettext("The subscription was saved."),
    "webhook_paused": lazy_gettext("The subscription was paused: its events wait in the queue."),
    "webhook_resumed": lazy_gettext("The subscription was resumed: its queue is being sent."),
    "webhook_deleted": lazy_gettext("The subscription was deleted."),
    "webhook_replayed": lazy_gettext(
        "Queued again, each event with its own webhook-id (a receiver drops those it has)."
    ),
}


def take_notice() -> str | None:
    """Pop the one-time notice a redirect left (POST-redirect-GET)."""
    code = session.pop("notice", None)
    return str(NOTICES[code]) if code in NOTICES else None


def notice(code: str) -> None:
    """Leave a one-time notice for the next page."""
    session["notice"] = code
