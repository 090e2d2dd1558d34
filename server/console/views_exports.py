"""Console page of a form's exports: every option with its allowed values and what it does, a preview of
the first rows of each table, the download (streamed), presets (save, load, delete) and schedules (cron in
words, next run, files written and their download).

Each action is the JSON API's (``/v1/projects/<p>/forms/<f>/export*``) over the same service; the export
options are the query string the API reads, so a page URL and an API URL ask for the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Response, current_app, redirect, request, url_for
from flask_babel import get_locale, lazy_gettext
from werkzeug.datastructures import MultiDict

from exports.options import HEADER_MODES, LABEL_MODES, REVIEW_STATES
from server.api.exports import export_response, schedule_file_response
from server.auth import require
from server.console import bp
from server.console.cron_words import cron_in_words
from server.console.pages import load_form, notice, render
from server.console.schemas import PresetForm, ScheduleForm
from server.db.models.exports import EXPORT_FORMATS
from server.errors import ApiError
from server.services import exports as svc
from server.services import forms as forms_svc
from server.services import overview
from server.store import db_session

# The options by their wire names (``server.services.exports.WIRE_OPTIONS``): a page URL is an API URL.
BOOLEAN_OPTIONS = {
    "groupPaths": True,
    "splitSelectMultiples": False,
    "splitGeopoint": True,
    "includeEdits": False,
    "includeDeleted": False,
    "includeRejected": False,
    "bom": False,
    "clean": True,
}
TEXT_OPTIONS = ("labels", "lang", "headers", "separator", "since", "until", "geojsonField")
MANY_OPTIONS = ("reviewState", "version", "submitter")
OPTION_NAMES = frozenset((*BOOLEAN_OPTIONS, *TEXT_OPTIONS, *MANY_OPTIONS, "preset"))

EXPLANATIONS = {
    "labels": lazy_gettext("Write the choices' codes (values) or their labels in the chosen language."),
    "lang": lazy_gettext("The form's language used for labels."),
    "headers": lazy_gettext("Column titles: field names, or the questions' labels."),
    "groupPaths": lazy_gettext("Prefix each column with its groups' names."),
    "separator": lazy_gettext("What separates group names in column titles (no comma)."),
    "splitSelectMultiples": lazy_gettext("Add one 0/1 column per choice of a multiple-choice question."),
    "splitGeopoint": lazy_gettext("Split a GPS point into latitude, longitude, altitude and accuracy."),
    "since": lazy_gettext("Only submissions received on or after this date (UTC)."),
    "until": lazy_gettext("Only submissions received before this date (UTC)."),
    "reviewState": lazy_gettext("Only submissions in these review states."),
    "version": lazy_gettext("Only submissions of these form versions."),
    "submitter": lazy_gettext("Only submissions sent by these people or phones (usernames, comma-separated)."),
    "includeEdits": lazy_gettext("Also write the earlier versions of edited submissions."),
    "includeDeleted": lazy_gettext("Also write deleted submissions."),
    "includeRejected": lazy_gettext("Also write rejected submissions."),
    "bom": lazy_gettext("Start each CSV with the mark Excel needs to read Arabic correctly."),
    "clean": lazy_gettext("Apply the cleaning steps (trimmed text, normalised phone numbers...)."),
    "geojsonField": lazy_gettext("For GeoJSON: the GPS question to map (default: the first one)."),
    "preset": lazy_gettext("Start from a saved preset; the options chosen here override it."),
    "field": lazy_gettext("field.<name>=<value>: only submissions whose top-level field has this value."),
}
STATE_NAMES = {
    "received": lazy_gettext("received"),
    "hasIssues": lazy_gettext("has issues"),
    "edited": lazy_gettext("edited"),
    "approved": lazy_gettext("approved"),
    "rejected": lazy_gettext("rejected"),
}
REVIEW_ORDER = ("received", "hasIssues", "edited", "approved", "rejected")
assert set(REVIEW_ORDER) == set(REVIEW_STATES)


def export_query(source: MultiDict[str, str]) -> dict[str, list[str]]:
    """The export options a page sent, as the API's query string (empty fields mean "the default")."""
    query: dict[str, list[str]] = {}
    for key in source:
        if key in OPTION_NAMES or (key.startswith("field.") and len(key) > len("field.")):
            values = [v.strip() for v in source.getlist(key) if v.strip()]
            if values:
                query[key] = values
    return query


def _option_rows(form: forms_svc.FormDetail, languages: tuple[str, ...], presets: list[Any]) -> list[dict[str, Any]]:
    """Each option with its allowed values, for the table that explains them."""
    allowed: dict[str, list[str]] = {
        "labels": list(LABEL_MODES),
        "lang": list(languages),
        "headers": list(HEADER_MODES),
        "separator": ["-", "/", "."],
        "since": ["2027-01-01", "2027-01-01T08:00:00Z"],
        "until": ["2027-02-01"],
        "reviewState": list(REVIEW_ORDER),
        "version": [v.version for v in form.versions],
        "submitter": [],
        "geojsonField": [],
        "preset": [p.name for p in presets],
        "field": [],
    }
    defaults = {"labels": "values", "headers": "names", "separator": "-"}
    for name, default in BOOLEAN_OPTIONS.items():
        allowed[name] = ["true", "false"]
        defaults[name] = "true" if default else "false"
    return [
        {"name": name, "allowed": allowed[name], "default": defaults.get(name), "explanation": str(text)}
        for name, text in EXPLANATIONS.items()
    ]


