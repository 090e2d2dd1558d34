"""What crosses the wire in the sync area (SYNC.md): the push envelope and the answers of push, pull,
entity review and quarantine, as marshmallow schemas for ``/v1/openapi.json``.

The wire is ``fieldsync/2``: SYNC.md's protocol in the JSON API's camelCase (issue 16), so every schema
here is a :class:`CamelSchema` (Python attributes stay snake_case, as the services' dicts are). The pull,
``/entities/{list}`` reads and the entity review answers are dumped through these schemas; what the change
log and the entity rows store keeps its own (snake_case) shape, rows written before the upgrade included.

The push body is parsed by the pure core (``sync.batches``: the envelope, then each item on its own, so
one bad item is ``rejected`` in the answer instead of refusing the batch); ``PushIn`` describes what that
parser accepts. The services build the answers as dicts; schemathesis checks them against these schemas.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate

from server.api.conventions import CamelSchema
from sync.batches import MAX_ITEMS_PER_PUSH, PROTOCOL

_PROTOCOL = fields.String(required=True, validate=validate.OneOf([PROTOCOL]))
ITEM_STATUSES = ("created", "updated", "duplicate", "conflict", "awaiting_attachments", "quarantined", "rejected")
HELD_STATUSES = ("open", "released", "discarded")
HELD_OUTCOMES = ("quarantined", "rejected")


class AttachmentRefIn(CamelSchema):
    name = fields.String(required=True, validate=validate.Length(min=1))
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    size = fields.Integer(required=True, validate=validate.Range(min=0))


class DotIn(CamelSchema):
    w = fields.String(required=True, metadata={"description": "The writer: this device's id"})
    s = fields.Integer(required=True, validate=validate.Range(min=1), metadata={"description": "Its op counter"})


class EntityRefIn(CamelSchema):
    list = fields.String(required=True)
    id = fields.String(required=True)


class PushItemIn(CamelSchema):
    """A submission (``instanceId``, ``formId``, ``formVersion``, ``data``) or an entity change
    (``opId``, ``dot``, ``entity``, ``fields``, ``hlc``); ``type`` may be left out when the keys tell."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(validate=validate.OneOf(["submission", "entity"]))
    instance_id = fields.String()
    form_id = fields.String()
    form_version = fields.String()
    data = fields.Raw(metadata={"description": "The submission's XML, or an object keyed by field path"})
    deprecated_id = fields.String(allow_none=True)
    attachments = fields.List(fields.Nested(AttachmentRefIn), allow_none=True)
    op_id = fields.String()
    dot = fields.Nested(DotIn)
    entity = fields.Nested(EntityRefIn)
    base_rev = fields.String(allow_none=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), values=fields.Raw())
    label = fields.String(allow_none=True)
    hlc = fields.Integer(validate=validate.Range(min=0))
    source_submission = fields.String(allow_none=True)


class PushIn(CamelSchema):
    protocol = _PROTOCOL
    device_id = fields.String(required=True, validate=validate.Length(min=1))
    batch_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Also the Idempotency-Key: a resend of the same body replays the answer"},
    )
    items = fields.List(fields.Nested(PushItemIn), required=True, validate=validate.Length(max=MAX_ITEMS_PER_PUSH))


class ConflictOut(CamelSchema):
    kind = fields.String(validate=validate.OneOf(["hard", "soft"]))
    fields_ = fields.List(fields.String(), attribute="fields", data_key="fields")


class EntityStateRefOut(CamelSchema):
    list = fields.String()
    id = fields.String()
    version = fields.Integer()
    rev = fields.String()


class ItemResultOut(CamelSchema):
    index = fields.Integer()
    id = fields.String(metadata={"description": "The item's instanceId or opId"})
    status = fields.String(validate=validate.OneOf(ITEM_STATUSES))
    conflict = fields.Nested(ConflictOut)
    missing = fields.List(fields.String(), metadata={"description": "Attachments still to upload"})
    accepted = fields.String(metadata={"description": "What happened to the submission itself"})
    reason = fields.String()
    detail = fields.String()
    entity = fields.Nested(EntityStateRefOut)


