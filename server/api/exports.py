"""JSON API of the exports area: streamed exports (CSV zip, XLSX, GeoJSON), presets and schedules.

Handlers stay thin: the export's query string (camelCase option names, and the open-ended
``field.<path>=value``) is translated and parsed inside the service (``options_from_wire``, then
``exports.options_from_query``), bodies by the marshmallow schemas below; a preset's ``options`` cross
the wire in the same names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, send_file, stream_with_context
from marshmallow import fields, validate

from exports.options import HEADER_MODES, LABEL_MODES
from exports.options import REVIEW_STATES as EXPORT_REVIEW_STATES
from server.api.contract import ListOf, documented
from server.api.conventions import CamelSchema, StrictCamelSchema, json_list
from server.api.wire import load_json
from server.auth import require
from server.db.models.exports import EXPORT_FORMATS
from server.errors import ApiError
from server.services import exports as svc
from server.store import db_session

bp = Blueprint("exports", __name__, url_prefix="/v1")

_FORM = "/projects/<int:project_id>/forms/<xml_form_id>"


class PresetIn(StrictCamelSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    options = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=200)),
        values=fields.Raw(),
        load_default=dict,
    )


class PresetOut(CamelSchema):
    name = fields.String()
    options = fields.Function(
        lambda preset: svc.options_to_wire(preset.options),
        metadata={"type": "object", "description": "The export's parameters, as the query string names them"},
    )
    created_by = fields.String()
    created_at = fields.DateTime()


class ScheduleIn(StrictCamelSchema):
    cron = fields.String(required=True, validate=validate.Length(min=1, max=100))
    preset = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    folder = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=255))
    keep = fields.Integer(load_default=7, validate=validate.Range(min=1, max=10_000))
    format = fields.String(load_default="zip", validate=validate.OneOf(EXPORT_FORMATS))


class RunOut(CamelSchema):
    scheduled_for = fields.DateTime()
    status = fields.String()
    claimed_by = fields.String()
    finished_at = fields.DateTime(allow_none=True)
    file_name = fields.String(allow_none=True)
    records = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


class ScheduleOut(CamelSchema):
    id = fields.Integer()
    cron = fields.String()
    preset = fields.String(allow_none=True)
    folder = fields.String()
    keep = fields.Integer()
    format = fields.String(validate=validate.OneOf(EXPORT_FORMATS))
    enabled = fields.Boolean()
    next_run_at = fields.DateTime()
    created_by = fields.String()
    created_at = fields.DateTime()


class ScheduleWithRunsOut(ScheduleOut):
    runs = fields.List(fields.Nested(RunOut), metadata={"description": "The newest runs first"})


class SuccessOut(CamelSchema):
    success = fields.Boolean(metadata={"description": "true, as ODK Central answers a deletion"})


# RFC 7946: what export.geojson streams (one Point feature per submission with a geopoint).
GEOJSON = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "geometry", "properties"],
                "properties": {
                    "type": {"const": "Feature"},
                    "geometry": {"type": ["object", "null"]},
                    "properties": {"type": ["object", "null"]},
                },
            },
        },
    },
}


def _choices(values: Any) -> validate.OneOf:
    return validate.OneOf(sorted(values))


class _ExportOptionsQuery(CamelSchema):
    """The export options both export routes take, camelCase on the wire (``server.services.exports``)."""

    labels = fields.String(validate=_choices(LABEL_MODES), metadata={"description": "Choice values or labels"})
    lang = fields.String(metadata={"description": "The language of labels (a language of the form)"})
    headers = fields.String(validate=_choices(HEADER_MODES), metadata={"description": "Field names or labels"})
    group_paths = fields.Boolean(metadata={"description": "Prefix headers with their groups (default true)"})
    separator = fields.String(metadata={"description": "Between group names in headers (default `-`)"})
    split_select_multiple = fields.Boolean(
        data_key="splitSelectMultiples", metadata={"description": "One 0/1 column per choice (default false)"}
    )
    split_geopoint = fields.Boolean(metadata={"description": "Latitude, longitude, altitude, accuracy columns"})
    since = fields.String(metadata={"description": "Received on or after (ISO 8601 date or dateTime; UTC)"})
    until = fields.String(metadata={"description": "Received before (ISO 8601 date or dateTime; UTC)"})
    review_state = fields.List(fields.String(validate=_choices(EXPORT_REVIEW_STATES)))
    version = fields.List(fields.String(), metadata={"description": "Only these form versions"})
    submitter = fields.List(fields.String(), metadata={"description": "Only these submitters"})
    include_edits = fields.Boolean()
    include_deleted = fields.Boolean()
    include_rejected = fields.Boolean()
    bom = fields.Boolean(metadata={"description": "A UTF-8 byte-order mark (for Excel)"})
    clean = fields.Boolean(metadata={"description": "Apply the cleaning steps (default true)"})
    preset = fields.String(metadata={"description": "A saved preset; the other options override its values"})


class ExportQuery(_ExportOptionsQuery):
    """The options of an export (docs/EXPORTS.md); a snake_case name is refused, naming its camelCase."""

    geojson_field = fields.String(metadata={"description": "The geopoint of the GeoJSON (default: the first)"})


def _query() -> dict[str, list[str]]:
    return request.args.to_dict(flat=False)


@bp.get(f"{_FORM}/export.<any(zip, xlsx, geojson):fmt>")
@documented(
    {200: {svc.MEDIA_TYPES["zip"]: None, svc.MEDIA_TYPES["xlsx"]: None, svc.MEDIA_TYPES["geojson"]: GEOJSON}},
    query=ExportQuery,
    errors=(409,),
    notes="`field.<path>=<value>` keeps the submissions whose root-level field has that value.",
)
def export(project_id: int, xml_form_id: str, fmt: str) -> Response:
    """Stream the form's export (options in the query string; 400 naming a bad one before any byte)."""
    principal = require("export", project_id)
    return export_response(svc.open_export(db_session(), project_id, xml_form_id, _query(), fmt, principal.actor))


