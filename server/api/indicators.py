"""JSON API of the dashboard: a project's indicator definitions and their live figures.

``GET /v1/projects/{p}/indicators`` lists the definitions in force; ``PUT .../indicators/{name}``
saves a new version (the same definition again changes nothing); ``GET .../indicators/{name}?by=&period=``
answers the figures the dashboard page shows. Analysts and managers read; managers define.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from exports.indicators import LANGUAGES, PERIODS
from server.api.contract import documented
from server.api.wire import load_json, load_query
from server.auth import require
from server.services import indicators as svc
from server.store import db_session

bp = Blueprint("indicators", __name__, url_prefix="/v1")

_BASE = "/projects/<int:project_id>/indicators"


class DefinitionIn(Schema):
    """A definition as exports.indicators.parse_definition reads it (checked there, field by field)."""

    class Meta:
        unknown = RAISE

    title = fields.Dict(keys=fields.String(validate=validate.OneOf(LANGUAGES)), values=fields.String(), required=True)
    source = fields.Dict(
        keys=fields.String(validate=validate.OneOf(("form", "entity_list"))), values=fields.String(), required=True
    )
    measure = fields.Dict(required=True)
    filters = fields.List(fields.Dict(), load_default=list)
    breakdowns = fields.List(fields.String(), load_default=list)
    target = fields.Float(load_default=None, allow_none=True)
    review_states = fields.List(fields.String(), load_default=["received", "has_issues", "approved"])
    date_field = fields.String(load_default=None, allow_none=True)


class FiguresQuery(Schema):
    class Meta:
        unknown = RAISE

    by = fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    period = fields.String(load_default=None, validate=validate.OneOf(PERIODS))
    lang = fields.String(load_default="fr", validate=validate.OneOf(LANGUAGES))


class NoteOut(Schema):
    field = fields.String()
    missing_from = fields.List(fields.String())
    in_current = fields.Boolean()


class IndicatorOut(Schema):
    name = fields.String()
    version = fields.Integer()
    definition = fields.Method("_definition")
    created_by = fields.String()
    created_at = fields.DateTime()
    notes = fields.List(fields.Nested(NoteOut))

    def _definition(self, saved: svc.SavedIndicator) -> dict[str, Any]:
        return saved.definition.to_json()


class VersionOut(Schema):
    version = fields.Integer()
    definition = fields.Dict(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()


class CellOut(Schema):
    key = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    period = fields.String(allow_none=True)
    value = fields.Float(allow_none=True)
    rows = fields.Integer()
    matched = fields.Integer()


class FiguresOut(Schema):
    indicator = fields.Nested(IndicatorOut)
    value = fields.Float(allow_none=True)
    target = fields.Method("_target")
    progress = fields.Float(allow_none=True)
    rows = fields.Integer()
    matched = fields.Integer()
    by = fields.String(allow_none=True)
    period = fields.String(allow_none=True)
    cells = fields.List(fields.Nested(CellOut))

    def _target(self, figures: svc.IndicatorFigures) -> float | None:
        return figures.indicator.definition.target


class IndicatorListOut(Schema):
    indicators = fields.List(fields.Nested(IndicatorOut))


class RemovedOut(Schema):
    removed = fields.String()


class VersionListOut(Schema):
    versions = fields.List(fields.Nested(VersionOut))


@bp.get(_BASE)
@documented({200: IndicatorListOut})
def list_indicators(project_id: int) -> dict[str, Any]:
    """The project's indicators in force."""
    require("indicator.read", project_id)
    return {"indicators": IndicatorOut(many=True).dump(svc.list_indicators(db_session(), project_id))}


@bp.put(f"{_BASE}/<name>")
@documented({200: IndicatorOut, 201: IndicatorOut}, body=DefinitionIn, errors=(409,))
def save_indicator(project_id: int, name: str) -> tuple[dict[str, Any], int]:
    """Save a definition as the indicator's next version (201), or change nothing when it is the same (200)."""
    principal = require("indicator.manage", project_id)
    body = load_json(DefinitionIn())
    saved, created = svc.save_indicator(db_session(), project_id, name, body, principal.actor)
    out: dict[str, Any] = IndicatorOut().dump(saved)
    return out, 201 if created else 200


@bp.delete(f"{_BASE}/<name>")
@documented({200: RemovedOut}, errors=(409,))
def remove_indicator(project_id: int, name: str) -> dict[str, Any]:
    """Take an indicator off the dashboard (its versions stay in the history)."""
    principal = require("indicator.manage", project_id)
    svc.remove_indicator(db_session(), project_id, name, principal.actor)
    return {"removed": name}


@bp.get(f"{_BASE}/<name>/versions")
@documented({200: VersionListOut})
def indicator_versions(project_id: int, name: str) -> dict[str, Any]:
    """Every saved version of an indicator, newest first."""
    require("indicator.read", project_id)
    return {"versions": VersionOut(many=True).dump(svc.indicator_history(db_session(), project_id, name))}


@bp.get(f"{_BASE}/<name>")
@documented({200: FiguresOut}, query=FiguresQuery)
def indicator_figures(project_id: int, name: str) -> dict[str, Any]:
    """The indicator's live figures: overall, and by a breakdown field and/or by month or quarter."""
    require("indicator.read", project_id)
    query = load_query(FiguresQuery())
    figures = svc.indicator_figures(
        db_session(), project_id, name, by=query["by"], period=query["period"], language=query["lang"]
    )
    out: dict[str, Any] = FiguresOut().dump(figures)
    return out