def _exports_page(project_id: int, xml_form_id: str, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    form = forms_svc.describe_form(session, project_id, xml_form_id)
    languages = overview.form_languages(session, project_id, xml_form_id)
    presets = svc.list_presets(session, project_id, xml_form_id)
    schedules = svc.list_schedules(session, project_id, xml_form_id)
    context.setdefault("values", {})
    context.setdefault("errors", {})
    context.setdefault("schedule_values", {"keep": "7", "format": "xlsx"})
    locale = str(get_locale() or "en")
    return render(
        "exports.html",
        status,
        project=overview.get_project(session, project_id),
        form=form,
        languages=languages,
        presets=[{"name": p.name, "options": svc.options_to_wire(p.options)} for p in presets],
        schedules=[{**item, "words": cron_in_words(item["schedule"].cron, locale)} for item in schedules],
        options=_option_rows(form, languages, presets),
        booleans=BOOLEAN_OPTIONS,
        states=[(code, str(STATE_NAMES[code])) for code in REVIEW_ORDER],
        formats=EXPORT_FORMATS,
        **context,
    )


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/exports")
def exports_page(project_id: int, xml_form_id: str) -> tuple[str, int]:
    """The exports page; ``?preview=1`` adds the first rows of each table, ``?load=<preset>`` fills in a preset."""
    require("export", project_id)
    query = export_query(request.args)
    load = request.args.get("load")
    if load:
        presets = {p.name: p for p in svc.list_presets(db_session(), project_id, xml_form_id)}
        if load not in presets:
            raise ApiError(404, "not_found", f"No preset {load!r}", {"preset": load})
        query = svc.options_to_wire(presets[load].options)
    if "preview" not in request.args:
        return _exports_page(project_id, xml_form_id, values=query, loaded=load)
    try:
        tables = svc.preview_export(db_session(), project_id, xml_form_id, query)
    except ApiError as error:
        if error.status == 404:
            raise
        return _exports_page(project_id, xml_form_id, error.status, values=query, error=error)
    return _exports_page(project_id, xml_form_id, values=query, preview=tables)


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/exports/download")
def download_export(project_id: int, xml_form_id: str) -> Response | tuple[str, int]:
    """Stream the export the page's options describe (a bad option comes back on the page, before any byte)."""
    principal = require("export", project_id)
    fmt = request.args.get("format", "xlsx")
    query = export_query(request.args)
    try:
        stream = svc.open_export(db_session(), project_id, xml_form_id, query, fmt, principal.actor)
    except ApiError as error:
        if error.status == 404:
            raise
        return _exports_page(project_id, xml_form_id, error.status, values=query, error=error)
    return export_response(stream)


def _back(project_id: int, xml_form_id: str) -> Response:
    return redirect(url_for("console.exports_page", project_id=project_id, xml_form_id=xml_form_id))


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/exports/presets")
def save_preset(project_id: int, xml_form_id: str) -> Response | tuple[str, int]:
    """Save the options shown as a named preset (checked like an export; 409 when the name is taken)."""
    principal = require("export.preset", project_id)
    query = {k: v for k, v in export_query(request.form).items() if k != "preset"}
    values, errors = load_form(PresetForm())
    if errors:
        return _exports_page(project_id, xml_form_id, 400, values=query, errors=errors)
    try:
        svc.create_preset(db_session(), project_id, xml_form_id, values["name"], query, principal.actor)
    except ApiError as error:
        if error.status == 404:
            raise
        return _exports_page(
            project_id, xml_form_id, error.status, values=query, error=error, preset_name=values["name"]
        )
    notice("preset_saved")
    return _back(project_id, xml_form_id)


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/exports/presets/<name>/delete")
def delete_preset(project_id: int, xml_form_id: str, name: str) -> Response:
    """Delete a preset."""
    principal = require("export.preset", project_id)
    svc.delete_preset(db_session(), project_id, xml_form_id, name, principal.actor)
    notice("preset_deleted")
    return _back(project_id, xml_form_id)


def _export_dir() -> Path:
    return Path(current_app.config["EXPORT_DIR"])


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/exports/schedules")
def create_schedule(project_id: int, xml_form_id: str) -> Response | tuple[str, int]:
    """Schedule the export (cron in UTC, an optional preset, a folder, how many files to keep, a format)."""
    principal = require("export.schedule", project_id)
    values, errors = load_form(ScheduleForm())
    if errors:
        return _exports_page(project_id, xml_form_id, 400, schedule_values=values, schedule_errors=errors)
    try:
        svc.create_schedule(db_session(), project_id, xml_form_id, values, _export_dir(), principal.actor)
    except ApiError as error:
        if error.status == 404 and error.details.get("form"):
            raise
        field = str(error.details.get("field") or "cron")
        return _exports_page(
            project_id,
            xml_form_id,
            error.status,
            schedule_values=values,
            schedule_errors={field: [error.code]},
            schedule_error=error,
        )
    notice("schedule_created")
    return _back(project_id, xml_form_id)


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/exports/schedules/<int:schedule_id>/delete")
def delete_schedule(project_id: int, xml_form_id: str, schedule_id: int) -> Response:
    """Delete a schedule (the files it wrote stay)."""
    principal = require("export.schedule", project_id)
    svc.delete_schedule(db_session(), project_id, xml_form_id, schedule_id, principal.actor)
    notice("schedule_deleted")
    return _back(project_id, xml_form_id)


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/exports/schedules/<int:schedule_id>/files/<file_name>")
def schedule_file(project_id: int, xml_form_id: str, schedule_id: int, file_name: str) -> Response:
    """Download a file a scheduled run wrote."""
    require("export", project_id)
    path = svc.schedule_file(db_session(), project_id, xml_form_id, schedule_id, file_name, _export_dir())
    return schedule_file_response(path)
