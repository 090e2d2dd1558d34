"""JSON API for submissions, in ODK Central's shape: list (Fieldsync's table: filters, sorts, keyset cursor),
read, create (raw XML or multipart with files), edit, versions, XML, review, comments, files, delete, restore.

Central's conventions: a list is a bare JSON array with ``X-Total-Count``; fields are camelCase;
``reviewState`` is Central's (``null``, ``hasIssues``, ``edited``, ``approved``, ``rejected``);
``X-Extended-Metadata: true`` adds ``submitter`` and ``currentVersion``. Fieldsync's richer table stays
reachable through camelCase query parameters; the next page is the ``Link: <...>; rel="next"`` header
(and ``X-Next-Cursor``), the saved columns are ``GET .../submissions-columns``.

Deleted submissions are hidden: the list shows them only with ``?deleted=true`` (then only them, the
trash, as ODK Central does), and reading one is ``404`` unless ``?deleted=true`` is given.

Handlers are thin: marshmallow in, one service call, marshmallow out; mapping an ingestion outcome to
an HTTP answer is the door's part, every decision is the service's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context, url_for
from marshmallow import Schema, fields, pre_load, validate

from server import metrics
from server.api import downloads
from server.api.contract import Header, ListOf, documented
from server.api.conventions import CamelSchema, StrictCamelSchema, json_list, link_next, wants_extended
from server.api.schemas import (
    CENTRAL_REVIEW_SPELLINGS,
    REVIEW_STATES_FROM_CENTRAL,
    CommentIn,
    CommentOut,
    DatabaseId,
    ReviewIn,
    SubmissionDetailOut,
    SubmissionFileOut,
    SubmissionRowOut,
    SubmissionVersionOut,
    actor_id,
    central_review_state,
)
from server.api.wire import load_json, load_query
from server.auth import require
from server.errors import ApiError, bad_request, too_large
from server.services import overview
from server.services import submission_page as page_svc
from server.services import submission_table as table
from server.services import submissions as svc
from server.services.forms import form_not_assigned
from server.services.submission_files import discard_staged, stage_upload
from server.store import db_session
from sync.outcomes import FORM_CLOSED, FORM_NOT_ASSIGNED, ID_CONFLICT, SUBMISSION_DELETED, Quarantined, Rejected

bp = Blueprint("submissions", __name__, url_prefix="/v1")

FORM_SUBMISSIONS = "/projects/<int:project_id>/forms/<xml_form_id>/submissions"
XML_PART = "xml_submission_file"
EXTENDED = Header(
    "X-Extended-Metadata",
    "true: add Central's extended fields (submitter, currentVersion)",
    {"type": "string", "enum": ["true", "false"]},
)
XML_BODY = {
    "application/xml": {"type": "string", "format": "binary", "description": "The submission XML"},
    "text/xml": {"type": "string", "format": "binary"},
    "multipart/form-data": {
        "type": "object",
        "properties": {
            XML_PART: {"type": "string", "format": "binary", "description": "The submission XML"},
        },
        "additionalProperties": {"type": "string", "format": "binary", "description": "A file, named as the XML"},
        "required": [XML_PART],
    },
}
IDEMPOTENCY_KEY = Header(
    "Idempotency-Key",
    "Names this change: the same key again from the same person answers the first result, writing nothing",
    {"type": "string", "maxLength": 200},
)
FILE_BODY = {"*/*": {"type": "string", "format": "binary", "description": "The file's bytes"}}


class CommaList(fields.List):
    """A query-string list written ``a,b,c`` (the query string holds one value per name)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item]
        return super()._deserialize(value, attr, data, **kwargs)


PAGE_MAX = 1000  # the largest page; without ``limit`` the whole list streams (server.services.submission_table)
FIELD_FILTER_PREFIX = "filter."
SORTS = {"submittedAt": "submitted_at", "field": "field"}


