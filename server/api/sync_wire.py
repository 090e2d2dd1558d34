"""What crosses the wire in the sync area (SYNC.md): the push envelope and the answers of push, pull,
entity review and quarantine, as marshmallow schemas for ``/v1/openapi.json``.

The push body is parsed by the pure core (``sync.batches``: the envelope, then each item on its own, so
one bad item is ``rejected`` in the answer instead of refusing the batch); ``PushIn`` describes what that
parser accepts. The services build the answers as dicts; schemathesis checks them against these schemas.
"""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from server.api.conventions import CamelSchema
from sync.batches import MAX_ITEMS_PER_PUSH, PROTOCOL

_PROTOCOL = fields.String(required=True, validate=validate.OneOf([PROTOCOL]))
ITEM_STATUSES = ("created", "updated", "duplicate", "conflict", "awaiting_attachments", "quarantined", "rejected")
HELD_STATUSES = ("open", "released", "discarded")
HELD_OUTCOMES = ("quarantined", "rejected")


class AttachmentRefIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1))
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    size = fields.Integer(required=True, validate=validate.Range(min=0))


class DotIn(Schema):
    w = fields.String(required=True, metadata={"description": "The writer: this device's id"})
    s = fields.Integer(required=True, validate=validate.Range(min=1), metadata={"description": "Its op counter"})


class EntityRefIn(Schema):
    list = fields.String(required=True)
    id = fields.String(required=True)


class PushItemIn(Schema):
    """A submission (``instance_id``, ``form_id``, ``form_version``, ``data``) or an entity change
    (``op_id``, ``dot``, ``entity``, ``fields``, ``hlc``); ``type`` may be left out when the keys tell."""

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


class PushIn(Schema):
    protocol = _PROTOCOL
    device_id = fields.String(required=True, validate=validate.Length(min=1))
    batch_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Also the Idempotency-Key: a resend of the same body replays the answer"},
    )
    items = fields.List(fields.Nested(PushItemIn), required=True, validate=validate.Length(max=MAX_ITEMS_PER_PUSH))


class ConflictOut(Schema):
    kind = fields.String(validate=validate.OneOf(["hard", "soft"]))
    fields_ = fields.List(fields.String(), data_key="fields")


class EntityStateRefOut(Schema):
    list = fields.String()
    id = fields.String()
    version = fields.Integer()
    rev = fields.String()


class ItemResultOut(Schema):
    index = fields.Integer()
    id = fields.String(metadata={"description": "The item's instance_id or op_id"})
    status = fields.String(validate=validate.OneOf(ITEM_STATUSES))
    conflict = fields.Nested(ConflictOut)
    missing = fields.List(fields.String(), metadata={"description": "Attachments still to upload"})
    accepted = fields.String(metadata={"description": "What happened to the submission itself"})
    reason = fields.String()
    detail = fields.String()
    entity = fields.Nested(EntityStateRefOut)


class PushReplyOut(Schema):
    protocol = _PROTOCOL
    batch_id = fields.String()
    server_time = fields.String()
    results = fields.List(fields.Nested(ItemResultOut))


class ChangeOut(Schema):
    seq = fields.Integer()
    collection = fields.String(metadata={"description": "entity, form or batch (the caller's push outcomes)"})
    id = fields.String()
    op = fields.String(validate=validate.OneOf(["upsert", "delete"]))
    data = fields.Raw(allow_none=True)


class PullOut(Schema):
    protocol = _PROTOCOL
    changes = fields.List(fields.Nested(ChangeOut))
    next_cursor = fields.String(metadata={"description": "Pass as ?cursor= next time"})
    has_more = fields.Boolean()


class MissingOut(Schema):
    protocol = _PROTOCOL
    missing = fields.List(fields.String())


class EntityOut(Schema):
    list = fields.String()
    id = fields.String()
    label = fields.String(allow_none=True)
    properties = fields.Dict(keys=fields.String())
    version = fields.Integer()
    rev = fields.String()
    conflict = fields.String(allow_none=True, validate=validate.OneOf(["hard", "soft"]))
    conflict_fields = fields.List(fields.Raw())
    deleted = fields.Boolean()


class EntityOpOut(Schema):
    op_id = fields.String()
    writer = fields.String()
    seq = fields.Integer()
    context = fields.Raw()
    fields_ = fields.Dict(data_key="fields", keys=fields.String())
    hlc = fields.Integer()
    source = fields.String(allow_none=True)
    unknown_base = fields.Boolean()
    base_version = fields.Integer(
        allow_none=True, metadata={"description": "The entity version this op was based on (null: never served here)"}
    )
    actor = fields.String(allow_none=True)
    received_at = fields.String()


class EntityDetailOut(EntityOut):
    history = fields.List(fields.Nested(EntityOpOut))


class EntityListOut(Schema):
    entities = fields.List(fields.Nested(EntityOut))


class ConflictOutRow(CamelSchema, EntityOut):
    """An entity in the review queue: ``EntityOut``'s fields in the JSON API's camelCase (the pull wire keeps
    ``EntityOut``'s snake_case)."""


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