class CentralExportQuery(_ExportOptionsQuery):
    """ODK Central's parameters of ``submissions.csv.zip``, and Fieldsync's export options in camelCase."""

    attachments = fields.Boolean(metadata={"description": "The submissions' files under media/ (default true)"})
    deleted_fields = fields.Boolean(
        metadata={"description": "Also the fields a later version removed (default false: the current version's)"}
    )
    filter_ = fields.String(
        data_key="$filter", metadata={"description": "OData $filter on __id and __system members (Central's)"}
    )


# Central's own choices of submissions.csv.zip, which are no export options.
_CENTRAL_CHOICES = ("attachments", "deletedFields", "$filter")
_CENTRAL_NAMES = frozenset(f.data_key for f in CentralExportQuery().fields.values())
_FIELD_OPTION = "field."


def _flag(query: dict[str, list[str]], name: str, default: bool) -> bool:
    values = query.get(name)
    if not values:
        return default
    text = values[-1].strip().lower()
    if text not in ("true", "false"):
        raise ApiError(400, "export_option_invalid", f"Bad export parameter {name!r}: true or false", {"field": name})
    return text == "true"


@bp.get(f"{_FORM}/submissions.csv.zip")
@documented(
    {200: {svc.MEDIA_TYPES["zip"]: None}},
    query=CentralExportQuery,
    errors=(409,),
    notes="As ODK Central's export; `field.<path>=<value>` keeps the submissions whose root-level field has it.",
)
def submissions_csv_zip(project_id: int, xml_form_id: str) -> Response:
    """Stream the CSV zip with ODK Central's parameters (files under media/ unless ``attachments=false``)."""
    principal = require("export", project_id)
    sent = _query()
    unknown = [k for k in sent if not k.startswith(_FIELD_OPTION) and k not in _CENTRAL_NAMES]
    if unknown:
        raise svc.unknown_option(unknown[0])
    query = {k: v for k, v in sent.items() if k not in _CENTRAL_CHOICES}
    filters = sent.get("$filter")
    stream = svc.open_submissions_csv_zip(
        db_session(),
        project_id,
        xml_form_id,
        query,
        principal.actor,
        attachments=_flag(sent, "attachments", True),
        deleted_fields=_flag(sent, "deletedFields", False),
        odata_filter=filters[-1] if filters else None,
    )
    return export_response(stream)