class ListQuery(StrictCamelSchema):
    """The table's parameters; ``filter.<question path>=a,b`` keeps rows whose select answer is a or b."""

    cursor = fields.String(load_default=None)
    limit = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=PAGE_MAX),
        metadata={"description": "Rows of one page (Link: the next); without limit and cursor: every row, as Central"},
    )
    since = fields.DateTime(load_default=None)
    until = fields.DateTime(load_default=None)
    review_state = CommaList(
        fields.String(validate=validate.OneOf(CENTRAL_REVIEW_SPELLINGS)),
        load_default=(),
        metadata={"description": "null (not reviewed), hasIssues, approved, rejected: a comma-separated list"},
    )
    submitter = DatabaseId(load_default=None)
    device = DatabaseId(load_default=None, metadata={"description": "The app user's (device token's) id"})
    device_id = fields.String(load_default=None, validate=validate.Length(min=1, max=255))  # as Collect sent it
    form_version = CommaList(fields.String(validate=validate.Length(min=1, max=255)), load_default=())
    filters = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=500)),
        values=CommaList(fields.String(validate=validate.Length(min=1, max=500)), validate=validate.Length(min=1)),
        load_default=dict,
    )
    sort = fields.String(load_default="submittedAt", validate=validate.OneOf(tuple(SORTS)))
    sort_field = fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    order = fields.String(load_default="asc", validate=validate.OneOf(table.DIRECTIONS))
    columns = CommaList(fields.String(validate=validate.Length(min=1, max=500)), load_default=None,
                        validate=validate.Length(max=table.MAX_COLUMNS))  # fmt: skip
    lang = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    display = fields.String(load_default=None, validate=validate.OneOf(table.DISPLAYS))
    deleted = fields.Boolean(load_default=False)

    @pre_load
    def _gather_field_filters(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        gathered = {k[len(FIELD_FILTER_PREFIX) :]: v for k, v in data.items() if k.startswith(FIELD_FILTER_PREFIX)}
        rest = {k: v for k, v in data.items() if not k.startswith(FIELD_FILTER_PREFIX)}
        return {**rest, "filters": gathered} if gathered else rest


class ColumnsIn(StrictCamelSchema):
    paths = fields.List(fields.String(validate=validate.Length(min=1, max=500)), required=True,
                        validate=validate.Length(max=table.MAX_COLUMNS))  # fmt: skip
    language = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    display = fields.String(load_default="labels", validate=validate.OneOf(table.DISPLAYS))


class ColumnsOut(CamelSchema):
    paths = fields.List(fields.String())
    language = fields.String(allow_none=True)
    display = fields.String()
    saved = fields.Boolean()


class DetailQuery(StrictCamelSchema):
    deleted = fields.Boolean(load_default=False)


class CreateQuery(StrictCamelSchema):
    device_id = fields.String(
        data_key="deviceID", load_default=None, validate=validate.Length(min=1, max=255),
        metadata={"description": "The device that filled it in (as Collect's deviceID)"},
    )  # fmt: skip


class SuccessOut(Schema):
    success = fields.Boolean()


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _sender(submitter_id: int | None, device_token_id: int | None) -> str | None:
    if submitter_id is not None:
        return f"user:{submitter_id}"
    return f"device:{device_token_id}" if device_token_id is not None else None


def _actor(ref: str | None, names: Mapping[str, str]) -> dict[str, Any] | None:
    number = actor_id(ref)
    if ref is None or number is None:
        return None
    kind = "user" if ref.startswith("user:") else "field_key"
    return {"id": number, "type": kind, "display_name": names.get(ref)}


def _names(refs: Iterable[str | None]) -> dict[str, str]:
    wanted = {ref for ref in refs if ref}
    return overview.names_of(db_session(), wanted) if wanted else {}


def _body(
    row: Any, current: Any, xml_form_id: str, current_at: datetime, names: Mapping[str, str] | None
) -> dict[str, Any]:
    """Central's fields and Fieldsync's of a submission ``row`` whose current version is ``current``."""
    sender = _sender(row.submitter_id, row.device_token_id)
    body: dict[str, Any] = {
        "instance_id": row.instance_id,
        "submitter_id": actor_id(sender),
        "device_id": current.device_id,
        "user_agent": getattr(current, "user_agent", None),
        "instance_name": current.instance_name,
        "review_state": central_review_state(row.review_state, row.edits),
        "created_at": row.created_at,
        "updated_at": row.updated_at if row.edits or row.review_state != "received" else None,
        "deleted_at": row.deleted_at,
        "current_instance_id": row.current_instance_id,
        "xml_form_id": xml_form_id,
        "form_version": current.form_version,
        "edits": row.edits,
        "attachments_expected": row.attachments_expected,
        "attachments_present": row.attachments_present,
        "encrypted": current.encrypted,
        "deleted_by": row.deleted_by,
        "data": current.record,
    }
    if names is not None:
        body["submitter"] = _actor(sender, names)
        body["current_version"] = {
            "instance_id": row.current_instance_id,
            "instance_name": current.instance_name,
            "submitter_id": actor_id(_sender(current.submitter_id, current.device_token_id)),
            "device_id": current.device_id,
            "user_agent": getattr(current, "user_agent", None),
            "created_at": current_at,
            "current": True,
            "deprecated_id": getattr(current, "deprecated_id", None),
            "form_version": current.form_version,
            "source": getattr(current, "source", None),
            "encrypted": current.encrypted,
        }
    return body


def _files(project_id: int, xml_form_id: str, instance_id: str, attachments: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "exists": a.blob_sha256 is not None,
            "sha256": a.blob_sha256,
            "url": url_for(
                "submissions.download_attachment",
                project_id=project_id,
                xml_form_id=xml_form_id,
                instance_id=instance_id,
                name=a.name,
            )
            if a.blob_sha256
            else None,
        }
        for a in attachments
    ]


