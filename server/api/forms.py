"""JSON API for forms: upload (draft or published), list, detail, schema, original upload, publish, state, attachments.

Roles (encoded in tests/server/role_matrix_forms.py): managers and admins write (``form.write``);
everyone in the project reads (``form.read``: analysts, coaches and devices too, because our own
phone clients need the form list and the JSON schema, and nothing in a form is hidden from the
people who fill it). Collect itself uses the OpenRosa routes (server/openrosa/formlist.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, request, url_for
from marshmallow import RAISE, Schema, fields, validate

from server.api import downloads
from server.api.contract import Header, documented
from server.api.wire import load_json, load_query
from server.auth import require
from server.errors import bad_request
from server.services import form_jobs
from server.services import forms as svc
from server.store import db_session

bp = Blueprint("forms", __name__, url_prefix="/v1")

_CHUNK = 256 * 1024


class _Strict(Schema):
    class Meta:
        unknown = RAISE


FORM_STATES = ("open", "closing", "closed")
_FILE_PART = {"type": "string", "contentMediaType": "application/octet-stream"}
FORM_UPLOAD = {
    "multipart/form-data": {
        "type": "object",
        "properties": {"file": {**_FILE_PART, "description": "The XLSForm (.xlsx, .xls) or XForm (.xml)"}},
        "required": ["file"],
    }
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


class UploadQuery(_Strict):
    publish = fields.Boolean(load_default=False)
    # The id of a workbook whose settings sheet has no form_id (else the X-XlsForm-FormId-Fallback
    # header, percent-encoded as ODK Central's web page sends it, else the file name).
    form_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255))


class VersionQuery(_Strict):
    version = fields.String(load_default=None)


class StatePatch(_Strict):
    state = fields.String(
        required=True,
        validate=validate.OneOf(FORM_STATES),
        metadata={"description": "open: accepts submissions; closing: no new devices get it; closed: refuses them"},
    )


class FormVersionOut(Schema):
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


class ConversionErrorOut(Schema):
    status = fields.Integer()  # the status the upload would have answered
    code = fields.String()
    message = fields.String()
    details = fields.Dict()


class ConversionJobOut(Schema):
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


class AttachmentOut(Schema):
    name = fields.String()
    kind = fields.String()
    present = fields.Boolean()
    md5 = fields.String(allow_none=True)
    size = fields.Integer(allow_none=True)
    uploaded_at = fields.DateTime(allow_none=True)


class VersionOut(Schema):
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


class FormOut(Schema):
    id = fields.Integer()
    xml_form_id = fields.String()
    title = fields.String()
    state = fields.String(validate=validate.OneOf(FORM_STATES))
    current_version = fields.String(allow_none=True)
    draft_version = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class FormDetailOut(FormOut):
    versions = fields.List(fields.Nested(VersionOut))
    attachments = fields.List(fields.Nested(AttachmentOut))
    missing_attachments = fields.List(fields.String())
    warnings = fields.List(fields.String())


class FormListOut(Schema):
    forms = fields.List(fields.Nested(FormOut))


class AttachmentListOut(Schema):
    version = fields.String(allow_none=True)
    attachments = fields.List(fields.Nested(AttachmentOut))
    missing = fields.List(fields.String())


class FormSchemaOut(Schema):
    """The JSON ``FormSchema`` of a version (forms/schema_json.py)."""

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


def _uploaded_file() -> tuple[bytes, str]:
    upload = request.files.get("file")
    if upload is None:
        raise bad_request("missing_file", "Send the form as a multipart/form-data part named 'file'")
    limit = svc.upload_settings().max_form_bytes
    # Read one byte past the limit so the service can answer 413 without holding a huge body.
    data = upload.stream.read(limit + 1)
    return data, upload.filename or "form"


@bp.post("/projects/<int:project_id>/forms")
@documented(
    {200: FormVersionOut, 201: FormVersionOut, 202: ConversionJobOut},
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
    principal = require("form.write", project_id)
    query = load_query(UploadQuery())
    data, filename = _uploaded_file()
    outcome = form_jobs.upload_form(
        db_session(),
        project_id,
        data,
        filename,
        publish=query["publish"],
        actor=principal.actor,
        form_id=query["form_id"],
        form_id_header=request.headers.get("X-XlsForm-FormId-Fallback"),
    )
    if isinstance(outcome, form_jobs.ConversionJobInfo):
        body: dict[str, Any] = ConversionJobOut().dump(outcome)
        return body, 202, {"Location": body["url"], "Retry-After": "2"}
    return FormVersionOut().dump(outcome), 201 if outcome.created else 200, {}


@bp.get("/projects/<int:project_id>/form-conversions/<int:job_id>")
@documented({200: ConversionJobOut})
def get_conversion(project_id: int, job_id: int) -> dict[str, Any]:
    """Poll an upload's conversion job: queued, running, done (with the version) or failed (with the error)."""
    require("form.write", project_id)
    result: dict[str, Any] = ConversionJobOut().dump(form_jobs.conversion_job(db_session(), project_id, job_id))
    return result


@bp.get("/projects/<int:project_id>/forms")
@documented({200: FormListOut})
def list_forms(project_id: int) -> dict[str, Any]:
    """List a project's forms with their published and draft versions."""
    require("form.read", project_id)
    return {"forms": FormOut(many=True).dump(svc.list_form_details(db_session(), project_id))}


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


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/publish")
@documented({200: FormVersionOut}, errors=(409,))
def publish_form(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Publish the form's draft."""
    principal = require("form.write", project_id)
    result: dict[str, Any] = FormVersionOut().dump(
        svc.publish_draft(db_session(), project_id, xml_form_id, actor=principal.actor)
    )
    return result


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
@documented({200: AttachmentListOut})
def list_attachments(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """List the files the draft (else the published version) expects, and which are present."""
    require("form.read", project_id)
    version, attachments = svc.list_form_attachments(db_session(), project_id, xml_form_id)
    return {
        "version": version,
        "attachments": AttachmentOut(many=True).dump(attachments),
        "missing": [a.name for a in attachments if not a.present],
    }


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


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/attachments/<name>")
@documented({201: AttachmentOut}, raw_body=ATTACHMENT_UPLOAD, errors=(409,))
def upload_attachment(project_id: int, xml_form_id: str, name: str) -> tuple[dict[str, Any], int]:
    """Upload a media or data file the form expects (raw body, or multipart part ``file``)."""
    principal = require("form.write", project_id)
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    sent_type = upload.mimetype if upload is not None else request.mimetype
    content_type = sent_type if sent_type and sent_type != "application/octet-stream" else None
    info = svc.upload_attachment(
        db_session(), project_id, xml_form_id, name, _request_chunks(), actor=principal.actor, content_type=content_type
    )
    return AttachmentOut().dump(asdict(info)), 201
