"""Console pages of the programme dashboard: the indicators' figures, one indicator by region and over
time (a map of the regions, columns by period, the tables behind both, CSV), and the definitions editor.

The figures are ``server.services.indicators``' (the JSON API's ``GET .../indicators/{name}``); the editor
saves through the same ``save_indicator`` as ``PUT .../indicators/{name}``, so a page can neither show nor
store anything the API would not. Charts are SVG drawn here, on the server: a phone without script (or a
printer) gets them too.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, redirect, request, url_for
from flask_babel import format_decimal, format_percent, gettext

from exports.charts import bar_chart_svg, figures_csv, progress_svg
from exports.indicators import COUNTABLE_STATES, IndicatorDefinition
from exports.region_map import match_regions, render_svg
from server.auth import require
from server.console import bp
from server.console.i18n import current_locale
from server.console.pages import api_field_errors, load_form, notice, render
from server.console.schemas import FiguresFilter, IndicatorForm
from server.errors import ApiError
from server.region_boundaries import ATTRIBUTION, region_shapes
from server.services import indicators as svc
from server.services import overview
from server.store import db_session

# The definition's keys edited as JSON (titles, target and review states have their own fields).
# The parts of a definition the editor's JSON holds, by their API names (svc.definition_to_wire).
JSON_KEYS = ("source", "measure", "filters", "breakdowns", "dateField")


def figure_text(definition: IndicatorDefinition, value: float | None) -> str:
    """A figure as the page prints it: a share in per cent, a count with grouped digits."""
    if value is None:
        return "—"
    if definition.measure == "share":
        return str(format_percent(value))
    return str(format_decimal(value, format="#,##0.##"))


def _language() -> str:
    return current_locale().code


def _filter_values(definition: IndicatorDefinition) -> tuple[str | None, str]:
    values, errors = load_form(FiguresFilter(), request.args)
    if errors:
        raise ApiError(400, "invalid_input", "period is month or quarter", {"fields": errors})
    by = values.get("by") or (definition.breakdowns[0] if definition.breakdowns else None)
    return by, values.get("period") or "month"


def _trend_svg(figures: svc.IndicatorFigures, chart_id: str, width: int = 480) -> str:
    definition = figures.indicator.definition
    points = [(cell.period or "—", cell.value) for cell in figures.cells]
    title = gettext("%(indicator)s over time", indicator=definition.title(_language()))
    # A count's or a sum's target is for the whole: a period's column is not held to it.
    target = definition.target if definition.measure in ("share", "mean") else None
    return bar_chart_svg(
        points,
        title=title,
        formatted=lambda v: figure_text(definition, v),
        target=target,
        chart_id=chart_id,
        width=width,
        height=round(width * 0.42),
    )


def _progress(figures: svc.IndicatorFigures) -> str:
    if figures.progress is None:
        return ""
    label = gettext("%(percent)s of the target", percent=format_percent(figures.progress))
    return progress_svg(figures.progress, label=label)


def _region_map(figures: svc.IndicatorFigures) -> str:
    """The breakdown as a map when its keys name regions (most of them); else nothing."""
    shapes = region_shapes()
    keys = {c.key: c.label for c in figures.cells if c.key is not None}
    if not shapes or not keys:
        return ""
    matched = match_regions(keys, shapes)
    if len(matched) * 2 < len(keys):
        return ""
    values: dict[int, float | None] = {}
    for cell in figures.cells:
        if cell.key in matched:
            values[matched[cell.key]] = cell.value
    definition = figures.indicator.definition
    return render_svg(
        shapes,
        values,
        language=_language(),
        title=gettext("%(indicator)s by region", indicator=definition.title(_language())),
        formatted=lambda v: figure_text(definition, v),
        no_data=gettext("no data"),
    )


@bp.get("/projects/<int:project_id>/dashboard")
def dashboard(project_id: int) -> tuple[str, int]:
    """Every indicator: its figure, target, progress and trend."""
    require("indicator.read", project_id)
    values, errors = load_form(FiguresFilter(), request.args)
    period = (values.get("period") if not errors else None) or "quarter"
    session = db_session()
    all_figures = svc.dashboard_figures(session, project_id, period=period, language=_language())
    cards = [
        {
            "figures": f,
            "title": f.indicator.definition.title(_language()),
            "value": figure_text(f.indicator.definition, f.value),
            "target": figure_text(f.indicator.definition, f.indicator.definition.target)
            if f.indicator.definition.target is not None
            else None,
            "progress": _progress(f),
            "progress_text": format_percent(f.progress) if f.progress is not None else None,
            "trend": _trend_svg(f, f"trend-{f.indicator.name}", width=320),
        }
        for f in all_figures
    ]
    return render("dashboard.html", project=overview.get_project(session, project_id), cards=cards, period=period)


@bp.get("/projects/<int:project_id>/dashboard/<name>")
def indicator_page(project_id: int, name: str) -> tuple[str, int]:
    """One indicator: by a breakdown (a map when it is the region) and over time, with the tables behind."""
    require("indicator.read", project_id)
    session = db_session()
    saved = svc.get_indicator(session, project_id, name)
    by, period = _filter_values(saved.definition)
    language = _language()
    by_figures = svc.indicator_figures(session, project_id, name, by=by, language=language) if by else None
    over_time = svc.indicator_figures(session, project_id, name, period=period, language=language)
    definition = saved.definition
    drill = svc.drill_down(session, project_id, definition, by) if by else None

    def drill_url(key: str) -> str | None:
        if drill is None:
            return None
        query = {**drill, f"filter.{by}": key}
        return url_for("console.submissions", project_id=project_id, xml_form_id=definition.source_name, **query)

    return render(
        "indicator.html",
        project=overview.get_project(session, project_id),
        saved=saved,
        title=definition.title(language),
        figures=over_time,
        value=figure_text(definition, over_time.value),
        target=figure_text(definition, definition.target) if definition.target is not None else None,
        progress=_progress(over_time),
        progress_text=format_percent(over_time.progress) if over_time.progress is not None else None,
        by=by,
        period=period,
        by_figures=by_figures,
        region_map=_region_map(by_figures) if by_figures else "",
        attribution=ATTRIBUTION,
        trend=_trend_svg(over_time, "trend"),
        text=lambda v: figure_text(definition, v),
        versions=svc.indicator_history(session, project_id, name),
        drill_url=drill_url,
    )


@bp.get("/projects/<int:project_id>/dashboard/<name>/figures.csv")
def indicator_csv(project_id: int, name: str) -> Response:
    """The figures of one chart (by a breakdown, or over time) as CSV."""
    require("indicator.read", project_id)
    values, errors = load_form(FiguresFilter(), request.args)
    if errors:
        raise ApiError(400, "invalid_input", "period is month or quarter", {"fields": errors})
    figures = svc.indicator_figures(
        db_session(),
        project_id,
        name,
        by=values.get("by") or None,
        period=values.get("period") or None,
        language=_language(),
    )
    header = ("key", "label", "period", "value", "rows", "matched")
    rows = [(c.key, c.label, c.period, c.value, c.rows, c.matched) for c in figures.cells]
    if not rows:
        rows = [(None, None, None, figures.value, figures.rows, figures.matched)]
    suffix = "-".join(part for part in (values.get("by"), values.get("period")) if part).replace("/", "_")
    filename = f"{name}{'-' + suffix if suffix else ''}.csv"
    return Response(
        figures_csv(header, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ---------------------------------------------------------------------------------------------
# The definitions editor


def _form_values(saved: svc.SavedIndicator | None) -> dict[str, Any]:
    if saved is None:
        return {"definition": json.dumps({"source": {"form": ""}, "measure": {"kind": "count"}}, indent=2)}
    body = svc.definition_to_wire(saved.definition.to_json())
    target = saved.definition.target
    if target is not None and saved.definition.measure == "share":
        target = target * 100
    values: dict[str, Any] = {
        "name": saved.name,
        "definition": json.dumps({k: body[k] for k in JSON_KEYS if k in body}, indent=2, ensure_ascii=False),
        "target": format(target, "g") if target is not None else "",
    }
    for language, title in saved.definition.titles.items():
        values[f"title_{language}"] = title
    for state in COUNTABLE_STATES:
        values[f"count_{state}"] = state in saved.definition.review_states
    return values


def _editor(project_id: int, saved: svc.SavedIndicator | None, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("values", _form_values(saved))
    context.setdefault("errors", {})
    return render(
        "indicator_edit.html",
        status,
        project=overview.get_project(db_session(), project_id),
        saved=saved,
        states=COUNTABLE_STATES,
        **context,
    )


@bp.get("/projects/<int:project_id>/indicators/new")
def new_indicator(project_id: int) -> tuple[str, int]:
    """The editor for a new indicator."""
    require("indicator.manage", project_id)
    return _editor(project_id, None)


@bp.get("/projects/<int:project_id>/indicators/<name>/edit")
def edit_indicator(project_id: int, name: str) -> tuple[str, int]:
    """The editor, filled with the version in force."""
    require("indicator.manage", project_id)
    return _editor(project_id, svc.get_indicator(db_session(), project_id, name))


def _definition_body(values: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The stored definition from the editor's fields (its JSON is the API's, ``PUT .../indicators/{name}``)."""
    try:
        body = json.loads(values.get("definition") or "{}")
    except json.JSONDecodeError:
        errors["definition"] = ["json"]
        return {}
    if not isinstance(body, dict):
        errors["definition"] = ["json"]
        return {}
    body = svc.definition_from_wire({k: v for k, v in body.items() if k not in ("title", "target", "reviewStates")})
    body["title"] = {
        lang: values[f"title_{lang}"].strip() for lang in ("fr", "ar", "en") if values.get(f"title_{lang}")
    }
    target = values.get("target")
    if target is not None:
        kind = body.get("measure", {}).get("kind") if isinstance(body.get("measure"), dict) else None
        body["target"] = target / 100 if kind == "share" else target
    body["review_states"] = [s for s in COUNTABLE_STATES if values.get(f"count_{s}")]
    return body


