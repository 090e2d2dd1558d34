"""JSON API for forms: upload (draft or published), list, detail, schema, original upload, publish, state, attachments.

Roles (encoded in tests/server/role_matrix_forms.py): managers and admins write (``form.write``);
everyone in the project reads (``form.read``: analysts, coaches and devices too, because our own
phone clients need the form list and the JSON schema, and nothing in a form is hidden from the
people who fill it). Collect itself uses the OpenRosa routes (server/openrosa/formlist.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

from flask import Blueprint, Response, request, url_for
from marshmallow import Schema, fields, validate

from server.api import downloads
from server.api.contract import Header, ListOf, documented
from server.api.conventions import CamelSchema, StrictCamelSchema, json_list
from server.api.schemas import SuccessOut
from server.api.wire import load_json, load_query
from server.auth import require
from server.errors import bad_request
from server.services import form_jobs
from server.services import forms as svc
from server.store import db_session

bp = Blueprint("forms", __name__, url_prefix="/v1")

_CHUNK = 256 * 1024


FORM_STATES = ("open", "closing", "closed")
_FILE_PART = {"type": "string", "contentMediaType": "application/octet-stream"}
# Central's clients send the file as the body; a browser or curl -F sends a multipart part ``file``.
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RAW_FORM_TYPES = {"application/xml": ".xml", "text/xml": ".xml", XLSX_TYPE: ".xlsx", "application/vnd.ms-excel": ".xls"}
FORM_UPLOAD = {
    **{media: _FILE_PART for media in RAW_FORM_TYPES},
    "multipart/form-data": {
        "type": "object",
        "properties": {"file": {**_FILE_PART, "description": "The XLSForm (.xlsx, .xls) or XForm (.xml)"}},
        "required": ["file"],
    },
}
ATTACHMENT_UPLOAD = {
    "application/octet-stream": _FILE_PART,
    "multipart/form-data": {"type": "object", "properties": {"file": _FILE_PART}, "required": ["file"]},
}
FORM_ID_FALLBACK = Header(
    "X-XlsForm-FormId-Fallback",
    "The form id of a workbook whose settings sheet has no form_id (as ODK Central; percent-encoded)",
    {"type": "string"},
)


class DraftQuery(StrictCamelSchema):
    # pyxform's warnings never stop an upload here: they are kept on the version and shown; the flag
    # is accepted so that Central's clients (which send it) work unchanged.
    ignore_warnings = fields.Boolean(load_default=True)
    # The id of a workbook whose settings sheet has no form_id (else the X-XlsForm-FormId-Fallback
    # header, percent-encoded as ODK Central's web page sends it, else the file name).
    form_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255))


class UploadQuery(DraftQuery):
    publish = fields.Boolean(load_default=False)


class VersionQuery(StrictCamelSchema):
    version = fields.String(load_default=None)


class StatePatch(StrictCamelSchema):
    state = fields.String(
        required=True,
        validate=validate.OneOf(FORM_STATES),
        metadata={"description": "open: accepts submissions; closing: no new devices get it; closed: refuses them"},
    )


class FormVersionOut(CamelSchema):
    id = fields.Integer(attribute="form_db_id", metadata={"description": "The form's database id"})
    xml_form_id = fields.String(metadata={"description": "The form id every URL of the form uses"})
    version = fields.String()
    status = fields.String()
    title = fields.String()
    created = fields.Boolean()
    conversion_seconds = fields.Float(allow_none=True)
    warnings = fields.List(fields.String())
    missing_attachments = fields.List(fields.String())
    # True when the settings sheet had no version and the server chose one (yyyymmddnn).
    version_generated = fields.Boolean()


class ConversionErrorOut(CamelSchema):
    status = fields.Integer()  # the status the upload would have answered
    code = fields.Raw()
    message = fields.String()
    details = fields.Dict()


class ConversionJobOut(CamelSchema):
    id = fields.Integer()
    url = fields.Function(lambda job: url_for("forms.get_conversion", project_id=job.project_id, job_id=job.id))
    state = fields.String(metadata={"enum": ["queued", "running", "done", "failed"]})
    filename = fields.String()
    publish = fields.Boolean()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    elapsed_seconds = fields.Float()
    # When done: the form version, as the synchronous upload answers it.
    result = fields.Nested(FormVersionOut, allow_none=True)
    # When failed: the error the synchronous upload would have answered (pyxform's details kept).
    error = fields.Nested(ConversionErrorOut, allow_none=True)


class AttachmentOut(CamelSchema):
    """A file a form version expects, in Central's fields (``type``, ``exists``) and Fieldsync's."""

    name = fields.String()
    type = fields.Function(lambda a: "file" if a.kind == "entity_list" else a.kind)
    exists = fields.Function(lambda a: a.present)
    blob_exists = fields.Function(lambda a: a.present)
    dataset_exists = fields.Function(lambda a: a.kind == "entity_list")
    updated_at = fields.Function(lambda a: a.uploaded_at.isoformat() if a.uploaded_at else None)
    kind = fields.String()
    present = fields.Boolean()
    md5 = fields.String(allow_none=True)
    size = fields.Integer(allow_none=True)
    uploaded_at = fields.DateTime(allow_none=True)


class VersionOut(CamelSchema):
    version = fields.String()
    status = fields.String()
    title = fields.String()
    hash = fields.Function(lambda v: f"md5:{v.xform_md5}")
    source_filename = fields.String()
    source_kind = fields.String()
    warnings = fields.List(fields.String())
    conversion_seconds = fields.Float(allow_none=True)
    created_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)
    created_by = fields.String()


class FormOut(CamelSchema):
    """A form as ODK Central describes it, with Fieldsync's draft and current versions."""

    project_id = fields.Integer()
    xml_form_id = fields.String()
    name = fields.Function(lambda f: f.title)
    version = fields.Function(lambda f: f.current_version if f.current_version is not None else f.draft_version or "")
    hash = fields.String(allow_none=True)
    state = fields.String(validate=validate.OneOf(FORM_STATES))
    enketo_id = fields.Constant(None, allow_none=True)
    key_id = fields.Constant(None, allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)
    id = fields.Integer()
    title = fields.String()
    current_version = fields.String(allow_none=True)
    draft_version = fields.String(allow_none=True)