def _version(v: Any, current: bool) -> dict[str, Any]:
    return {
        "instance_id": v.instance_id,
        "instance_name": v.instance_name,
        "submitter_id": actor_id(_sender(v.submitter_id, v.device_token_id)),
        "device_id": v.device_id,
        "user_agent": v.user_agent,
        "created_at": v.received_at,
        "current": current,
        "deprecated_id": v.deprecated_id,
        "form_version": v.form_version,
        "source": v.source,
        "encrypted": v.encrypted,
    }


def _detail_body(project_id: int, detail: svc.SubmissionDetail) -> dict[str, Any]:
    form, current, row = detail.xml_form_id, detail.current, detail.submission
    names = _names([_sender(row.submitter_id, row.device_token_id)]) if wants_extended() else None
    body = _body(row, current, form, current.received_at, names)
    body["files"] = _files(project_id, form, current.instance_id, detail.attachments[current.id])
    body["versions"] = [_version(v, v is current) for v in detail.versions]
    body["reviews"] = [
        {
            "from_state": central_review_state(r.from_state, 0),
            "to_state": central_review_state(r.to_state, 0),
            "comment": r.comment,
            "actor_id": actor_id(r.actor),
            "actor": r.actor,
            "at": r.at,
        }
        for r in detail.reviews
    ]
    return body


def _detail(project_id: int, detail: svc.SubmissionDetail, status: int = 200) -> Response:
    response = jsonify(SubmissionDetailOut().dump(_detail_body(project_id, detail)))
    response.status_code = status
    return response


def _table_query(query: dict[str, Any]) -> table.TableQuery:
    return table.TableQuery(
        cursor=query["cursor"],
        limit=query["limit"] or PAGE_MAX,
        since=_aware(query["since"]),
        until=_aware(query["until"]),
        review_states=tuple(dict.fromkeys(REVIEW_STATES_FROM_CENTRAL[s] for s in query["review_state"])),
        submitter_id=query["submitter"],
        device_token_id=query["device"],
        device_id=query["device_id"],
        form_versions=tuple(query["form_version"]),
        field_values={path: tuple(values) for path, values in query["filters"].items()},
        sort=SORTS[query["sort"]],
        sort_field=query["sort_field"],
        order=query["order"],
        columns=tuple(query["columns"]) if query["columns"] is not None else None,
        language=query["lang"],
        display=query["display"],
        count=True,
        deleted=query["deleted"],
    )


