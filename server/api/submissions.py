"""JSON API for submissions: list a form's submissions (the submissions table: filters, sorts, columns,
cursor pages), save the caller's columns, read one, download a file, review, soft-delete and restore.

Deleted submissions are hidden: the list shows them only with ``?deleted=true`` (then only them, the
trash, as ODK Central does), and reading one is ``404`` unless ``?deleted=true`` is given.

Handlers are thin: marshmallow in, one service call, marshmallow out. The page cursor is opaque
(``server.services.submission_table`` says what it holds); ``next`` is the URL of the next page with
the same parameters. Without the new parameters the list answers as before (received time ascending).
"""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request, stream_with_context, url_for
from marshmallow import RAISE, Schema, fields, pre_load, validate

from server.api import downloads
from server.api.contract import documented
from server.api.schemas import DatabaseId
from server.api.wire import load_json, load_query
from server.auth import require
from server.db.models.submissions import REVIEW_STATES, SubmissionVersion
from server.errors import ApiError
from server.services import submission_table as table
from server.services import submissions as svc
from server.store import db_session

bp = Blueprint("submissions", __name__, url_prefix="/v1")

FORM_SUBMISSIONS = "/projects/<int:project_id>/forms/<xml_form_id>/submissions"


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class CommaList(fields.List):
    """A query-string list written ``a,b,c`` (the query string holds one value per name)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item]
        return super()._deserialize(value, attr, data, **kwargs)


FIELD_FILTER_PREFIX = "filter."


class ListQuery(_Strict):
    """The table's parameters; ``filter.<question path>=a,b`` keeps rows whose select answer is a or b."""

    cursor = fields.String(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    since = fields.DateTime(load_default=None)
    until = fields.DateTime(load_default=None)
    review_state = CommaList(fields.String(validate=validate.OneOf(REVIEW_STATES)), load_default=())
    submitter = DatabaseId(load_default=None)
    device = DatabaseId(load_default=None)  # the device token's id
    device_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255))  # as Collect sent it
    form_version = CommaList(fields.String(validate=validate.Length(min=1, max=255)), load_default=())
    filters = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=500)),
        values=CommaList(fields.String(validate=validate.Length(min=1, max=500)), validate=validate.Length(min=1)),
        load_default=dict,
    )
    sort = fields.String(load_default="submitted_at", validate=validate.OneOf(table.SORT_KEYS))
    sort_field = fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    order = fields.String(load_default="asc", validate=validate.OneOf(table.DIRECTIONS))
    columns = CommaList(fields.String(validate=validate.Length(min=1, max=500)), load_default=None,
                        validate=validate.Length(max=table.MAX_COLUMNS))  # fmt: skip
    lang = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    display = fields.String(load_default=None, validate=validate.OneOf(table.DISPLAYS))
    count = fields.Boolean(load_default=False)
    deleted = fields.Boolean(load_default=False)

    @pre_load
    def _gather_field_filters(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        gathered = {k[len(FIELD_FILTER_PREFIX) :]: v for k, v in data.items() if k.startswith(FIELD_FILTER_PREFIX)}
        rest = {k: v for k, v in data.items() if not k.startswith(FIELD_FILTER_PREFIX)}
        return {**rest, "filters": gathered} if gathered else rest


class ColumnsIn(_Strict):
    paths = fields.List(fields.String(validate=validate.Length(min=1, max=500)), required=True,
                        validate=validate.Length(max=table.MAX_COLUMNS))  # fmt: skip
    language = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    display = fields.String(load_default="labels", validate=validate.OneOf(table.DISPLAYS))


class ColumnsOut(Schema):
    paths = fields.List(fields.String())
    language = fields.String(allow_none=True)
    display = fields.String()
    saved = fields.Boolean()


class DetailQuery(_Strict):
    deleted = fields.Boolean(load_default=False)


class ReviewIn(_Strict):
    review_state = fields.String(load_default=None, validate=validate.OneOf(REVIEW_STATES))
    comment = fields.String(load_default=None, validate=validate.Length(max=10_000))


class FileOut(Schema):
    name = fields.String()
    present = fields.Boolean()
    sha256 = fields.String(allow_none=True)
    url = fields.String(allow_none=True)


class VersionOut(Schema):
    instance_id = fields.String()
    deprecated_id = fields.String(allow_none=True)
    form_version = fields.String()
    instance_name = fields.String(allow_none=True)
    received_at = fields.DateTime()
    xml_sha256 = fields.String()
    encrypted = fields.Boolean()
    source = fields.String()
    device_id = fields.String(allow_none=True)
    submitter_id = fields.Integer(allow_none=True)
    device_token_id = fields.Integer(allow_none=True)
    files = fields.List(fields.Nested(FileOut))


class ReviewOut(Schema):
    from_state = fields.String(validate=validate.OneOf(REVIEW_STATES))
    to_state = fields.String(validate=validate.OneOf(REVIEW_STATES))
    comment = fields.String(allow_none=True)
    actor = fields.String()
    at = fields.DateTime()


class SubmissionOut(Schema):
    instance_id = fields.String()
    current_instance_id = fields.String()
    form_id = fields.String()
    form_version = fields.String()
    instance_name = fields.String(allow_none=True)
    review_state = fields.String(validate=validate.OneOf(REVIEW_STATES))
    edited = fields.Boolean()
    edits = fields.Integer()
    submitter_id = fields.Integer(allow_none=True)
    device_token_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    attachments_expected = fields.Integer()
    attachments_present = fields.Integer()
    encrypted = fields.Boolean()
    deleted_at = fields.DateTime(allow_none=True)
    deleted_by = fields.String(allow_none=True)
    data = fields.Dict()


class TableItemOut(SubmissionOut):
    device_id = fields.String(allow_none=True)
    cells = fields.List(fields.String(allow_none=True))


class TableColumnOut(Schema):
    path = fields.String()
    label = fields.String()


class TablePageOut(Schema):
    items = fields.List(fields.Nested(TableItemOut))
    columns = fields.List(fields.Nested(TableColumnOut))
    language = fields.String(allow_none=True)
    display = fields.String()
    next_cursor = fields.String(allow_none=True)
    next = fields.String(allow_none=True)
    count = fields.Integer(allow_none=True)
    count_capped = fields.Boolean()


class SubmissionDetailOut(SubmissionOut):
    files = fields.List(fields.Nested(FileOut))
    versions = fields.List(fields.Nested(VersionOut))
    reviews = fields.List(fields.Nested(ReviewOut))



def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _summary(row: Any, version: SubmissionVersion, xml_form_id: str) -> dict[str, Any]:
    return {
        "instance_id": row.instance_id,
        "current_instance_id": row.current_instance_id,
        "form_id": xml_form_id,
        "form_version": version.form_version,
        "instance_name": version.instance_name,
        "review_state": row.review_state,
        "edited": row.edits > 0,
        "edits": row.edits,
        "submitter_id": row.submitter_id,
        "device_token_id": row.device_token_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "attachments_expected": row.attachments_expected,
        "attachments_present": row.attachments_present,
        "encrypted": version.encrypted,
        "deleted_at": row.deleted_at,
        "deleted_by": row.deleted_by,
        "data": version.record,
    }


def _files(
    project_id: int, xml_form_id: str, version: SubmissionVersion, attachments: list[Any]
) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "present": a.blob_sha256 is not None,
            "sha256": a.blob_sha256,
            "url": url_for(
                "submissions.download_attachment",
                project_id=project_id,
                xml_form_id=xml_form_id,
                instance_id=version.instance_id,
                name=a.name,
            )
            if a.blob_sha256
            else None,
        }
        for a in attachments
    ]