class FormDetailOut(FormOut):
    versions = fields.List(fields.Nested(VersionOut))
    attachments = fields.List(fields.Nested(AttachmentOut))
    missing_attachments = fields.List(fields.String())
    warnings = fields.List(fields.String())


class UploadOut(FormOut):
    """What an upload did (Fieldsync's fields) beside the form as Central describes it."""

    success = fields.Boolean(metadata={"description": "A draft upload: always true (Central's answer)"})

    created = fields.Boolean()
    status = fields.String()
    conversion_seconds = fields.Float(allow_none=True)
    missing_attachments = fields.List(fields.String())
    warnings = fields.List(fields.String())
    # True when the settings sheet had no version and the server chose one (yyyymmddnn).
    version_generated = fields.Boolean()


class FormSchemaOut(Schema):
    """The JSON ``FormSchema`` of a version (forms/schema_json.py): a document format of its own, kept as it is."""

    schema_json_version = fields.Integer()
    form_id = fields.String()
    version = fields.String()
    title = fields.String()
    root_name = fields.String()
    languages = fields.List(fields.String())
    default_language = fields.String(allow_none=True)
    encrypted = fields.Boolean()
    instance_name = fields.String(allow_none=True)
    language_names = fields.Dict(keys=fields.String(), values=fields.String())
    fields_ = fields.List(fields.Dict(), data_key="fields")
    choice_lists = fields.Dict(keys=fields.String(), values=fields.Dict())
    media = fields.List(fields.Dict())
    entities = fields.List(fields.Dict())