def export_response(stream: svc.ExportStream) -> Response:
    """A started export as a streamed download (bytes flow as rows are read: no proxy or browser timeout)."""
    response = Response(stream_with_context(stream.chunks), mimetype=stream.media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{stream.file_name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(f"{_FORM}/export-presets")
@documented({200: ListOf(PresetOut)})
def list_presets(project_id: int, xml_form_id: str) -> Response:
    """List the form's named export presets (``options`` in the export's camelCase parameter names)."""
    require("export", project_id)
    return json_list(svc.list_presets(db_session(), project_id, xml_form_id), PresetOut())


@bp.post(f"{_FORM}/export-presets")
@documented({201: PresetOut}, body=PresetIn, errors=(409,))
def create_preset(project_id: int, xml_form_id: str) -> tuple[dict[str, Any], int]:
    """Save named export options for the form (409 when the name is taken; managers and admins)."""
    principal = require("export.preset", project_id)
    body = load_json(PresetIn())
    preset = svc.create_preset(db_session(), project_id, xml_form_id, body["name"], body["options"], principal.actor)
    out: dict[str, Any] = PresetOut().dump(preset)
    return out, 201


@bp.delete(f"{_FORM}/export-presets/<name>")
@documented({200: SuccessOut})
def delete_preset(project_id: int, xml_form_id: str, name: str) -> dict[str, Any]:
    """Delete a named export preset (managers and admins: presets are shared by the project's analysts)."""
    principal = require("export.preset", project_id)
    svc.delete_preset(db_session(), project_id, xml_form_id, name, principal.actor)
    return {"success": True}


def _export_dir() -> Path:
    return Path(current_app.config["EXPORT_DIR"])


@bp.get(f"{_FORM}/export-schedules")
@documented({200: ListOf(ScheduleWithRunsOut)})
def list_schedules(project_id: int, xml_form_id: str) -> Response:
    """List the form's scheduled exports with their newest runs."""
    require("export", project_id)
    items = svc.list_schedules(db_session(), project_id, xml_form_id)
    response = jsonify(
        [{**ScheduleOut().dump(i["schedule"]), "runs": RunOut(many=True).dump(i["runs"])} for i in items]
    )
    response.headers["X-Total-Count"] = str(len(items))
    return response


@bp.post(f"{_FORM}/export-schedules")
@documented({201: ScheduleOut}, body=ScheduleIn, errors=(409,))
def create_schedule(project_id: int, xml_form_id: str) -> tuple[dict[str, Any], int]:
    """Schedule an export of the form (cron, preset, folder under EXPORT_DIR, keep the last N files)."""
    principal = require("export.schedule", project_id)
    body = load_json(ScheduleIn())
    schedule = svc.create_schedule(db_session(), project_id, xml_form_id, body, _export_dir(), principal.actor)
    out: dict[str, Any] = ScheduleOut().dump(schedule)
    return out, 201


@bp.delete(f"{_FORM}/export-schedules/<int:schedule_id>")
@documented({200: SuccessOut})
def delete_schedule(project_id: int, xml_form_id: str, schedule_id: int) -> dict[str, Any]:
    """Delete a scheduled export (files already written stay)."""
    principal = require("export.schedule", project_id)
    svc.delete_schedule(db_session(), project_id, xml_form_id, schedule_id, principal.actor)
    return {"success": True}


@bp.get(f"{_FORM}/export-schedules/<int:schedule_id>/files/<file_name>")
@documented({200: {svc.MEDIA_TYPES["zip"]: None, svc.MEDIA_TYPES["xlsx"]: None, svc.MEDIA_TYPES["geojson"]: None}})
def get_schedule_file(project_id: int, xml_form_id: str, schedule_id: int, file_name: str) -> Response:
    """Download a file a scheduled run wrote (one the schedule still keeps)."""
    require("export", project_id)
    return schedule_file_response(
        svc.schedule_file(db_session(), project_id, xml_form_id, schedule_id, file_name, _export_dir())
    )


def schedule_file_response(path: Path) -> Response:
    """A kept scheduled export file as a download."""
    media_type = svc.MEDIA_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
    return send_file(path, mimetype=media_type, as_attachment=True, download_name=path.name, max_age=0)