@bp.get(FORM_SUBMISSIONS)
@documented(
    {200: ListOf(SubmissionRowOut)},
    query=ListQuery,
    headers=(EXTENDED,),
    response_headers={
        "X-Total-Count": (
            "How many submissions the filters keep: exact for the whole list; with limit at most 10,000 are counted"
        ),
        "X-Total-Count-Capped": "With limit: true when more than X-Total-Count submissions match",
        "Link": 'With limit: the next page, <url>; rel="next" (absent on the last page)',
        "X-Next-Cursor": "With limit: the cursor of the next page (absent on the last page)",
    },
    notes=(
        "Received time ascending by default; each row's cells follow the columns asked (or the saved ones). "
        "Without limit or cursor the answer is every submission the filters keep, as ODK Central's (streamed); "
        "with limit it is one keyset page and the Link header names the next."
    ),
)
def list_submissions(project_id: int, xml_form_id: str) -> Response:
    """A form's submissions (current versions) as a bare array: filters, sort, columns; every row, or a page."""
    principal = require("submission.read", project_id)
    query = load_query(ListQuery())
    if query["limit"] is None and query["cursor"] is None:  # Central's unpaged list: every row
        stream = table.stream_submissions_table(db_session(), project_id, xml_form_id, _table_query(query), principal)
        response = Response(stream_with_context(_json_array(stream.pages, xml_form_id)), mimetype="application/json")
        response.headers["X-Total-Count"] = str(stream.count)
        return response
    page = table.submissions_table(db_session(), project_id, xml_form_id, _table_query(query), principal)
    response = json_list(_rows(page, xml_form_id), SubmissionRowOut(), page.count)
    if page.count_capped:
        response.headers["X-Total-Count-Capped"] = "true"
    if page.next_cursor is not None:
        link_next(
            response,
            "submissions.list_submissions",
            {"cursor": page.next_cursor},
            project_id=project_id,
            xml_form_id=xml_form_id,
        )
        response.headers["X-Next-Cursor"] = page.next_cursor
    return response


def _rows(page: table.TablePage, xml_form_id: str) -> list[dict[str, Any]]:
    names = _names(_sender(r.submitter_id, r.device_token_id) for r in page.rows) if wants_extended() else None
    rows = []
    for row, cells in zip(page.rows, page.cells, strict=True):
        body = _body(row, row, xml_form_id, row.updated_at, names)
        body["cells"] = cells
        rows.append(body)
    return rows


def _json_array(pages: Iterable[table.TablePage], xml_form_id: str) -> Iterator[str]:
    """The rows of every page as one JSON array, written a page at a time (one batch in memory)."""
    schema, encode = SubmissionRowOut(), current_app.json.dumps
    separator = "["
    for page in pages:
        for item in schema.dump(_rows(page, xml_form_id), many=True):
            yield separator + encode(item)
            separator = ","
    yield "[]" if separator == "[" else "]"


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


# ---------------------------------------------------------------------------------------------------
# Create and edit (Central's REST submission doors)


