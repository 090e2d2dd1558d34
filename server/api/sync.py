"""JSON API of the sync area: push, pull, blobs/missing, tus uploads, entity review, quarantine.

Handlers are thin: authenticate, load (marshmallow or the raw body for push/tus), one service call.
Protocol errors of this blueprint carry ``"protocol": "fieldsync/2"`` (a captive portal's page is never
taken for an answer); ``401``/``403`` keep the app-wide error shape. The wire is camelCase (issue 16): the
services answer dicts in their own names and the ``sync_wire`` schemas dump them (the push reply is built
as bytes by the service, since a replay must return the stored ones).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import fields, validate
from werkzeug.exceptions import ClientDisconnected

from server.api.contract import Header, ListOf, documented
from server.api.conventions import StrictCamelSchema, json_list, link_next
from server.api.schemas import DatabaseId, StrictSchema
from server.api.sync_wire import (
    ConflictOutRow,
    EntityDetailOut,
    EntityListOut,
    EntityOut,
    HeldOut,
    MissingOut,
    PullOut,
    PushIn,
    PushReplyOut,
    ReleaseOut,
)
from server.api.wire import load_json, load_query, require_json_content_type
from server.auth import current_principal, require
from server.body_spool import body_read_whole, streams_body
from server.database_ids import parse_database_id
from server.errors import ApiError, bad_request, render_error, unauthenticated
from server.services import entities, quarantine, sync_pull, sync_push, uploads
from server.store import db_session, get_store
from sync.batches import PROTOCOL

bp = Blueprint("sync", __name__, url_prefix="/v1")

BODY_READ = 8 * 1024
TUS_HEADERS = {"Tus-Resumable": uploads.TUS_VERSION, "Cache-Control": "no-store"}


@bp.errorhandler(ApiError)
def _sync_error(error: ApiError) -> Response:
    response = render_error(error)
    if request.method == "HEAD":
        # A HEAD answer has no body: do not announce a JSON one.
        bare = Response(status=error.status)
        bare.headers.update({k: v for k, v in response.headers.items() if k not in ("Content-Type", "Content-Length")})
        response = bare
    elif response.mimetype == "application/json":
        # Even 401/403 carry the protocol key: a client must never mistake a portal's page for ours.
        body = response.get_json()
        body["protocol"] = PROTOCOL
        response.set_data(jsonify(body).get_data())
    if request.path.startswith("/v1/uploads"):
        response.headers["Tus-Resumable"] = uploads.TUS_VERSION
    return response


# ---------------------------------------------------------------------------------------------------
# Schemas


class PullQuery(StrictSchema):
    cursor = fields.String(load_default=None)
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=sync_pull.MAX_PULL_LIMIT))


class MissingIn(StrictSchema):
    sha256 = fields.List(fields.String(), required=True, validate=validate.Length(max=1000))


class EntityListQuery(StrictSchema):
    conflict = fields.String(load_default=None, validate=validate.OneOf(["hard", "soft"]))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=1000))
    after = fields.String(load_default="")
    deleted = fields.Boolean(load_default=False)


class ConflictsQuery(StrictSchema):
    deleted = fields.Boolean(load_default=False)


class ResolveIn(StrictCamelSchema):
    base_version = DatabaseId(load_default=None)
    base_rev = fields.String(load_default=None)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), values=fields.String(), load_default=dict)
    label = fields.String(load_default=None)


class DeletionIn(StrictCamelSchema):
    base_version = DatabaseId(load_default=None)
    base_rev = fields.String(load_default=None)


class UploadCreateQuery(StrictSchema):
    project = fields.String(load_default="", metadata={"description": "The project id, if not in Upload-Metadata"})


TUS_RESUMABLE = Header("Tus-Resumable", "The tus version the client speaks", {"type": "string", "enum": ["1.0.0"]})
TUS_ANSWER_HEADERS = {
    "Tus-Resumable": "1.0.0",
    "Upload-Offset": "Bytes received so far",
    "Upload-Length": "The upload's full size",
    "Upload-Expires": "When an unfinished upload is dropped (HTTP date)",
}


class HeldQuery(StrictCamelSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(["open", "released", "discarded"]))
    outcome = fields.String(load_default=None, validate=validate.OneOf(["quarantined", "rejected"]))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))
    after_id = DatabaseId(load_default=0)


# ---------------------------------------------------------------------------------------------------
# Push and pull


def _read_body(limit: int) -> bytes:
    try:
        body = request.stream.read(limit + 1)
    except ClientDisconnected:
        body = b""
        declared = -1
    else:
        declared = request.content_length if request.content_length is not None else len(body)
    if len(body) < declared <= limit or declared < 0:
        # Fewer bytes than Content-Length announced: the connection was cut.
        raise ApiError(400, "incomplete_body", "The body was cut; nothing was stored")
    return body


@bp.post("/projects/<int:project_id>/sync/push")
@documented(
    {200: PushReplyOut},
    raw_body={"application/json": PushIn},
    headers=(
        Header("Idempotency-Key", "Equal to batchId when given", {"type": "string", "maxLength": 200}),
        Header("Content-Encoding", "gzip for a compressed body", {"type": "string", "enum": ["gzip", "identity"]}),
    ),
    errors=(409, 422, 426),
    notes="Each item is answered on its own in `results` (a bad item is `rejected`, never the batch).",
)
def push(project_id: int) -> Response:
    """Push a batch of submissions and entity changes (idempotent under ``Idempotency-Key``)."""
    principal = require("sync.push", project_id)
    require_json_content_type()  # gzip is a Content-Encoding: the type is still application/json
    limit = int(current_app.config["MAX_PUSH_BYTES"])
    reply = sync_push.push(
        db_session(),
        project_id=project_id,
        principal=principal,
        raw_body=_read_body(limit),
        content_encoding=request.headers.get("Content-Encoding", ""),
        idempotency_key=request.headers.get("Idempotency-Key"),
        max_bytes=limit,
    )
    response = Response(reply.body, status=reply.status, mimetype="application/json")
    response.headers.update(dict(reply.headers))
    return response


@bp.get("/projects/<int:project_id>/sync/pull")
@documented({200: PullOut}, query=PullQuery)
def pull(project_id: int) -> dict[str, Any]:
    """Changes since an opaque cursor, in commit order."""
    principal = require("sync.pull", project_id)
    args = load_query(PullQuery())
    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    page = sync_pull.pull(
        db_session(), project_id=project_id, principal=principal, cursor=args["cursor"], limit=args["limit"], key=key
    )
    dumped: dict[str, Any] = PullOut().dump(page)
    return dumped


@bp.post("/projects/<int:project_id>/blobs/missing")
@documented({200: MissingOut}, body=MissingIn)
def blobs_missing(project_id: int) -> dict[str, Any]:
    """Which of the given sha256 this project has not delivered (another project's blobs count as missing)."""
    require("sync.push", project_id)
    body = load_json(MissingIn())
    return {"protocol": PROTOCOL, "missing": uploads.missing_blobs(db_session(), project_id, body["sha256"])}


# ---------------------------------------------------------------------------------------------------
# tus uploads


def _tus_response(status: int, state: uploads.UploadState | None = None, **headers: str) -> Response:
    response = Response(status=status)
    response.headers.update(TUS_HEADERS)
    if state is not None:
        response.headers["Upload-Offset"] = str(state.offset)
        response.headers["Upload-Length"] = str(state.length)
        response.headers["Upload-Expires"] = state.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    response.headers.update(headers)
    return response


def _max_upload() -> int:
    return int(current_app.config["MAX_SUBMISSION_BYTES"])


@bp.route("/uploads", methods=["OPTIONS"], provide_automatic_options=False)
@documented(
    {204: None},
    public=True,
    response_headers={"Tus-Version": "1.0.0", "Tus-Extension": "Extensions", "Tus-Max-Size": "Bytes"},
)
def uploads_options() -> Response:
    """tus discovery: version, extensions and the size limit."""
    return _tus_response(
        204,
        None,
        **{
            "Tus-Version": uploads.TUS_VERSION,
            "Tus-Extension": uploads.TUS_EXTENSIONS,
            "Tus-Checksum-Algorithm": uploads.TUS_CHECKSUM_ALGORITHMS,
            "Tus-Max-Size": str(_max_upload()),
        },
    )


def _int_header(name: str) -> int:
    raw = request.headers.get(name, "")
    if not raw.isdigit():
        raise bad_request("bad_" + name.lower().replace("-", "_"), f"{name} must be a non-negative integer")
    return int(raw)


@bp.post("/uploads")
@documented(
    {201: None},
    query=UploadCreateQuery,
    headers=(
        Header("Upload-Length", "The file's size in bytes", {"type": "string", "pattern": "^[0-9]+$"}, True),
        Header("Upload-Metadata", "sha256 <base64>,project <base64>[,filetype <base64>]", required=True),
        TUS_RESUMABLE,
    ),
    errors=(413,),
    response_headers={"Location": "The upload's URL", **TUS_ANSWER_HEADERS},
)
def create_upload() -> Response:
    """Create a resumable upload (``Upload-Length``, ``Upload-Metadata: sha256 <b64>,project <b64>``).

    The project may also be given as ``?project=<id>`` (handy for tus clients with fixed metadata).
    """
    if current_principal() is None:
        raise unauthenticated()  # no Basic challenge: browsers must not prompt (issue 15)
    length = _int_header("Upload-Length")
    metadata = uploads.parse_metadata(request.headers.get("Upload-Metadata", ""))
    query = load_query(UploadCreateQuery())
    project_id = parse_database_id(metadata.get("project") or query["project"])
    if project_id is None:
        raise bad_request("bad_upload_metadata", "Upload-Metadata must name the project by its numeric id")
    principal = require("sync.push", project_id)
    state = uploads.create_upload(
        db_session(),
        get_store().storage_dir,
        project_id=project_id,
        length=length,
        sha256=metadata.get("sha256", "").lower(),
        content_type=metadata.get("filetype", metadata.get("content_type", "")),
        actor=principal.actor,
        max_size=_max_upload(),
    )
    return _tus_response(201, state, Location=f"/v1/uploads/{state.id}")


def _authorize_upload(upload_id: str) -> None:
    row = uploads.get_upload(db_session(), upload_id)
    require("sync.push", row.project_id)


@bp.route("/uploads/<upload_id>", methods=["HEAD"])
@documented({200: None}, errors=(410,), response_headers=TUS_ANSWER_HEADERS)
def head_upload(upload_id: str) -> Response:
    """The offset to resume from."""
    _authorize_upload(upload_id)
    return _tus_response(200, uploads.upload_state(db_session(), get_store().storage_dir, upload_id))


def _body_chunks() -> Iterator[bytes]:
    """The PATCH body as it arrives (small reads: a reset loses at most one read of what arrived)."""
    stream = request.environ["wsgi.input"]
    declared = request.content_length
    received = 0
    while declared is None or received < declared:
        chunk = stream.read(BODY_READ if declared is None else min(BODY_READ, declared - received))
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    if declared is not None and received < declared:
        # The connection was cut: what arrived is kept by the service, the client resumes from HEAD.
        raise ClientDisconnected()
    body_read_whole()


@bp.route("/uploads/<upload_id>", methods=["PATCH"])
@documented(
    {204: None},
    raw_body={"application/offset+octet-stream": {"type": "string", "contentMediaType": "application/octet-stream"}},
    headers=(
        Header("Upload-Offset", "Where these bytes start", {"type": "string", "pattern": "^[0-9]+$"}, True),
        Header("Upload-Checksum", "sha256 <base64 of this body's digest>: nothing counts unless it matches"),
        TUS_RESUMABLE,
    ),
    errors=(409, 410, 415, 460),
    response_headers=TUS_ANSWER_HEADERS,
)
@streams_body
def patch_upload(upload_id: str) -> Response:
    """Continue an upload at ``Upload-Offset`` (bytes that arrived before a cut are kept)."""
    with uploads.patch_in_progress(
        get_store().storage_dir, upload_id
    ):  # first: a HEAD arriving meanwhile waits for this PATCH
        if current_principal() is None:
            raise unauthenticated()  # no Basic challenge: browsers must not prompt (issue 15)
        if request.mimetype != "application/offset+octet-stream":
            raise ApiError(415, "unsupported_media_type", "PATCH needs Content-Type: application/offset+octet-stream")
        state = uploads.patch_upload(
            db_session(),
            get_store().storage_dir,
            upload_id=upload_id,
            offset=_int_header("Upload-Offset"),
            chunks=_body_chunks(),
            checksum=request.headers.get("Upload-Checksum"),
            authorize=lambda project_id: require("sync.push", project_id),
            on_blob=uploads.blob_arrived,
        )
    return _tus_response(204, state)


@bp.route("/uploads/<upload_id>", methods=["DELETE"])
@documented({204: None}, headers=(TUS_RESUMABLE,), errors=(404,), response_headers=TUS_ANSWER_HEADERS)
def terminate_upload(upload_id: str) -> Response:
    """tus termination: give up an upload and delete what arrived of it."""
    _authorize_upload(upload_id)
    uploads.terminate_upload(db_session(), get_store().storage_dir, upload_id)
    return _tus_response(204)


# ---------------------------------------------------------------------------------------------------
# Entities and conflicts


@bp.get("/projects/<int:project_id>/entities/<list_name>")
@documented({200: EntityListOut}, query=EntityListQuery)
def list_entities(project_id: int, list_name: str) -> dict[str, Any]:
    """The live entities of a list (``?conflict=hard|soft``; ``?deleted=true``: only the deleted ones)."""
    require("entity.read", project_id)
    args = load_query(EntityListQuery())
    rows = entities.list_entities(
        db_session(), project_id, list_name, args["conflict"], args["limit"], args["after"], args["deleted"]
    )
    dumped: dict[str, Any] = EntityListOut().dump({"entities": rows})
    return dumped


@bp.get("/projects/<int:project_id>/entities/<list_name>/<entity_id>")
@documented({200: EntityDetailOut})
def entity_detail(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """An entity's state and its history with every competing value."""
    require("entity.read", project_id)
    detail = entities.entity_detail(db_session(), project_id, list_name, entity_id)
    dumped: dict[str, Any] = EntityDetailOut().dump(detail)
    return dumped


@bp.post("/projects/<int:project_id>/entities/<list_name>/<entity_id>/resolve")
@documented({200: EntityOut}, body=ResolveIn, errors=(409,))
def resolve_entity(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """Resolve an entity's conflict (``baseVersion``/``baseRev`` must be current, else ``409``)."""
    principal = require("entity.resolve", project_id)
    body = load_json(ResolveIn())
    resolved = entities.resolve_entity(
        db_session(),
        project_id,
        list_name,
        entity_id,
        base_version=body["base_version"],
        base_rev=body["base_rev"],
        fields=body["fields_"],
        label=body["label"],
        actor=principal.actor,
    )
    dumped: dict[str, Any] = EntityOut().dump(resolved)
    return dumped


def _set_deleted(project_id: int, list_name: str, entity_id: str, *, deleted: bool) -> dict[str, Any]:
    principal = require("entity.resolve", project_id)
    # The body is optional: without a base the op is based on the current state.
    body = load_json(DeletionIn()) if request.get_data(cache=True).strip() else DeletionIn().load({})
    changed = entities.set_entity_deleted(
        db_session(),
        project_id,
        list_name,
        entity_id,
        deleted=deleted,
        base_version=body["base_version"],
        base_rev=body["base_rev"],
        actor=principal.actor,
    )
    dumped: dict[str, Any] = EntityOut().dump(changed)
    return dumped


@bp.delete("/projects/<int:project_id>/entities/<list_name>/<entity_id>")
@documented({200: EntityOut}, body=DeletionIn, body_required=False, errors=(409,))
def delete_entity(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """Delete an entity (kept with its history; idempotent; a stale ``baseVersion``/``baseRev`` is ``409``)."""
    return _set_deleted(project_id, list_name, entity_id, deleted=True)


@bp.post("/projects/<int:project_id>/entities/<list_name>/<entity_id>/restore")
@documented({200: EntityOut}, body=DeletionIn, body_required=False, errors=(409,))
def restore_entity(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """Restore a deleted entity with its properties (idempotent; a stale base is ``409``)."""
    return _set_deleted(project_id, list_name, entity_id, deleted=False)


@bp.get("/projects/<int:project_id>/conflicts")
@documented({200: ListOf(ConflictOutRow)}, query=ConflictsQuery)
def conflicts(project_id: int) -> Response:
    """The review queue: every live entity with a conflict, hard first (``?deleted=true``: the deleted ones)."""
    require("entity.read", project_id)
    args = load_query(ConflictsQuery())
    return json_list(entities.list_conflicts(db_session(), project_id, deleted=args["deleted"]), ConflictOutRow())


# ---------------------------------------------------------------------------------------------------
# Quarantine


@bp.get("/projects/<int:project_id>/quarantine")
@documented(
    {200: ListOf(HeldOut)},
    query=HeldQuery,
    response_headers={
        "X-Total-Count": "How many held items the filters keep",
        "Link": 'The next page: <url>; rel="next" (absent on the last page)',
    },
)
def list_quarantine(project_id: int) -> Response:
    """Held items (quarantined and refused payloads), oldest first; ``afterId`` pages."""
    require("quarantine.manage", project_id)
    args = load_query(HeldQuery())
    rows, total = quarantine.held_page(db_session(), project_id, **args)
    response = json_list(rows, HeldOut(), total)
    if len(rows) == args["limit"]:
        link_next(response, "sync.list_quarantine", {"afterId": str(rows[-1]["id"])}, project_id=project_id)
    return response


@bp.get("/projects/<int:project_id>/quarantine/<int:item_id>")
@documented({200: HeldOut})
def get_quarantined(project_id: int, item_id: int) -> dict[str, Any]:
    """One held item with its raw payload and why it was held."""
    require("quarantine.manage", project_id)
    dumped: dict[str, Any] = HeldOut().dump(quarantine.held_item(db_session(), project_id, item_id))
    return dumped


@bp.post("/projects/<int:project_id>/quarantine/<int:item_id>/release")
@documented({200: ReleaseOut}, errors=(409,))
def release_quarantined(project_id: int, item_id: int) -> dict[str, Any]:
    """Re-process a held item through the push path."""
    principal = require("quarantine.manage", project_id)
    released = quarantine.release(db_session(), project_id, item_id, principal)
    return {"item": HeldOut().dump(released["item"]), "result": released["result"]}  # the push wire's result


@bp.post("/projects/<int:project_id>/quarantine/<int:item_id>/discard")
@documented({200: HeldOut}, errors=(409,))
def discard_quarantined(project_id: int, item_id: int) -> dict[str, Any]:
    """Discard a held item (kept and audited)."""
    principal = require("quarantine.manage", project_id)
    dumped: dict[str, Any] = HeldOut().dump(quarantine.discard(db_session(), project_id, item_id, principal))
    return dumped
