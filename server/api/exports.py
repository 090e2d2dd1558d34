"""JSON API of the exports area: streamed exports (CSV zip, XLSX, GeoJSON), presets and schedules.

Handlers stay thin: the export's query string is parsed by ``exports.options_from_query`` inside the
service (its keys are open-ended: ``field.<path>=value``), bodies by the marshmallow schemas below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from marshmallow import RAISE, Schema, fields, validate

from server.api.wire import load_json
from server.auth import require
from server.db.models.exports import EXPORT_FORMATS
from server.services import exports as svc
from server.store import db_session

bp = Blueprint("exports", __name__, url_prefix="/v1")

_FORM = "/projects/<int:project_id>/forms/<xml_form_id>"


class PresetIn(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    options = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=200)),
        values=fields.Raw(),
        load_default=dict,
    )


class PresetOut(Schema):
    name = fields.String()
    options = fields.Dict()
    created_by = fields.String()
    created_at = fields.DateTime()


class ScheduleIn(Schema):
    class Meta:
        unknown = RAISE

    cron = fields.String(required=True, validate=validate.Length(min=1, max=100))
    preset = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    folder = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=255))
    keep = fields.Integer(load_default=7, validate=validate.Range(min=1, max=10_000))
    format = fields.String(load_default="zip", validate=validate.OneOf(EXPORT_FORMATS))


class RunOut(Schema):
    scheduled_for = fields.DateTime()
    status = fields.String()
    claimed_by = fields.String()
    finished_at = fields.DateTime()
    file_name = fields.String()
    records = fields.Integer()
    error = fields.String()


class ScheduleOut(Schema):
    id = fields.Integer()
    cron = fields.String()
    preset = fields.String()
    folder = fields.String()
    keep = fields.Integer()
    format = fields.String()
    enabled = fields.Boolean()
    next_run_at = fields.DateTime()
    created_by = fields.String()
    created_at = fields.DateTime()


def _query() -> dict[str, list[str]]:
    return request.args.to_dict(flat=False)


@bp.get(f"{_FORM}/export.<any(zip, xlsx, geojson):fmt>")
def export(project_id: int, xml_form_id: str, fmt: str) -> Response:
    """Stream the form's export (options in the query string; 400 naming a bad one before any byte)."""
    principal = require("export", project_id)
    stream = svc.open_export(db_session(), project_id, xml_form_id, _query(), fmt, principal.actor)
    response = Response(stream_with_context(stream.chunks), mimetype=stream.media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{stream.file_name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(f"{_FORM}/export-presets")
def list_presets(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """List the form's named export presets."""
    require("export", project_id)
    presets = svc.list_presets(db_session(), project_id, xml_form_id)
    return {"presets": PresetOut(many=True).dump(presets)}


@bp.post(f"{_FORM}/export-presets")
def create_preset(project_id: int, xml_form_id: str) -> tuple[dict[str, Any], int]:
    """Save named export options for the form (409 when the name is taken; managers and admins)."""
    principal = require("export.preset", project_id)
    body = load_json(PresetIn())
    preset = svc.create_preset(db_session(), project_id, xml_form_id, body["name"], body["options"], principal.actor)
    out: dict[str, Any] = PresetOut().dump(preset)
    return out, 201


@bp.delete(f"{_FORM}/export-presets/<name>")
def delete_preset(project_id: int, xml_form_id: str, name: str) -> dict[str, Any]:
    """Delete a named export preset (managers and admins: presets are shared by the project's analysts)."""
    principal = require("export.preset", project_id)
    svc.delete_preset(db_session(), project_id, xml_form_id, name, principal.actor)
    return {"deleted": name}


def _export_dir() -> Path:
    return Path(current_app.config["EXPORT_DIR"])


@bp.get(f"{_FORM}/export-schedules")
def list_schedules(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """List the form's scheduled exports with their newest runs."""
    require("export", project_id)
    items = svc.list_schedules(db_session(), project_id, xml_form_id)
    return {
        "schedules": [{**ScheduleOut().dump(i["schedule"]), "runs": RunOut(many=True).dump(i["runs"])} for i in items]
    }


@bp.post(f"{_FORM}/export-schedules")
def create_schedule(project_id: int, xml_form_id: str) -> tuple[dict[str, Any], int]:
    """Schedule an export of the form (cron, preset, folder under EXPORT_DIR, keep the last N files)."""
    principal = require("export.schedule", project_id)
    body = load_json(ScheduleIn())
    schedule = svc.create_schedule(db_session(), project_id, xml_form_id, body, _export_dir(), principal.actor)
    out: dict[str, Any] = ScheduleOut().dump(schedule)
    return out, 201


@bp.delete(f"{_FORM}/export-schedules/<int:schedule_id>")
def delete_schedule(project_id: int, xml_form_id: str, schedule_id: int) -> dict[str, Any]:
    """Delete a scheduled export (files already written stay)."""
    principal = require("export.schedule", project_id)
    svc.delete_schedule(db_session(), project_id, xml_form_id, schedule_id, principal.actor)
    return {"deleted": schedule_id}
