"""JSON API of the dashboard: a project's indicator definitions and their live figures.

``GET /v1/projects/{p}/indicators`` lists the definitions in force; ``PUT .../indicators/{name}``
saves a new version (the same definition again changes nothing); ``GET .../indicators/{name}?by=&period=``
answers the figures the dashboard page shows. Analysts and managers read; managers define.

ODK Central's conventions (docs/api-conventions.md): camelCase fields, bare arrays with ``X-Total-Count``,
``{"success": true}`` for a delete, Central's review-state spellings. A definition is stored in the pure
format of ``exports.indicators`` (``review_states``, ``date_field``, source ``entity_list``, ``has_issues``),
which the console and the demo programme write too; ``server.services.indicators`` translates it to and
from the wire (``definition_to_wire``, ``definition_from_wire``, for this door and the console's editor),
so definitions stored before read unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response
from marshmallow import fields, validate

from exports.indicators import LANGUAGES, PERIODS
from server.api.contract import ListOf, documented
from server.api.conventions import CamelSchema, StrictCamelSchema, json_list
from server.api.wire import load_json, load_query
from server.auth import require
from server.errors import ApiError
from server.services import indicators as svc
from server.store import db_session

bp = Blueprint("indicators", __name__, url_prefix="/v1")

_BASE = "/projects/<int:project_id>/indicators"


@contextmanager
def _wire_names() -> Iterator[None]:
    """Rename ``details.field`` of a refusal to the wire name the client sent."""
    try:
        yield
    except ApiError as error:
        field = error.details.get("field")
        if isinstance(field, str):
            error.details["field"] = svc.wire_field(field)
        raise


class DefinitionIn(StrictCamelSchema):
    """A definition on the wire; ``svc.definition_from_wire`` gives what exports.indicators.parse_definition reads."""

    title = fields.Dict(keys=fields.String(validate=validate.OneOf(LANGUAGES)), values=fields.String(), required=True)
    source = fields.Dict(
        keys=fields.String(validate=validate.OneOf(tuple(svc.WIRE_SOURCES.values()))),
        values=fields.String(),
        required=True,
    )
    measure = fields.Dict(required=True)
    filters = fields.List(fields.Dict(), load_default=list)
    breakdowns = fields.List(fields.String(), load_default=list)
    target = fields.Float(load_default=None, allow_none=True)
    review_states = fields.List(
        fields.String(allow_none=True, validate=validate.OneOf(("hasIssues", "approved"))),
        load_default=lambda: list(svc.WIRE_STATES.values()),
        metadata={"description": "Which review states count, Central's spellings: null (not reviewed), hasIssues, "
                  "approved (rejected never counts)"},
    )  # fmt: skip
    date_field = fields.String(load_default=None, allow_none=True)


class FiguresQuery(StrictCamelSchema):
    by = fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    period = fields.String(load_default=None, validate=validate.OneOf(PERIODS))
    lang = fields.String(load_default="fr", validate=validate.OneOf(LANGUAGES))


class NoteOut(CamelSchema):
    field = fields.String()
    missing_from = fields.List(fields.String())
    in_current = fields.Boolean()


class IndicatorOut(CamelSchema):
    name = fields.String()
    version = fields.Integer()
    definition = fields.Method("_definition")
    created_by = fields.String()
    created_at = fields.DateTime()
    notes = fields.List(fields.Nested(NoteOut))

    def _definition(self, saved: svc.SavedIndicator) -> dict[str, Any]:
        return svc.definition_to_wire(saved.definition.to_json())


class VersionOut(CamelSchema):
    version = fields.Integer()
    definition = fields.Method("_definition", metadata={"description": "null: the version that removed it"})
    created_by = fields.String()
    created_at = fields.DateTime()

    def _definition(self, version: Any) -> dict[str, Any] | None:
        return svc.definition_to_wire(version.definition) if version.definition is not None else None


class CellOut(CamelSchema):
    key = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    period = fields.String(allow_none=True)
    value = fields.Float(allow_none=True)
    rows = fields.Integer()
    matched = fields.Integer()


class FiguresOut(CamelSchema):
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


class SuccessOut(CamelSchema):
    success = fields.Boolean()


@bp.get(_BASE)
@documented({200: ListOf(IndicatorOut)})
def list_indicators(project_id: int) -> Response:
    """The project's indicators in force, as a bare array."""
    require("indicator.read", project_id)
    return json_list(svc.list_indicators(db_session(), project_id), IndicatorOut())


@bp.put(f"{_BASE}/<name>")
@documented({200: IndicatorOut, 201: IndicatorOut}, body=DefinitionIn, errors=(409,))
def save_indicator(project_id: int, name: str) -> tuple[dict[str, Any], int]:
    """Save a definition as the indicator's next version (201), or change nothing when it is the same (200)."""
    principal = require("indicator.manage", project_id)
    body = svc.definition_from_wire(load_json(DefinitionIn()))
    with _wire_names():
        saved, created = svc.save_indicator(db_session(), project_id, name, body, principal.actor)
    out: dict[str, Any] = IndicatorOut().dump(saved)
    return out, 201 if created else 200


@bp.delete(f"{_BASE}/<name>")
@documented({200: SuccessOut}, errors=(409,))
def remove_indicator(project_id: int, name: str) -> dict[str, Any]:
    """Take an indicator off the dashboard (its versions stay in the history); ``success`` is true, as Central."""
    principal = require("indicator.manage", project_id)
    svc.remove_indicator(db_session(), project_id, name, principal.actor)
    return {"success": True}


@bp.get(f"{_BASE}/<name>/versions")
@documented({200: ListOf(VersionOut)})
def indicator_versions(project_id: int, name: str) -> Response:
    """Every saved version of an indicator, newest first, as a bare array."""
    require("indicator.read", project_id)
    return json_list(svc.indicator_history(db_session(), project_id, name), VersionOut())


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