def _uploaded_file(fallback: str | None) -> tuple[bytes, str]:
    limit = svc.upload_settings().max_form_bytes
    suffix = RAW_FORM_TYPES.get(request.mimetype)
    if suffix is not None:
        # Read one byte past the limit so the service can answer 413 without holding a huge body.
        return request.stream.read(limit + 1), f"{fallback or 'form'}{suffix}"
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    if upload is None:
        raise bad_request(
            "missing_file",
            "Send the form as the body (Content-Type application/xml, or the XLSX or XLS type) "
            "or as a multipart/form-data part named 'file'",
        )
    return upload.stream.read(limit + 1), upload.filename or "form"


def _upload(project_id: int, query: dict[str, Any], publish: bool, form_id: str | None) -> Any:
    principal = require("form.write", project_id)
    header = request.headers.get("X-XlsForm-FormId-Fallback")
    data, filename = _uploaded_file(form_id or query["form_id"])
    return form_jobs.upload_form(
        db_session(),
        project_id,
        data,
        filename,
        publish=publish,
        actor=principal.actor,
        form_id=form_id or query["form_id"],
        form_id_header=header,
    )


def _upload_answer(project_id: int, outcome: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
    if isinstance(outcome, form_jobs.ConversionJobInfo):
        body: dict[str, Any] = ConversionJobOut().dump(outcome)
        return body, 202, {"Location": body["url"], "Retry-After": "2"}
    detail = svc.describe_form(db_session(), project_id, outcome.xml_form_id)
    answer = {**asdict(detail), **asdict(outcome)}
    return UploadOut().dump(SimpleNamespace(**answer)), 201 if outcome.created else 200, {}


@bp.post("/projects/<int:project_id>/forms")
@documented(
    {200: UploadOut, 201: UploadOut, 202: ConversionJobOut},
    query=UploadQuery,
    raw_body=FORM_UPLOAD,
    headers=(FORM_ID_FALLBACK,),
    errors=(409, 422),
    notes=(
        "201 for a new version, 200 when the same content was uploaded before, 202 with a conversion job "
        "to poll (its URL in Location) when the conversion takes longer than FORM_CONVERT_WAIT seconds."
    ),
)
def upload_form(project_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Upload an XLSForm (.xlsx/.xls) or XForm as a draft, or published with ``?publish=true``.

    Answers 201 (new version) or 200 (identical re-upload) once converted, or 202 with a conversion
    job to poll when the conversion takes longer than ``FORM_CONVERT_WAIT``.
    """
    query = load_query(UploadQuery())
    return _upload_answer(project_id, _upload(project_id, query, query["publish"], None))


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/draft")
@documented(
    {200: UploadOut, 201: UploadOut, 202: ConversionJobOut},
    query=DraftQuery,
    raw_body=FORM_UPLOAD,
    headers=(FORM_ID_FALLBACK,),
    errors=(409, 422),
)
def create_draft(project_id: int, xml_form_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Upload a new draft of a form (XForm or XLSForm body, as for a new form); ``success`` is true as in Central.

    With no body, the draft is a copy of the published version (Central's way to change only its files).
    """
    query = load_query(DraftQuery())
    if not request.content_length and "Transfer-Encoding" not in request.headers:
        principal = require("form.write", project_id)
        copied = svc.draft_from_published(db_session(), project_id, xml_form_id, actor=principal.actor)
        body, status, headers = _upload_answer(project_id, copied)
        return {**body, "success": True}, status, headers
    body, status, headers = _upload_answer(project_id, _upload(project_id, query, False, xml_form_id))
    return {**body, "success": True} if status != 202 else body, status, headers


@bp.get("/projects/<int:project_id>/form-conversions/<int:job_id>")
@documented({200: ConversionJobOut})
def get_conversion(project_id: int, job_id: int) -> dict[str, Any]:
    """Poll an upload's conversion job: queued, running, done (with the version) or failed (with the error)."""
    require("form.write", project_id)
    result: dict[str, Any] = ConversionJobOut().dump(form_jobs.conversion_job(db_session(), project_id, job_id))
    return result


@bp.get("/projects/<int:project_id>/forms")
@documented({200: ListOf(FormOut)})
def list_forms(project_id: int) -> Response:
    """List a project's forms with their published and draft versions."""
    require("form.read", project_id)
    return json_list(svc.list_form_details(db_session(), project_id), FormOut())


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>")
@documented({200: FormDetailOut})
def get_form(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Describe a form: metadata, every version, warnings, attachments and the missing ones."""
    require("form.read", project_id)
    result: dict[str, Any] = FormDetailOut().dump(svc.describe_form(db_session(), project_id, xml_form_id))
    return result


@bp.patch("/projects/<int:project_id>/forms/<xml_form_id>")
@documented({200: FormDetailOut}, body=StatePatch)
def patch_form(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Change a form's state (``open``, ``closing``, ``closed``)."""
    principal = require("form.write", project_id)
    body = load_json(StatePatch())
    detail = svc.set_form_state(db_session(), project_id, xml_form_id, body["state"], actor=principal.actor)
    result: dict[str, Any] = FormDetailOut().dump(detail)
    return result


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/draft/publish")
@documented({200: SuccessOut}, query=VersionQuery, errors=(409,))
def publish_form(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Publish the form's draft; ``?version=`` publishes it under that version (its XForm rewritten, as Central)."""
    principal = require("form.write", project_id)
    query = load_query(VersionQuery())
    svc.publish_draft(db_session(), project_id, xml_form_id, actor=principal.actor, expected_version=query["version"])
    return {"success": True}


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions")
@documented({200: ListOf(VersionOut)})
def list_versions(project_id: int, xml_form_id: str) -> Response:
    """List every version of a form, drafts included (``status``), oldest first."""
    require("form.read", project_id)
    return json_list(svc.describe_form(db_session(), project_id, xml_form_id).versions, VersionOut())


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/schema")
@documented({200: FormSchemaOut}, query=VersionQuery)
def get_schema(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Return the JSON ``FormSchema`` of the published version (or ``?version=``; the draft if unpublished)."""
    require("form.read", project_id)
    query = load_query(VersionQuery())
    return svc.form_schema(db_session(), project_id, xml_form_id, query["version"])


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/xlsx")
@documented({200: tuple(dict.fromkeys(downloads.SOURCE_TYPES.values()))})
def get_source(project_id: int, xml_form_id: str, version: str) -> Response:
    """Return the file a version was uploaded as (XLSForm, or XForm when one was uploaded)."""
    require("form.read", project_id)
    return downloads.version_source(*svc.version_source(db_session(), project_id, xml_form_id, version))


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/attachments")
@documented({200: ListOf(AttachmentOut)})
def list_attachments(project_id: int, xml_form_id: str) -> Response:
    """List the files the draft (else the published version) expects; ``exists`` says which are present."""
    require("form.read", project_id)
    _, attachments = svc.list_form_attachments(db_session(), project_id, xml_form_id)
    return json_list(attachments, AttachmentOut())


def _request_chunks() -> Iterator[bytes]:
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    if request.mimetype == "multipart/form-data" and upload is None:
        raise bad_request("missing_file", "Send the file as the raw body or a multipart part named 'file'")
    stream = upload.stream if upload is not None else request.stream
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        yield chunk


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/draft/attachments/<name>")
@documented({200: AttachmentOut}, raw_body=ATTACHMENT_UPLOAD, errors=(409,))
def upload_attachment(project_id: int, xml_form_id: str, name: str) -> dict[str, Any]:
    """Upload a media or data file the draft expects (raw body, or multipart part ``file``); ``success`` is true."""
    principal = require("form.write", project_id)
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    sent_type = upload.mimetype if upload is not None else request.mimetype
    content_type = sent_type if sent_type and sent_type != "application/octet-stream" else None
    info = svc.upload_attachment(
        db_session(), project_id, xml_form_id, name, _request_chunks(), actor=principal.actor, content_type=content_type
    )
    result: dict[str, Any] = {**AttachmentOut().dump(SimpleNamespace(**asdict(info))), "success": True}
    return result