@bp.post("/projects/<int:project_id>/indicators")
def save_indicator(project_id: int) -> Response | tuple[str, int]:
    """Save the editor's definition as the indicator's next version (the same again changes nothing)."""
    principal = require("indicator.manage", project_id)
    values, errors = load_form(IndicatorForm())
    body = _definition_body(values, errors) if not errors else {}
    if errors:
        return _editor(project_id, None, 400, values=request.form.to_dict(), errors=errors)
    try:
        saved, created = svc.save_indicator(db_session(), project_id, values["name"], body, principal.actor)
    except ApiError as error:
        where = error.details.get("field") if isinstance(error.details, dict) else None
        where = svc.wire_field(where) if isinstance(where, str) else where  # as the editor's JSON names it
        return _editor(
            project_id,
            None,
            error.status,
            values=request.form.to_dict(),
            errors=api_field_errors(error),
            error=error,
            where=where,
        )
    notice("indicator_saved" if created else "indicator_unchanged")
    return redirect(url_for("console.indicator_page", project_id=project_id, name=saved.name))


@bp.post("/projects/<int:project_id>/indicators/<name>/remove")
def remove_indicator(project_id: int, name: str) -> Response:
    """Take an indicator off the dashboard (its versions stay in the history)."""
    principal = require("indicator.manage", project_id)
    svc.remove_indicator(db_session(), project_id, name, principal.actor)
    notice("indicator_removed")
    return redirect(url_for("console.dashboard", project_id=project_id))
