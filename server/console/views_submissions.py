"""Console pages of a form's submissions: the table (filters, sort, chosen columns, cursor pages), the map of
their geopoints over the region outlines, and one submission's page (answers, files, edits, reviews and
comments, audit trail) where a reviewer changes its state.

The filters are a GET form, so a filtered table is a URL one can bookmark or send; every page works
without JavaScript. The services are the JSON API's: ``submission_table``, ``submission_page``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Response, redirect, request, url_for

from exports.region_map import MapPoint, render_points_svg
from forms.schema import FormSchema
from server.api import downloads
from server.auth import require
from server.console import bp
from server.console.i18n import current_locale
from server.console.pages import load_form, notice, render
from server.console.schemas import ColumnsForm, ReviewForm, TableFilter
from server.db.models.submissions import REVIEW_STATES
from server.errors import ApiError
from server.region_boundaries import ATTRIBUTION, region_shapes
from server.services import forms as forms_svc
from server.services import overview
from server.services import submission_page as page_svc
from server.services import submission_table as table
from server.services import submissions as svc
from server.store import db_session

FORM = "/projects/<int:project_id>/forms/<xml_form_id>"
FIELD_PREFIX = "filter."
PAGE_SIZE = 50


@dataclass(frozen=True)
class Filters:
    """The table's filters as the page's GET form sent them (``args``: what links keep)."""

    values: dict[str, Any]
    fields: dict[str, str]
    errors: dict[str, list[str]]

    @property
    def args(self) -> dict[str, str]:
        """The query string of these filters (without the cursor)."""
        kept = {k: str(v) for k, v in self.values.items() if v not in (None, "") and k != "cursor"}
        kept.update({FIELD_PREFIX + path: value for path, value in self.fields.items()})
        return kept


def _filters() -> Filters:
    sent = {k: v for k, v in request.args.items() if v != "" and not k.startswith(FIELD_PREFIX)}
    fields = {k[len(FIELD_PREFIX) :]: v for k, v in request.args.items() if k.startswith(FIELD_PREFIX) and v}
    values, errors = load_form(TableFilter(), sent)
    return Filters(values, fields, errors)


def _day(value: date | None, days: int = 0) -> datetime | None:
    return datetime.combine(value + timedelta(days=days), time(), tzinfo=UTC) if value else None


def _answers_language(schema: FormSchema | None, saved: table.ColumnChoice | None = None) -> str | None:
    """The language answers are shown in: the one asked for, else the user's saved one, else the console's
    own language when the form is written in it (an Arabic page shows Arabic labels), else the form's default."""
    asked = request.args.get("lang") or None
    if asked:
        return asked
    if saved is not None and saved.saved and saved.language:
        return saved.language
    code = current_locale().code
    return code if schema is not None and code in schema.languages else None


def _query(filters: Filters, language: str | None, **extra: Any) -> table.TableQuery:
    v = filters.values
    sort = v.get("sort") or "submitted_at"
    return table.TableQuery(
        cursor=v.get("cursor"),
        limit=PAGE_SIZE,
        since=_day(v.get("since")),
        until=_day(v.get("until"), days=1),  # the last day shown is included
        review_states=tuple(v["review_state"].split(",")) if v.get("review_state") else (),
        submitter_id=v.get("submitter"),
        device_token_id=v.get("device"),
        form_versions=(v["form_version"],) if v.get("form_version") else (),
        field_values={path: (value,) for path, value in filters.fields.items()},
        sort="submitted_at" if sort == "submitted_at" else "field",
        sort_field=None if sort == "submitted_at" else sort,
        order=v.get("order") or "desc",
        language=language,
        display=v.get("display"),
        **extra,
    )


def _choices(project_id: int, xml_form_id: str, schema: FormSchema | None, language: str | None) -> dict[str, Any]:
    """What the page shows around the table: the project, the form, and what the filter form offers."""
    session = db_session()
    form = forms_svc.describe_form(session, project_id, xml_form_id)
    offered = page_svc.table_choices(schema, language)
    return {
        "project": overview.get_project(session, project_id),
        "form": form,
        "schema": schema,
        "answers_language": offered.language,
        "questions": offered.questions,
        "selects": offered.selects,
        "versions": [v.version for v in form.versions],
        "people": [(u.id, u.username) for _, u in overview.members(session, project_id)],
        "phones": [(d.id, d.name) for d in overview.devices(session, project_id)],
        "review_states": REVIEW_STATES,
    }


@bp.get(FORM + "/submissions")
def submissions(project_id: int, xml_form_id: str) -> tuple[str, int]:
    """A form's submissions as a table: filters, sort, the user's columns, 50 rows a page."""
    principal = require("submission.read", project_id)
    session = db_session()
    filters = _filters()
    schema = table.table_schema(session, project_id, xml_form_id)
    saved = table.get_table_columns(session, project_id, xml_form_id, principal)
    language = _answers_language(schema, saved)
    context = _choices(project_id, xml_form_id, schema, language)
    shown = None if saved.saved else page_svc.default_columns(schema)
    context.update(filters=filters, saved=saved, chosen=saved.paths if saved.saved else shown)
    if filters.errors:
        return render("submissions.html", 400, page=None, **context)
    try:
        query = _query(filters, language, count=True, columns=shown)
        result = table.submissions_table(session, project_id, xml_form_id, query, principal)
    except ApiError as error:
        if error.status == 404:
            raise
        return render("submissions.html", error.status, page=None, error=error, **context)
    names = overview.names_of(
        session,
        {f"user:{r.submitter_id}" for r in result.rows if r.submitter_id}
        | {f"device:{r.device_token_id}" for r in result.rows if r.device_token_id},
    )
    return render("submissions.html", page=result, names=names, **context)


