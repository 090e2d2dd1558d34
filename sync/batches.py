"""Push batches: request idempotency and the state-independent parsing of pushed items.

This module owns two decisions of ``POST /v1/projects/{project}/sync/push`` (SYNC.md "Push",
research §8.5):

* ``decide_batch``: what to do with an ``Idempotency-Key`` given the stored batch row, if any —
  process it (:class:`NewBatch`), return the stored response verbatim (:class:`Replay`), refuse a key
  reused with another body (:class:`KeyReused`, 422) or ask to retry later (:class:`InProgress`, 409
  with ``Retry-After``). The server inserts the batch row under a unique constraint; this function
  only says what the row it got back means.
* ``parse_push_envelope`` / ``parse_push_item``: shape and type checks of the body and of one item.
  They never look at stored state, so their result cannot depend on arrival order (research §8.2);
  a malformed item becomes ``Rejected("unparseable_item", detail)`` and never blocks the others.

Item shapes (JSON, camelCase since ``fieldsync/2``): a submission has ``instanceId``, ``formId``,
``formVersion``, optional ``deprecatedId``, ``data`` (OpenRosa XML string or an object keyed by field
path) and optional ``attachments: [{name, sha256, size}]``. An entity change has ``opId``, ``dot: {w,
s}``, ``entity: {list, id}``, ``baseRev`` (null for a create), ``fields: {name: value | {"set":
value}}``, optional ``label``, ``hlc`` (ms) and optional ``sourceSubmission``. An explicit ``"type":
"submission" | "entity"`` is accepted; otherwise the type is told by ``instanceId`` vs ``opId``.

``fieldsync/1`` was the same protocol in snake_case. Its bodies are refused (``426``) except the resend of
a batch stored under it (:func:`decide_old_protocol`), and what was stored raw in its shape (held items)
is read through :func:`item_from_protocol_1`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from forms.submission import SubmissionHeader
from sync.entities import LABEL_FIELD, CausalContext, Dot, EntityOp
from sync.outcomes import FOREIGN_DOT, ITEM_MISMATCH, UNPARSEABLE_ITEM, Rejected
from sync.submissions import AttachmentRef

PROTOCOL = "fieldsync/2"
PROTOCOL_1 = "fieldsync/1"  # the snake_case wire before issue 16: only stored batches and items remain
RETRY_AFTER_SECONDS = 5

BatchState: TypeAlias = Literal["in_progress", "done"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def body_fingerprint(body: bytes) -> str:
    """The sha256 hex of a push body, taken after gzip decoding (gzip headers carry a timestamp)."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """The stored row of a batch: its body fingerprint, state and, once done, its response."""

    batch_id: str
    body_hash: str
    state: BatchState
    response: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NewBatch:
    """First time this key is seen: process the batch and store its response under the key."""

    batch_id: str
    body_hash: str
    http_status: int = 200


@dataclass(frozen=True, slots=True)
class Replay:
    """The same batch was already processed: return its stored response verbatim."""

    response: Mapping[str, Any]
    http_status: int = 200


@dataclass(frozen=True, slots=True)
class KeyReused:
    """The key was used for a different body (``422 idempotency_key_reused``)."""

    batch_id: str
    http_status: int = 422
    code: str = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class InProgress:
    """The same batch is being processed by another request (``409 batch_in_progress``)."""

    batch_id: str
    retry_after_s: int = RETRY_AFTER_SECONDS
    http_status: int = 409
    code: str = "batch_in_progress"


BatchDecision: TypeAlias = NewBatch | Replay | KeyReused | InProgress


def decide_batch(key: str, body_hash: str, stored: StoredBatch | None) -> BatchDecision:
    """Decide what a push with this ``Idempotency-Key`` and body fingerprint does, given the stored row."""
    if stored is None:
        return NewBatch(batch_id=key, body_hash=body_hash)
    # The body is compared before the state: a different body under a key in progress is a client
    # bug (422), not something a retry would fix.
    if stored.body_hash != body_hash:
        return KeyReused(batch_id=key)
    if stored.state == "done" and stored.response is not None:
        return Replay(response=stored.response)
    return InProgress(batch_id=key)


# ---------------------------------------------------------------------------------------------------
# Parsing (state-independent)


@dataclass(frozen=True, slots=True)
class PushEnvelope:
    """The parsed top level of a push body; ``items`` are still raw (parsed one by one)."""

    device_id: str
    batch_id: str
    items: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class MalformedBody:
    """The body parsed as JSON but is not a push envelope (``400``, nothing stored)."""

    detail: str
    http_status: int = 400
    code: str = "malformed_body"


@dataclass(frozen=True, slots=True)
class UnsupportedProtocol:
    """The body names a protocol this server does not speak (``426``)."""

    protocol: str
    http_status: int = 426
    code: str = "unsupported_protocol"


@dataclass(frozen=True, slots=True)
class SubmissionItem:
    """A pushed submission, shape-checked."""

    instance_id: str
    form_id: str
    form_version: str
    data: str | Mapping[str, Any]
    deprecated_id: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()


@dataclass(frozen=True, slots=True)
class EntityItem:
    """A pushed entity change, shape-checked; ``fields`` includes the label as ``__label``."""

    op_id: str
    dot: Dot
    list_name: str
    entity_id: str
    base_rev: str | None
    fields: Mapping[str, str]
    hlc: int
    source_submission: str | None = None

    def to_op(self, context: CausalContext, *, unknown_base: bool = False) -> EntityOp:
        """The op to merge, given the causal context the server derived from ``baseRev``."""
        return EntityOp(
            op_id=self.op_id,
            dot=self.dot,
            context=context,
            fields=dict(self.fields),
            hlc=self.hlc,
            source=self.source_submission or self.op_id,
            unknown_base=unknown_base,
        )


PushItem: TypeAlias = SubmissionItem | EntityItem


class _ShapeError(Exception):
    """Internal: the first shape problem found in an item, with its JSON path."""


def _require_str(obj: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise _ShapeError(f"{path}.{key}: required")
    if not isinstance(value, str) or not value:
        raise _ShapeError(f"{path}.{key}: expected a non-empty string")
    return value


def _required_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _require_str(obj, key, path)
    assert value is not None  # _require_str raises when a required key is missing
    return value


def _require_int(obj: Mapping[str, Any], key: str, path: str, *, minimum: int) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _ShapeError(f"{path}.{key}: expected an integer >= {minimum}")
    return value


def _require_object(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise _ShapeError(f"{path}.{key}: expected an object")
    return value


def _parse_attachments(raw: object, path: str) -> tuple[AttachmentRef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _ShapeError(f"{path}.attachments: expected a list")
    refs: list[AttachmentRef] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"{path}.attachments[{i}]"
        if not isinstance(entry, dict):
            raise _ShapeError(f"{where}: expected an object")
        name = _required_str(entry, "name", where)
        sha256 = _required_str(entry, "sha256", where)
        if not _SHA256_HEX.fullmatch(sha256):
            raise _ShapeError(f"{where}.sha256: expected 64 lowercase hex characters")
        size = _require_int(entry, "size", where, minimum=0)
        if name in names:
            raise _ShapeError(f"{where}.name: duplicate attachment name {name!r}")
        names.add(name)
        refs.append(AttachmentRef(name=name, sha256=sha256, size=size))
    return tuple(refs)


def _parse_submission(item: Mapping[str, Any], path: str) -> SubmissionItem:
    data = item.get("data")
    if not (isinstance(data, str) and data) and not isinstance(data, dict):
        raise _ShapeError(f"{path}.data: expected an XML string or an object keyed by field path")
    return SubmissionItem(
        instance_id=_required_str(item, "instanceId", path),
        form_id=_required_str(item, "formId", path),
        form_version=_required_str(item, "formVersion", path),
        data=data,
        deprecated_id=_require_str(item, "deprecatedId", path, optional=True),
        attachments=_parse_attachments(item.get("attachments"), path),
    )


def item_mismatch(item: SubmissionItem, header: SubmissionHeader) -> Rejected | None:
    """Refuse an XML item whose ``instanceId``, ``formId``, ``formVersion`` or ``deprecatedId`` differ from its XML.

    The item's fields route it and name it in the reply, while the XML is what is stored: if they
    disagree, the client is told ``created`` for one instance while another is stored (or one form's
    answers land under another's id). Neither side is guessed right: the item is refused.
    """
    pairs = (
        ("instanceId", item.instance_id, header.instance_id, "meta/instanceID"),
        ("formId", item.form_id, header.form_id, "the root's id attribute"),
        ("formVersion", item.form_version, header.version, "the root's version attribute"),
    )
    for name, stated, in_xml, where in pairs:
        if stated != in_xml:
            return Rejected(ITEM_MISMATCH, f"{name} {stated!r} differs from {where} {in_xml!r} in the XML")
    if item.deprecated_id is not None and item.deprecated_id != header.deprecated_id:
        return Rejected(
            ITEM_MISMATCH,
            f"deprecatedId {item.deprecated_id!r} differs from meta/deprecatedID {header.deprecated_id!r} in the XML",
        )
    return None


def _parse_field_value(value: object, where: str) -> str:
    if isinstance(value, dict):
        if set(value) != {"set"}:
            raise _ShapeError(f"{where}: only {{'set': value}} is supported")
        value = value["set"]
    if not isinstance(value, str):
        raise _ShapeError(f"{where}: expected a string value")
    return value


def _parse_entity(item: Mapping[str, Any], path: str) -> EntityItem:
    dot = _require_object(item, "dot", path)
    entity = _require_object(item, "entity", path)
    raw_fields = _require_object(item, "fields", path)
    fields = {name: _parse_field_value(value, f"{path}.fields.{name}") for name, value in raw_fields.items()}
    label = _require_str(item, "label", path, optional=True)
    if label is not None:
        if LABEL_FIELD in fields and fields[LABEL_FIELD] != label:
            raise _ShapeError(f"{path}.label: disagrees with fields.{LABEL_FIELD}")
        fields[LABEL_FIELD] = label
    return EntityItem(
        op_id=_required_str(item, "opId", path),
        dot=Dot(_required_str(dot, "w", f"{path}.dot"), _require_int(dot, "s", f"{path}.dot", minimum=1)),
        list_name=_required_str(entity, "list", f"{path}.entity"),
        entity_id=_required_str(entity, "id", f"{path}.entity"),
        base_rev=_require_str(item, "baseRev", path, optional=True),
        fields=fields,
        hlc=_require_int(item, "hlc", path, minimum=0),
        source_submission=_require_str(item, "sourceSubmission", path, optional=True),
    )


def parse_push_item(item: object, *, index: int = 0, device_id: str | None = None) -> PushItem | Rejected:
    """Shape-check one pushed item; a bad item is ``Rejected("unparseable_item", detail)``.

    With ``device_id``, an entity change whose dot names another writer is ``Rejected("foreign_dot")``.
    """
    path = f"items[{index}]"
    try:
        if not isinstance(item, dict):
            raise _ShapeError(f"{path}: expected an object")
        kind = item.get("type")
        if kind is None:
            has_instance, has_op = "instanceId" in item, "opId" in item
            if has_instance == has_op:
                raise _ShapeError(f"{path}: cannot tell a submission (instanceId) from an entity (opId)")
            kind = "submission" if has_instance else "entity"
        if kind == "submission":
            return _parse_submission(item, path)
        if kind == "entity":
            parsed = _parse_entity(item, path)
            if device_id is not None and parsed.dot.writer != device_id:
                return Rejected(FOREIGN_DOT, f"{path}.dot.w: {parsed.dot.writer!r} is not this device")
            return parsed
        raise _ShapeError(f"{path}.type: expected 'submission' or 'entity'")
    except _ShapeError as exc:
        return Rejected(UNPARSEABLE_ITEM, str(exc))


MAX_ITEMS_PER_PUSH = 200


@dataclass(frozen=True, slots=True)
class TooManyItems:
    """The batch has more items than the server accepts (``413`` with the limit in the body)."""

    max_items: int
    http_status: int = 413
    code: str = "too_many_items"


_ENVELOPE_KEYS = ("protocol", "deviceId", "batchId", "items")


def parse_push_envelope(
    body: object, *, max_items: int = MAX_ITEMS_PER_PUSH
) -> PushEnvelope | MalformedBody | UnsupportedProtocol | TooManyItems:
    """Check the top level of a decoded push body: protocol, device, batch id and the item list."""
    if not isinstance(body, dict):
        return MalformedBody("the body must be a JSON object")
    protocol = body.get("protocol")
    if protocol != PROTOCOL:
        return UnsupportedProtocol(protocol=str(protocol))
    unknown = sorted(str(key) for key in body if key not in _ENVELOPE_KEYS)
    if unknown:
        # The same rule as every JSON body of the API: a misspelt key is an error, never silently dropped.
        return MalformedBody(f"unknown field(s) {', '.join(unknown)}: a push has only {', '.join(_ENVELOPE_KEYS)}")
    device_id, batch_id, items = body.get("deviceId"), body.get("batchId"), body.get("items")
    if not isinstance(device_id, str) or not device_id:
        return MalformedBody("deviceId: expected a non-empty string")
    if not isinstance(batch_id, str) or not batch_id:
        return MalformedBody("batchId: expected a non-empty string")
    if not isinstance(items, list):
        return MalformedBody("items: expected a list")
    if len(items) > max_items:
        return TooManyItems(max_items=max_items)
    return PushEnvelope(device_id=device_id, batch_id=batch_id, items=tuple(items))


# ---------------------------------------------------------------------------------------------------
# fieldsync/1: what was stored in the snake_case shape


def decide_old_protocol(body_hash: str, stored: StoredBatch | None) -> Replay | UnsupportedProtocol:
    """A ``fieldsync/1`` body: the stored reply of the same batch if it was processed before the upgrade, else 426.

    A phone that pushed before the upgrade and lost the answer resends the same bytes under the same key:
    it must get the answer of what was stored, not a refusal that makes it think nothing was.
    """
    if stored is not None and isinstance(decide_batch(stored.batch_id, body_hash, stored), Replay):
        assert stored.response is not None  # decide_batch replays only a done row with its response
        return Replay(response=stored.response)
    return UnsupportedProtocol(protocol=PROTOCOL_1)


def old_batch_key(body: Mapping[str, Any], idempotency_key: str | None) -> str | None:
    """The key a ``fieldsync/1`` push was stored under: its ``Idempotency-Key``, else its ``batch_id``."""
    key = idempotency_key or body.get("batch_id")
    return key if isinstance(key, str) and key else None


# The item keys that fieldsync/2 renamed, at the top of an item (what an office relay adds included).
_ITEM_KEYS_1 = {
    "instance_id": "instanceId",
    "form_id": "formId",
    "form_version": "formVersion",
    "deprecated_id": "deprecatedId",
    "op_id": "opId",
    "base_rev": "baseRev",
    "source_submission": "sourceSubmission",
    "unknown_base": "unknownBase",
    "entity_ops": "entityOps",
}
_RELAYED_OP_KEYS_1 = {"op_id": "opId", "unknown_base": "unknownBase"}
_ORIGIN_KEYS_1 = {"device_id": "deviceId"}


def _renamed(obj: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in obj.items()}


def is_protocol_1_item(raw: object) -> bool:
    """Whether a stored item is in the fieldsync/1 shape: a snake_case key and none of fieldsync/2's names."""
    if not isinstance(raw, dict):
        return False
    return any(key in raw for key in _ITEM_KEYS_1) and not any(key in raw for key in _ITEM_KEYS_1.values())


def item_from_protocol_1(raw: object) -> object:
    """A pushed item stored in the fieldsync/1 (snake_case) shape, in fieldsync/2's; any other value as it is.

    Only the protocol's own keys are renamed: ``data``, ``fields`` and a ``context`` are the answers, names
    and dots the client chose, and keep theirs.
    """
    if not is_protocol_1_item(raw):
        return raw
    assert isinstance(raw, dict)
    item = _renamed(raw, _ITEM_KEYS_1)
    if isinstance(item.get("entityOps"), list):
        item["entityOps"] = [
            _renamed(op, _RELAYED_OP_KEYS_1) if isinstance(op, dict) else op for op in item["entityOps"]
        ]
    if isinstance(item.get("origin"), dict):
        item["origin"] = _renamed(item["origin"], _ORIGIN_KEYS_1)
    return item


def item_to_protocol_1(item: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`item_from_protocol_1`: how a fieldsync/1 client built the same item.

    An office relay resends a batch whose key it committed before the upgrade in the shape it was first
    sent in, so that the national server recognises the bytes it stored (see ``relay_uplink``).
    """
    back = {new: old for old, new in _ITEM_KEYS_1.items()}
    old = _renamed(item, back)
    if isinstance(old.get("entity_ops"), list):
        ops_back = {new: name for name, new in _RELAYED_OP_KEYS_1.items()}
        old["entity_ops"] = [_renamed(op, ops_back) if isinstance(op, dict) else op for op in old["entity_ops"]]
    if isinstance(old.get("origin"), dict):
        old["origin"] = _renamed(old["origin"], {new: name for name, new in _ORIGIN_KEYS_1.items()})
    return old