def _detail(project_id: int, detail: svc.SubmissionDetail) -> dict[str, Any]:
    form = detail.xml_form_id
    body = _summary(detail.submission, detail.current, form)
    body["files"] = _files(project_id, form, detail.current, detail.attachments[detail.current.id])
    body["versions"] = [
        {
            "instance_id": v.instance_id,
            "deprecated_id": v.deprecated_id,
            "form_version": v.form_version,
            "instance_name": v.instance_name,
            "received_at": v.received_at,
            "xml_sha256": v.xml_sha256,
            "encrypted": v.encrypted,
            "source": v.source,
            "device_id": v.device_id,
            "submitter_id": v.submitter_id,
            "device_token_id": v.device_token_id,
            "files": _files(project_id, form, v, detail.attachments[v.id]),
        }
        for v in detail.versions
    ]
    body["reviews"] = [
        {"from_state": r.from_state, "to_state": r.to_state, "comment": r.comment, "actor": r.actor, "at": r.at}
        for r in detail.reviews
    ]
    dumped: dict[str, Any] = SubmissionDetailOut().dump(body)
    return dumped


def _table_query(query: dict[str, Any]) -> table.TableQuery:
    return table.TableQuery(
        cursor=query["cursor"],
        limit=query["limit"],
        since=_aware(query["since"]),
        until=_aware(query["until"]),
        review_states=tuple(query["review_state"]),
        submitter_id=query["submitter"],
        device_token_id=query["device"],
        device_id=query["device_id"],
        form_versions=tuple(query["form_version"]),
        field_values={path: tuple(values) for path, values in query["filters"].items()},
        sort=query["sort"],
        sort_field=query["sort_field"],
        order=query["order"],
        columns=tuple(query["columns"]) if query["columns"] is not None else None,
        language=query["lang"],
        display=query["display"],
        count=query["count"],
        deleted=query["deleted"],
    )


def _table_item(row: Any, cells: list[str | None], xml_form_id: str) -> dict[str, Any]:
    body = _summary(row, row, xml_form_id)
    body["device_id"] = row.device_id
    body["cells"] = cells
    return body


