"""JSON API of the sync area: push, pull, blobs/missing, tus uploads, entity review, quarantine.

Handlers are thin: authenticate, load (marshmallow or the raw body for push/tus), one service call.
Protocol errors of this blueprint carry ``"protocol": "fieldsync/1"`` (a captive portal's page is never
taken for an answer); ``401``/``403`` keep the app-wide error shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import fields, validate
from werkzeug.exceptions import ClientDisconnected

from server.api.schemas import StrictSchema
from server.api.wire import load_json, load_query
from server.auth import current_principal, require
from server.body_spool import body_read_whole, streams_body
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


class ResolveIn(StrictSchema):
    base_version = fields.Integer(load_default=None)
    base_rev = fields.String(load_default=None)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), values=fields.String(), load_default=dict)
    label = fields.String(load_default=None)


class DeletionIn(StrictSchema):
    base_version = fields.Integer(load_default=None)
    base_rev = fields.String(load_default=None)


class HeldQuery(StrictSchema):
    status = fields.String(load_default=None, validate=validate.OneOf(["open", "released", "discarded"]))
    outcome = fields.String(load_default=None, validate=validate.OneOf(["quarantined", "rejected"]))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))
    after_id = fields.Integer(load_default=0)


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
def push(project_id: int) -> Response:
    """Push a batch of submissions and entity changes (idempotent under ``Idempotency-Key``)."""
    principal = require("sync.push", project_id)
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
def pull(project_id: int) -> dict[str, Any]:
    """Changes since an opaque cursor, in commit order."""
    principal = require("sync.pull", project_id)
    args = load_query(PullQuery())
    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    return sync_pull.pull(
        db_session(), project_id=project_id, principal=principal, cursor=args["cursor"], limit=args["limit"], key=key
    )


@bp.post("/projects/<int:project_id>/blobs/missing")
def blobs_missing(project_id: int) -> dict[str, Any]:
    """Which of the given sha256 the server lacks."""
    require("sync.push", project_id)
    body = load_json(MissingIn())
    return {"protocol": PROTOCOL, "missing": uploads.missing_blobs(db_session(), body["sha256"])}


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
def create_upload() -> Response:
    """Create a resumable upload (``Upload-Length``, ``Upload-Metadata: sha256 <b64>,project <b64>``).

    The project may also be given as ``?project=<id>`` (handy for tus clients with fixed metadata).
    """
    if current_principal() is None:
        raise unauthenticated(challenge='Basic realm="Fieldsync"')
    length = _int_header("Upload-Length")
    metadata = uploads.parse_metadata(request.headers.get("Upload-Metadata", ""))
    project = metadata.get("project") or request.args.get("project", "")
    if not project.isdigit():
        raise bad_request("bad_upload_metadata", "Upload-Metadata must name the project")
    principal = require("sync.push", int(project))
    state = uploads.create_upload(
        db_session(),
        get_store().storage_dir,
        project_id=int(project),
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
@streams_body
def patch_upload(upload_id: str) -> Response:
    """Continue an upload at ``Upload-Offset`` (bytes that arrived before a cut are kept)."""
    with uploads.patch_in_progress(
        get_store().storage_dir, upload_id
    ):  # first: a HEAD arriving meanwhile waits for this PATCH
        if current_principal() is None:
            raise unauthenticated(challenge='Basic realm="Fieldsync"')
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
def terminate_upload(upload_id: str) -> Response:
    """tus termination: give up an upload and delete what arrived of it."""
    _authorize_upload(upload_id)
    uploads.terminate_upload(db_session(), get_store().storage_dir, upload_id)
    return _tus_response(204)


# ---------------------------------------------------------------------------------------------------
# Entities and conflicts


@bp.get("/projects/<int:project_id>/entities/<list_name>")
def list_entities(project_id: int, list_name: str) -> dict[str, Any]:
    """The live entities of a list (``?conflict=hard|soft``; ``?deleted=true``: only the deleted ones)."""
    require("entity.read", project_id)
    args = load_query(EntityListQuery())
    rows = entities.list_entities(
        db_session(), project_id, list_name, args["conflict"], args["limit"], args["after"], args["deleted"]
    )
    return {"entities": rows}


@bp.get("/projects/<int:project_id>/entities/<list_name>/<entity_id>")
def entity_detail(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """An entity's state and its history with every competing value."""
    require("entity.read", project_id)
    return entities.entity_detail(db_session(), project_id, list_name, entity_id)


@bp.post("/projects/<int:project_id>/entities/<list_name>/<entity_id>/resolve")
def resolve_entity(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """Resolve an entity's conflict (``base_version``/``base_rev`` must be current, else ``409``)."""
    principal = require("entity.resolve", project_id)
    body = load_json(ResolveIn())
    return entities.resolve_entity(
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


def _set_deleted(project_id: int, list_name: str, entity_id: str, *, deleted: bool) -> dict[str, Any]:
    principal = require("entity.resolve", project_id)
    # The body is optional: without a base the op is based on the current state.
    body = load_json(DeletionIn()) if request.get_data(cache=True).strip() else DeletionIn().load({})
    return entities.set_entity_deleted(
        db_session(),
        project_id,
        list_name,
        entity_id,
        deleted=deleted,
        base_version=body["base_version"],
        base_rev=body["base_rev"],
        actor=principal.actor,
    )


@bp.delete("/projects/<int:project_id>/entities/<list_name>/<entity_id>")
def delete_entity(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """Delete an entity (kept with its history; idempotent; a stale ``base_version``/``base_rev`` is ``409``)."""
    return _set_deleted(project_id, list_name, entity_id, deleted=True)


@bp.post("/projects/<int:project_id>/entities/<list_name>/<entity_id>/restore")
def restore_entity(project_id: int, list_name: str, entity_id: str) -> dict[str, Any]:
    """Restore a deleted entity with its properties (idempotent; a stale base is ``409``)."""
    return _set_deleted(project_id, list_name, entity_id, deleted=False)


@bp.get("/projects/<int:project_id>/conflicts")
def conflicts(project_id: int) -> dict[str, Any]:
    """The review queue: every live entity with a conflict, hard first (``?deleted=true``: the deleted ones)."""
    require("entity.read", project_id)
    args = load_query(ConflictsQuery())
    return {"conflicts": entities.list_conflicts(db_session(), project_id, deleted=args["deleted"])}


# ---------------------------------------------------------------------------------------------------
# Quarantine


@bp.get("/projects/<int:project_id>/quarantine")
def list_quarantine(project_id: int) -> dict[str, Any]:
    """Held items (quarantined and refused payloads)."""
    require("quarantine.manage", project_id)
    args = load_query(HeldQuery())
    return {"items": quarantine.list_held(db_session(), project_id, **args)}


@bp.post("/projects/<int:project_id>/quarantine/<int:item_id>/release")
def release_quarantined(project_id: int, item_id: int) -> dict[str, Any]:
    """Re-process a held item through the push path."""
    principal = require("quarantine.manage", project_id)
    return quarantine.release(db_session(), project_id, item_id, principal)


@bp.post("/projects/<int:project_id>/quarantine/<int:item_id>/discard")
def discard_quarantined(project_id: int, item_id: int) -> dict[str, Any]:
    """Discard a held item (kept and audited)."""
    principal = require("quarantine.manage", project_id)
    return quarantine.discard(db_session(), project_id, item_id, principal)