class PushReplyOut(CamelSchema):
    protocol = _PROTOCOL
    batch_id = fields.String()
    server_time = fields.String()
    results = fields.List(fields.Nested(ItemResultOut))


class ChangeData(fields.Raw):
    """A change's ``data`` in camelCase, by its collection (the change log keeps what it stored)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        schema = _CHANGE_DATA.get(obj.get("collection")) if isinstance(obj, dict) else None
        if schema is None or not isinstance(value, dict):
            return value
        return schema().dump(value)


class ChangeOut(CamelSchema):
    seq = fields.Integer()
    collection = fields.String(metadata={"description": "entity, form_version or batch (the caller's push outcomes)"})
    id = fields.String()
    op = fields.String(validate=validate.OneOf(["upsert", "delete"]))
    data = ChangeData(
        allow_none=True,
        metadata={
            "description": "An entity (as EntityOut), a form version {formId, version, hash, sha256} "
            "or a batch {batchId, deviceId, results}"
        },
    )


class PullOut(CamelSchema):
    protocol = _PROTOCOL
    changes = fields.List(fields.Nested(ChangeOut))
    next_cursor = fields.String(metadata={"description": "Pass as ?cursor= next time"})
    has_more = fields.Boolean()


class MissingOut(CamelSchema):
    protocol = _PROTOCOL
    missing = fields.List(fields.String())


class EntityOut(CamelSchema):
    list = fields.String()
    id = fields.String()
    label = fields.String(allow_none=True)
    properties = fields.Dict(keys=fields.String())
    version = fields.Integer()
    rev = fields.String()
    conflict = fields.String(allow_none=True, validate=validate.OneOf(["hard", "soft"]))
    conflict_fields = fields.List(fields.Nested(lambda: ConflictFieldOut()))
    deleted = fields.Boolean()


class EntityOpOut(CamelSchema):
    op_id = fields.String()
    writer = fields.String()
    seq = fields.Integer()
    context = fields.Raw()
    fields_ = fields.Dict(attribute="fields", data_key="fields", keys=fields.String())
    hlc = fields.Integer()
    source = fields.String(allow_none=True)
    unknown_base = fields.Boolean()
    base_version = fields.Integer(
        allow_none=True, metadata={"description": "The entity version this op was based on (null: never served here)"}
    )
    actor = fields.String(allow_none=True)
    received_at = fields.String()


class CandidateOut(CamelSchema):
    value = fields.String(allow_none=True)
    writer = fields.String()
    seq = fields.Integer()
    op_id = fields.String()
    hlc = fields.Integer()


class ConflictFieldOut(CamelSchema):
    field = fields.String()
    candidates = fields.List(fields.Nested(CandidateOut), metadata={"description": "A hard conflict's values"})


class FormVersionChangeOut(CamelSchema):
    form_id = fields.String()
    version = fields.String()
    hash = fields.String()
    sha256 = fields.String()


class BatchChangeOut(CamelSchema):
    batch_id = fields.String()
    device_id = fields.String()
    results = fields.List(fields.Nested(ItemResultOut))


_CHANGE_DATA: dict[object, type[Schema]] = {
    "entity": EntityOut,
    "form_version": FormVersionChangeOut,
    "batch": BatchChangeOut,
}


class EntityDetailOut(EntityOut):
    history = fields.List(fields.Nested(EntityOpOut))


class EntityListOut(CamelSchema):
    entities = fields.List(fields.Nested(EntityOut))


class ConflictOutRow(EntityOut):
    """An entity in the review queue (``EntityOut``, one row of the bare array)."""


class HeldOut(CamelSchema):
    id = fields.Integer()
    kind = fields.String()
    item_id = fields.String()
    outcome = fields.String(validate=validate.OneOf(HELD_OUTCOMES))
    reason = fields.String()
    detail = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(HELD_STATUSES))
    device_id = fields.String()
    actor = fields.String()
    created_at = fields.String()
    decided_by = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)
    raw = fields.Raw(allow_none=True, metadata={"description": "The item exactly as it was pushed"})


class ReleaseOut(CamelSchema):
    item = fields.Nested(HeldOut)
    result = fields.Nested(ItemResultOut, metadata={"description": "The push wire's answer to the item"})
