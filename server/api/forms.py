"""JSON API for forms: upload (draft or published), list, detail, schema, original upload, publish, state, attachments.

Roles (encoded in tests/server/role_matrix_forms.py): managers and admins write (``form.write``);
everyone in the project reads (``form.read``: analysts, coaches and devices too, because our own
phone clients need the form list and the JSON schema, and nothing in a form is hidden from the
people who fill it). Collect itself uses the OpenRosa routes (server/openrosa/formlist.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, request
from marshmallow import RAISE, Schema, fields, validate

from server.api import downloads
from server.api.wire import load_json, load_query
from server.auth import require
from server.errors import bad_request
from server.services import forms as svc
from server.store import db_session

bp = Blueprint("forms", __name__, url_prefix="/v1")

_CHUNK = 256 * 1024


class _Strict(Schema):
    class Meta:
        unknown = RAISE


FORM_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$"


class UploadQuery(_Strict):
    publish = fields.Boolean(load_default=False)
    # The id of a workbook whose settings sheet has no form_id (ODK Central: X-XlsForm-FormId-Fallback).
    form_id = fields.String(load_default=None, validate=validate.Regexp(FORM_ID_PATTERN))


class VersionQuery(_Strict):
    version = fields.String(load_default=None)


class StatePatch(_Strict):
    state = fields.String(required=True, validate=validate.OneOf(["open", "closing", "closed"]))


class FormVersionOut(Schema):
    id = fields.Integer(attribute="form_db_id")
    xml_form_id = fields.String()
    version = fields.String()
    status = fields.String()
    title = fields.String()
    created = fields.Boolean()
    conversion_seconds = fields.Float(allow_none=True)
    warnings = fields.List(fields.String())
    missing_attachments = fields.List(fields.String())


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
    state = fields.String()
    current_version = fields.String(allow_none=True)
    draft_version = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class FormDetailOut(FormOut):
    versions = fields.List(fields.Nested(VersionOut))
    attachments = fields.List(fields.Nested(AttachmentOut))
    missing_attachments = fields.List(fields.String())
    warnings = fields.List(fields.String())


def _uploaded_file() -> tuple[bytes, str]:
    upload = request.files.get("file")
    if upload is None:
        raise bad_request("missing_file", "Send the form as a multipart/form-data part named 'file'")
    limit = svc.upload_settings().max_form_bytes
    # Read one byte past the limit so the service can answer 413 without holding a huge body.
    data = upload.stream.read(limit + 1)
    return data, upload.filename or "form"


@bp.post("/projects/<int:project_id>/forms")
def upload_form(project_id: int) -> tuple[dict[str, Any], int]:
    """Upload an XLSForm (.xlsx/.xls) or XForm as a draft, or published with ``?publish=true``."""
    principal = require("form.write", project_id)
    query = load_query(UploadQuery())
    data, filename = _uploaded_file()
    fallback = query["form_id"] or request.headers.get("X-XlsForm-FormId-Fallback") or None
    if fallback is not None and not re.match(FORM_ID_PATTERN, fallback):
        raise bad_request("invalid_form_id", "The fallback form id must be an XML name", form_id=fallback)
    result = svc.create_form_version(
        db_session(),
        project_id,
        data,
        filename,
        publish=query["publish"],
        actor=principal.actor,
        default_form_id=fallback,
    )
    return FormVersionOut().dump(result), 201 if result.created else 200


@bp.get("/projects/<int:project_id>/forms")
def list_forms(project_id: int) -> dict[str, Any]:
    """List a project's forms with their published and draft versions."""
    require("form.read", project_id)
    return {"forms": FormOut(many=True).dump(svc.list_form_details(db_session(), project_id))}


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>")
def get_form(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Describe a form: metadata, every version, warnings, attachments and the missing ones."""
    require("form.read", project_id)
    result: dict[str, Any] = FormDetailOut().dump(svc.describe_form(db_session(), project_id, xml_form_id))
    return result


@bp.patch("/projects/<int:project_id>/forms/<xml_form_id>")
def patch_form(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Change a form's state (``open``, ``closing``, ``closed``)."""
    principal = require("form.write", project_id)
    body = load_json(StatePatch())
    detail = svc.set_form_state(db_session(), project_id, xml_form_id, body["state"], actor=principal.actor)
    result: dict[str, Any] = FormDetailOut().dump(detail)
    return result


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/publish")
def publish_form(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Publish the form's draft."""
    principal = require("form.write", project_id)
    result: dict[str, Any] = FormVersionOut().dump(
        svc.publish_draft(db_session(), project_id, xml_form_id, actor=principal.actor)
    )
    return result


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/schema")
def get_schema(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Return the JSON ``FormSchema`` of the published version (or ``?version=``; the draft if unpublished)."""
    require("form.read", project_id)
    query = load_query(VersionQuery())
    return svc.form_schema(db_session(), project_id, xml_form_id, query["version"])


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/xlsx")
def get_source(project_id: int, xml_form_id: str, version: str) -> Response:
    """Return the file a version was uploaded as (XLSForm, or XForm when one was uploaded)."""
    require("form.read", project_id)
    return downloads.version_source(*svc.version_source(db_session(), project_id, xml_form_id, version))


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/attachments")
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