@bp.post(FORM + "/submissions/columns")
def save_columns(project_id: int, xml_form_id: str) -> Response | tuple[str, int]:
    """Save the user's columns (questions, language, labels or values) for this form's table."""
    principal = require("submission.read", project_id)
    values, errors = load_form(ColumnsForm())
    if errors:
        raise ApiError(400, "invalid_input", "Check the columns form", {"fields": errors})
    table.set_table_columns(
        db_session(),
        project_id,
        xml_form_id,
        principal,
        request.form.getlist("paths"),
        values.get("lang") or None,
        values["display"],
    )
    notice("columns_saved")
    back = {k: v for k, v in request.args.items() if k != "cursor"}
    return redirect(url_for("console.submissions", project_id=project_id, xml_form_id=xml_form_id, **back))


@bp.get(FORM + "/submissions/map")
def submissions_map(project_id: int, xml_form_id: str) -> tuple[str, int]:
    """The geopoints of the submissions the filters keep, over Morocco's region outlines (no tile server)."""
    principal = require("submission.read", project_id)
    session = db_session()
    filters = _filters()
    schema = table.table_schema(session, project_id, xml_form_id)
    language = _answers_language(schema, table.get_table_columns(session, project_id, xml_form_id, principal))
    context = _choices(project_id, xml_form_id, schema, language)
    context["filters"] = filters
    if filters.errors:
        return render("submissions_map.html", 400, points=None, svg="", **context)
    try:
        geopoint = request.args.get("geopoint") or None
        points = page_svc.submission_points(
            session, project_id, xml_form_id, _query(filters, language), geopoint, principal
        )
    except ApiError as error:
        if error.status == 404:
            raise
        return render("submissions_map.html", error.status, points=None, svg="", error=error, **context)
    link = url_for("console.submission", project_id=project_id, xml_form_id=xml_form_id, instance_id="-")[:-1]
    marks = [MapPoint(p.lon, p.lat, p.name or p.instance_id, link + p.instance_id) for p in points.points]
    svg = render_points_svg(
        region_shapes(), marks, language=current_locale().code, title=context["form"].title or xml_form_id
    )
    return render("submissions_map.html", points=points, svg=svg, attribution=ATTRIBUTION, **context)


def _submission_page(
    project_id: int, xml_form_id: str, instance_id: str, status: int = 200, **extra: Any
) -> tuple[str, int]:
    session = db_session()
    language = _answers_language(table.table_schema(session, project_id, xml_form_id))
    display: table.Display = "values" if request.args.get("display") == "values" else "labels"
    try:
        detail = page_svc.submission_page(
            session, project_id, xml_form_id, instance_id, language=language, display=display
        )
    except ApiError as error:
        if error.code != "invalid_language":
            raise
        detail = page_svc.submission_page(session, project_id, xml_form_id, instance_id, display=display)
    extra.setdefault("errors", {})
    return render(
        "submission.html",
        status,
        sub=detail,
        runs=page_svc.answer_runs,
        review_states=REVIEW_STATES,
        project=overview.get_project(session, project_id),
        form=forms_svc.describe_form(session, project_id, xml_form_id),
        **extra,
    )


@bp.get(FORM + "/submissions/<instance_id>")
def submission(project_id: int, xml_form_id: str, instance_id: str) -> tuple[str, int]:
    """One submission: answers with their labels, repeats as tables, photos, edits, reviews, audit trail."""
    require("submission.read", project_id)
    return _submission_page(project_id, xml_form_id, instance_id)


@bp.post(FORM + "/submissions/<instance_id>/review")
def review(project_id: int, xml_form_id: str, instance_id: str) -> Response | tuple[str, int]:
    """Change the review state and/or comment (a comment alone leaves the state as it is)."""
    principal = require("submission.review", project_id)
    values, errors = load_form(ReviewForm())
    if not errors and not values.get("review_state") and not values.get("comment"):
        errors = {"comment": ["required"]}
    if errors:
        return _submission_page(project_id, xml_form_id, instance_id, 400, errors=errors, values=values)
    svc.review_submission(
        db_session(),
        project_id=project_id,
        xml_form_id=xml_form_id,
        instance_id=instance_id,
        review_state=values.get("review_state") or None,
        comment=values.get("comment") or None,
        principal=principal,
        seen=values.get("seen"),
    )
    notice("review_saved")
    return redirect(
        url_for("console.submission", project_id=project_id, xml_form_id=xml_form_id, instance_id=instance_id)
    )


@bp.get(FORM + "/submissions/<instance_id>/files/<name>")
def submission_file(project_id: int, xml_form_id: str, instance_id: str, name: str) -> Response:
    """A file of a submission, shown in the page (pictures inline) or saved."""
    require("submission.read", project_id)
    attachment = svc.get_attachment(db_session(), project_id, xml_form_id, instance_id, name)
    return downloads.submission_file(attachment, svc.blob_store(), inline_images=True)