def _read_xml(staged: list[svc.FileUpload]) -> bytes:
    """The submission XML of the body (raw, or the ``xml_submission_file`` part), staging any files."""
    limit = int(current_app.config["MAX_SUBMISSION_BYTES"])
    if request.content_length is not None and request.content_length > limit + 256 * 1024:
        raise too_large(limit)
    if request.mimetype == "multipart/form-data":
        part = request.files.get(XML_PART)
        xml = part.read(limit + 1) if part is not None else request.form.get(XML_PART, "").encode("utf-8")
        blobs = svc.blob_store()
        for key, storage in request.files.items(multi=True):
            if key == XML_PART:
                continue
            name = key or storage.filename or ""
            if not name or "/" in name or "\\" in name or len(name) > 255:
                raise bad_request("bad_file_name", f"The file part name {name!r} is not a plain file name")
            staged.append(stage_upload(blobs, name, storage.stream, storage.mimetype, limit))
    elif request.mimetype in ("application/xml", "text/xml"):
        xml = request.stream.read(limit + 1)
    else:
        sent = request.mimetype or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send the submission XML as application/xml, or multipart/form-data with an {XML_PART} part (got {sent})",
            {"content_type": sent},
        )
    if len(xml) > limit:
        raise too_large(limit, "submission XML")
    if not xml.strip():
        raise ApiError(400, "no_xml_submission_file", "The request holds no submission XML")
    return xml


def _refusal(result: svc.IngestResult) -> ApiError | None:
    """The answer to an ingestion the store did not take (``None`` when it took it)."""
    outcome, form = result.outcome, result.form_id or ""
    if isinstance(outcome, Rejected):
        if outcome.reason == ID_CONFLICT:
            return ApiError(
                409,
                "id_conflict",
                f"A submission already exists with this ID ({result.instance_id}), but with different XML",
                {"instance_id": result.instance_id},
            )
        if outcome.reason == SUBMISSION_DELETED:
            return ApiError(
                409,
                "submission_deleted",
                f"This submission has been deleted ({result.instance_id}). You may not resubmit it.",
                {"instance_id": result.instance_id},
            )
        if outcome.reason == FORM_NOT_ASSIGNED:
            return form_not_assigned(form)
        if outcome.reason == FORM_CLOSED:
            return ApiError(409, "form_closed", f"The form {form!r} is closed and accepts no submissions", {})
        return ApiError(400, outcome.reason, f"The submission cannot be read: {outcome.detail}", {})
    if isinstance(outcome, Quarantined):
        return ApiError(
            400,
            "form_version_not_found",
            f"The form {form!r} has no version {result.form_version!r}",
            {"form_id": form, "version": result.form_version},
        )
    return None


def _submit(project_id: int, xml_form_id: str, permission: str, edit_of: str | None) -> Response:
    principal = require(permission, project_id)
    query = load_query(CreateQuery())
    staged: list[svc.FileUpload] = []
    try:
        xml = _read_xml(staged)
        result = svc.submit_over_api(
            db_session(),
            project_id=project_id,
            xml_form_id=xml_form_id,
            xml=xml,
            files={f.name: f for f in staged},
            principal=principal,
            device_id=query["device_id"],
            user_agent=request.headers.get("User-Agent"),
            edit_of=edit_of,
        )
    finally:
        discard_staged(staged)
    metrics.count_submission("api", result.outcome.status)
    refusal = _refusal(result)
    if refusal is not None:
        raise refusal
    assert result.instance_id is not None
    detail = svc.get_submission(db_session(), project_id, xml_form_id, result.instance_id)
    return _detail(project_id, detail)


@bp.post(FORM_SUBMISSIONS)
@documented(
    {200: SubmissionDetailOut},
    query=CreateQuery,
    raw_body=XML_BODY,
    errors=(409, 415),
    notes=(
        "As ODK Central: the XML as the body (or multipart with an xml_submission_file part and its files, "
        "as Collect sends). Sending the same XML again answers the stored submission (a retry is safe); "
        "other XML under a stored instanceID is 409."
    ),
)
def create_submission(project_id: int, xml_form_id: str) -> Response:
    """Create a submission from its XML (and files); an XML naming meta/deprecatedID is an edit."""
    return _submit(project_id, xml_form_id, "submission.create", None)