@bp.get(FORM_SUBMISSIONS)
@documented({200: TablePageOut}, query=ListQuery)
def list_submissions(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Page a form's submissions (current versions) as a table: filters, sort, columns, keyset cursor."""
    principal = require("submission.read", project_id)
    page = table.submissions_table(
        db_session(), project_id, xml_form_id, _table_query(load_query(ListQuery())), principal
    )
    following = None
    if page.next_cursor is not None:
        args = {**request.args.to_dict(), "cursor": page.next_cursor}
        endpoint = "submissions.list_submissions"
        following = url_for(endpoint, project_id=project_id, xml_form_id=xml_form_id, **args)  # type: ignore[arg-type]
    body = {
        "items": [_table_item(row, cells, xml_form_id) for row, cells in zip(page.rows, page.cells, strict=True)],
        "columns": page.columns,
        "language": page.language,
        "display": page.display,
        "next_cursor": page.next_cursor,
        "next": following,
        "count": page.count,
        "count_capped": page.count_capped,
    }
    dumped: dict[str, Any] = TablePageOut().dump(body)
    return dumped


@bp.get(FORM_SUBMISSIONS + "-columns")
@documented({200: ColumnsOut})
def get_submission_columns(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Read the caller's saved columns of a form's submissions table."""
    principal = require("submission.read", project_id)
    dumped: dict[str, Any] = ColumnsOut().dump(
        table.get_table_columns(db_session(), project_id, xml_form_id, principal)
    )
    return dumped


@bp.put(FORM_SUBMISSIONS + "-columns")
@documented({200: ColumnsOut}, body=ColumnsIn)
def put_submission_columns(project_id: int, xml_form_id: str) -> dict[str, Any]:
    """Save the caller's columns of a form's submissions table (question paths, language, labels or values)."""
    principal = require("submission.read", project_id)
    body = load_json(ColumnsIn())
    choice = table.set_table_columns(
        db_session(), project_id, xml_form_id, principal, body["paths"], body["language"], body["display"]
    )
    dumped: dict[str, Any] = ColumnsOut().dump(choice)
    return dumped


@bp.get(FORM_SUBMISSIONS + "/<instance_id>")
@documented({200: SubmissionDetailOut}, query=DetailQuery)
def get_submission(project_id: int, xml_form_id: str, instance_id: str) -> dict[str, Any]:
    """Read a submission (found by any of its versions' instance ids): current record, versions, files."""
    require("submission.read", project_id)
    query = load_query(DetailQuery())
    detail = svc.get_submission(db_session(), project_id, xml_form_id, instance_id, deleted=query["deleted"])
    return _detail(project_id, detail)


@bp.delete(FORM_SUBMISSIONS + "/<instance_id>")
@documented({200: SubmissionDetailOut}, errors=(409,))
def delete_submission(project_id: int, xml_form_id: str, instance_id: str) -> dict[str, Any]:
    """Soft-delete a submission (audited; restorable; its instance ids are then refused on resend)."""
    principal = require("submission.delete", project_id)
    detail = svc.delete_submission(
        db_session(), project_id=project_id, xml_form_id=xml_form_id, instance_id=instance_id, principal=principal
    )
    return _detail(project_id, detail)


@bp.post(FORM_SUBMISSIONS + "/<instance_id>/restore")
@documented({200: SubmissionDetailOut}, errors=(409,))
def restore_submission(project_id: int, xml_form_id: str, instance_id: str) -> dict[str, Any]:
    """Restore a soft-deleted submission (audited)."""
    principal = require("submission.delete", project_id)
    detail = svc.restore_submission(
        db_session(), project_id=project_id, xml_form_id=xml_form_id, instance_id=instance_id, principal=principal
    )
    return _detail(project_id, detail)


@bp.patch(FORM_SUBMISSIONS + "/<instance_id>")
@documented({200: SubmissionDetailOut}, body=ReviewIn)
def review_submission(project_id: int, xml_form_id: str, instance_id: str) -> dict[str, Any]:
    """Set a submission's review state and/or add a review comment (audited)."""
    principal = require("submission.review", project_id)
    body = load_json(ReviewIn())
    if body["review_state"] is None and body["comment"] is None:
        raise ApiError(400, "invalid_input", "Give a review_state, a comment, or both", {"fields": {}})
    detail = svc.review_submission(
        db_session(),
        project_id=project_id,
        xml_form_id=xml_form_id,
        instance_id=instance_id,
        review_state=body["review_state"],
        comment=body["comment"],
        principal=principal,
    )
    return _detail(project_id, detail)


@bp.get(FORM_SUBMISSIONS + "/<instance_id>/attachments/<name>")
@documented({200: "*/*"})
def download_attachment(project_id: int, xml_form_id: str, instance_id: str, name: str) -> Response:
    """Download one file of a submission version."""
    require("submission.read", project_id)
    attachment = svc.get_attachment(db_session(), project_id, xml_form_id, instance_id, name)
    assert attachment.blob_sha256 is not None
    blobs = svc.blob_store()
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(stream_with_context(blobs.iter_bytes(attachment.blob_sha256)), mimetype=mimetype)
    # Werkzeug quotes the name (and adds filename* for non-ASCII): names come from devices.
    response.headers["Content-Disposition"] = downloads.content_disposition(name)
    response.headers["Content-Length"] = str(blobs.size_of(attachment.blob_sha256))
    response.headers["ETag"] = f'"{attachment.blob_sha256}"'
    return response