@bp.put(FORM_SUBMISSIONS + "/<instance_id>")
@documented(
    {200: SubmissionDetailOut},
    query=CreateQuery,
    raw_body=XML_BODY,
    errors=(409, 415),
    notes="meta/deprecatedID must be the current version's instanceID; else 409 stale_edit (another edit came first).",
)
def edit_submission(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """Edit a submission: a new version whose XML names the current one as its deprecatedID."""
    return _submit(project_id, xml_form_id, "submission.review", instance_id)


# ---------------------------------------------------------------------------------------------------
# Reading one


@bp.get(FORM_SUBMISSIONS + "/<instance_id>")
@documented({200: SubmissionDetailOut}, query=DetailQuery, headers=(EXTENDED,))
def get_submission(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """Read a submission (found by any of its versions' instance ids): Central's fields, record, versions, files."""
    require("submission.read", project_id)
    query = load_query(DetailQuery())
    detail = svc.get_submission(db_session(), project_id, xml_form_id, instance_id, deleted=query["deleted"])
    return _detail(project_id, detail)


@bp.get(FORM_SUBMISSIONS + "/<instance_id>.xml")
@documented({200: "application/xml"})
def get_submission_xml(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """The XML of the submission's current version (or of the version named, when it is one)."""
    require("submission.read", project_id)
    detail = svc.get_submission(db_session(), project_id, xml_form_id, instance_id)
    version = next((v for v in detail.versions if v.instance_id == instance_id), None)
    chosen = detail.current if version is None or instance_id == detail.submission.instance_id else version
    return Response(chosen.xml, mimetype="application/xml")


@bp.get(FORM_SUBMISSIONS + "/<instance_id>/versions")
@documented({200: ListOf(SubmissionVersionOut)})
def list_versions(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """A submission's versions, newest first (``current`` marks the one in use), as Central lists them."""
    require("submission.read", project_id)
    detail = svc.get_submission(db_session(), project_id, xml_form_id, instance_id)
    versions = [_version(v, v is detail.current) for v in reversed(detail.versions)]
    return json_list(versions, SubmissionVersionOut())


@bp.delete(FORM_SUBMISSIONS + "/<instance_id>")
@documented({200: SubmissionDetailOut}, errors=(409,))
def delete_submission(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """Soft-delete a submission (audited; restorable; its instance ids are then refused on resend)."""
    principal = require("submission.delete", project_id)
    detail = svc.delete_submission(
        db_session(), project_id=project_id, xml_form_id=xml_form_id, instance_id=instance_id, principal=principal
    )
    return _detail(project_id, detail)


@bp.post(FORM_SUBMISSIONS + "/<instance_id>/restore")
@documented({200: SubmissionDetailOut}, errors=(409,))
def restore_submission(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """Restore a soft-deleted submission (audited)."""
    principal = require("submission.delete", project_id)
    detail = svc.restore_submission(
        db_session(), project_id=project_id, xml_form_id=xml_form_id, instance_id=instance_id, principal=principal
    )
    return _detail(project_id, detail)


def _request_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise bad_request("invalid_input", "Idempotency-Key has 1 to 200 characters", fields={"Idempotency-Key": []})
    return key


@bp.patch(FORM_SUBMISSIONS + "/<instance_id>")
@documented({200: SubmissionDetailOut}, body=ReviewIn, headers=(IDEMPOTENCY_KEY,))
def review_submission(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """Set a submission's ``reviewState`` (Central's spellings; null: not reviewed) and/or comment on it."""
    principal = require("submission.review", project_id)
    body = load_json(ReviewIn())
    state = REVIEW_STATES_FROM_CENTRAL[body["review_state"]] if body["review_state"] is not None else None
    if state is None and body["comment"] is None:
        raise ApiError(400, "invalid_input", "Give a reviewState, a comment, or both", {"fields": {}})
    detail = svc.review_submission(
        db_session(),
        project_id=project_id,
        xml_form_id=xml_form_id,
        instance_id=instance_id,
        review_state=state,
        comment=body["comment"],
        principal=principal,
        request_key=_request_key(),
    )
    return _detail(project_id, detail)


# ---------------------------------------------------------------------------------------------------
# Files


@bp.get(FORM_SUBMISSIONS + "/<instance_id>/attachments")
@documented({200: ListOf(SubmissionFileOut)})
def list_attachments(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """The files the current version's XML names, and whether each has arrived (Central's ``exists``)."""
    require("submission.read", project_id)
    detail = svc.get_submission(db_session(), project_id, xml_form_id, instance_id)
    current = detail.current
    return json_list(_files(project_id, xml_form_id, current.instance_id, detail.attachments[current.id]),
                     SubmissionFileOut())  # fmt: skip


@bp.get(FORM_SUBMISSIONS + "/<instance_id>/attachments/<name>")
@documented({200: "*/*"})
def download_attachment(project_id: int, xml_form_id: str, instance_id: str, name: str) -> Response:
    """Download one file of a submission version."""
    require("submission.read", project_id)
    attachment = svc.get_attachment(db_session(), project_id, xml_form_id, instance_id, name)
    return downloads.submission_file(attachment, svc.blob_store())


@bp.post(FORM_SUBMISSIONS + "/<instance_id>/attachments/<name>")
@documented(
    {200: SuccessOut},
    raw_body=FILE_BODY,
    errors=(409,),
    notes="Only a file the XML names (else 404); the same bytes again succeed, other bytes for a stored file are 409.",
)
def upload_attachment(project_id: int, xml_form_id: str, instance_id: str, name: str) -> dict[str, Any]:
    """Send one file of the current version (the raw body, as pyodk sends it); ``success`` is true."""
    principal = require("submission.create", project_id)
    limit = int(current_app.config["MAX_SUBMISSION_BYTES"])
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, f"file {name!r}")
    upload = stage_upload(svc.blob_store(), name, request.stream, request.mimetype or None, limit)
    try:
        result = svc.add_submission_file(
            db_session(),
            project_id=project_id,
            xml_form_id=xml_form_id,
            instance_id=instance_id,
            upload=upload,
            principal=principal,
        )
    finally:
        discard_staged([upload])
    refusal = _refusal(result) if result is not None else None
    if refusal is not None:
        raise refusal
    return {"success": True}


# ---------------------------------------------------------------------------------------------------
# Comments


def _comment(entry: page_svc.ReviewEntry, extended: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "body": entry.comment,
        "actor_id": actor_id(entry.actor),
        "created_at": entry.at,
        "review_state": central_review_state(entry.to_state, 0),
    }
    if extended:
        body["actor"] = _actor(entry.actor, {entry.actor: entry.actor_name} if entry.actor_name else {})
    return body


@bp.get(FORM_SUBMISSIONS + "/<instance_id>/comments")
@documented({200: ListOf(CommentOut)}, headers=(EXTENDED,))
def list_comments(project_id: int, xml_form_id: str, instance_id: str) -> Response:
    """A submission's comments, oldest first (the review state each one left), as ODK Central lists them."""
    require("submission.read", project_id)
    entries = page_svc.list_comments(db_session(), project_id, xml_form_id, instance_id)
    extended = wants_extended()
    return json_list([_comment(e, extended) for e in entries], CommentOut())


@bp.post(FORM_SUBMISSIONS + "/<instance_id>/comments")
@documented({200: CommentOut}, body=CommentIn, headers=(IDEMPOTENCY_KEY,))
def post_comment(project_id: int, xml_form_id: str, instance_id: str) -> dict[str, Any]:
    """Comment on a submission without changing its review state (audited); answers the comment as Central."""
    principal = require("submission.review", project_id)
    body = load_json(CommentIn())
    entry = page_svc.comment_on_submission(
        db_session(), project_id, xml_form_id, instance_id, body["body"], principal, _request_key()
    )
    dumped: dict[str, Any] = CommentOut().dump(_comment(entry, wants_extended()))
    return dumped
