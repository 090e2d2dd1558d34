"""The push use case (``POST /v1/projects/{p}/sync/push``, SYNC.md "Push", research §8.5).

Flow: read the body within ``MAX_PUSH_BYTES`` (gzip decoded with a cap; a cut or unparseable body is
``400 incomplete_body`` and nothing is stored) → parse the envelope (``sync.batches``) → claim the
``Idempotency-Key`` by inserting the batch row with ``ON CONFLICT DO NOTHING`` **in the transaction that
processes it**, so a concurrent duplicate waits for it and then replays it (``decide_batch``: the stored
bytes, ``422`` for another body), and a worker that dies takes its claim with it → in that transaction:
advisory locks on every submission chain and then every touched entity, each in sorted order (no
deadlocks), then each item inside its own SAVEPOINT (one bad item never blocks the others), then the
response bytes stored on the batch row; the change-log clock is the last statement before commit. If
anything fails the transaction is rolled back, claim included, so a retry processes the batch again.

Submission items go through ``server.services.submissions.ingest_submission`` (the same store as the
OpenRosa door). JSON ``data`` (keyed by field path) is turned into OpenRosa XML
(:func:`submission_xml_from_json`) so both doors store the same thing: the original bytes are XML either
way, and the parser of the forms area reads them against the form version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import orjson
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from forms.errors import SubmissionError
from forms.submission import read_submission_header
from server import metrics
from server.auth import Principal
from server.db.base import utcnow
from server.db.queries import accounts as accounts_q
from server.db.queries import entities as eq
from server.db.queries import submissions as sq
from server.db.queries import sync as q
from server.db.transaction import transaction
from server.errors import ApiError
from server.json_input import ClientJsonError, JsonSyntaxError, parse_client_json
from server.services import entities as entity_service
from server.services import relays
from sync.batches import (
    MAX_ITEMS_PER_PUSH,
    PROTOCOL,
    PROTOCOL_1,
    EntityItem,
    KeyReused,
    MalformedBody,
    PushEnvelope,
    Replay,
    StoredBatch,
    SubmissionItem,
    TooManyItems,
    UnsupportedProtocol,
    body_fingerprint,
    decide_batch,
    decide_old_protocol,
    item_mismatch,
    old_batch_key,
    parse_push_envelope,
    parse_push_item,
)
from sync.entities import RelayedBase, relayed_bases
from sync.outcomes import UNPARSEABLE_ITEM, AwaitingAttachments, Conflict, Quarantined, Rejected

log = logging.getLogger("fieldsync.sync")

STALE_BATCH_AFTER = timedelta(minutes=5)  # a batch "in progress" this long had its worker die
SUBMISSIONS_UNAVAILABLE = "submissions_unavailable"
PROCESSING_ERROR = "processing_error"
DEADLOCK_RETRIES = 3


@dataclass(frozen=True)
class PushReply:
    """An HTTP answer of the push endpoint: status, exact body bytes, extra headers."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reply_bytes(obj: Any) -> bytes:
    """A batch's reply body (a few hundred results): orjson, the same compact sorted JSON as ``_json_bytes``."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _json_bytes(obj)


def error_reply(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> PushReply:
    """A protocol error: the usual error shape plus ``"protocol"``."""
    body = {"protocol": PROTOCOL, **ApiError(status, code, message, dict(details or {})).to_dict()}
    return PushReply(status, _json_bytes(body), dict(headers or {}))


def limits(max_bytes: int) -> dict[str, int]:
    """The limits a client must respect (stated in every 413; the error names them in camelCase on the wire)."""
    return {"max_bytes": max_bytes, "max_items": MAX_ITEMS_PER_PUSH}


class IncompleteBody(Exception):
    """The body was cut or does not decode: nothing is stored, the client retries."""


class BodyTooLarge(Exception):
    """The body is over the limit (compressed or once decompressed)."""


def decode_body(raw: bytes, content_encoding: str, max_bytes: int) -> Any:
    """Gunzip (capped: a small bomb cannot blow up memory) and parse the JSON of a push body."""
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        cap = max_bytes * 8
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = decompressor.decompress(raw, cap + 1)
        except zlib.error as exc:
            raise IncompleteBody(f"bad gzip data: {exc}") from None
        if len(data) > cap:
            raise BodyTooLarge()
        if not decompressor.eof:
            raise IncompleteBody("the gzip stream is truncated")
    elif encoding in ("", "identity"):
        data = raw
    else:
        raise IncompleteBody(f"unsupported Content-Encoding {content_encoding!r}")
    try:
        return data, parse_client_json(data)
    except JsonSyntaxError as exc:
        raise IncompleteBody(f"the body is not complete JSON: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Submission items


def _element(name: str, value: Any) -> str:
    if isinstance(value, Mapping):
        return f"<{name}>{''.join(_element(k, v) for k, v in value.items())}</{name}>"
    if isinstance(value, list):
        return "".join(_element(name, v) for v in value)
    text = "" if value is None else (("true" if value else "false") if isinstance(value, bool) else str(value))
    return f"<{name}>{escape(text)}</{name}>"


def _nest(data: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in data.items():
        parts = [p for p in str(path).split("/") if p]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts:
            node[parts[-1]] = _nest(value) if isinstance(value, Mapping) else value
    return tree


def submission_xml_from_json(item: SubmissionItem, root: str = "data") -> bytes:
    """OpenRosa XML for a JSON submission keyed by field path (``group/field``; a repeat is a list of objects)."""
    assert isinstance(item.data, Mapping)
    tree = _nest(item.data)
    meta = dict(tree.pop("meta", {}) or {})
    meta["instanceID"] = item.instance_id
    if item.deprecated_id:
        meta["deprecatedID"] = item.deprecated_id
    body = "".join(_element(k, v) for k, v in tree.items()) + _element("meta", meta)
    xml = f"<{root} id={quoteattr(item.form_id)} version={quoteattr(item.form_version)}>{body}</{root}>"
    return xml.encode("utf-8")


def _submit(
    session: Session, ctx: PushContext, item: SubmissionItem, bases: Mapping[str, RelayedBase] | None = None
) -> Any:
    from server.services import submissions

    xml = item.data.encode("utf-8") if isinstance(item.data, str) else submission_xml_from_json(item)
    return submissions.ingest_submission(
        session,
        project_id=ctx.project_id,
        xml=xml,
        files={},
        principal=ctx.principal,
        device_id=ctx.device_id,
        source="push",
        declared_attachments=item.attachments,
        nested=True,
        relayed_bases=bases,
    )


# ---------------------------------------------------------------------------------------------------
# Items


@dataclass
class PushContext:
    """Who pushes into which project."""

    project_id: int
    principal: Principal
    device_id: str
    # A released held item held again stays the one row it was (its raw may have been translated from
    # fieldsync/1, which would give it another fingerprint).
    held_fingerprint: str | None = None


def item_fingerprint(raw: Any) -> str:
    """The sha256 of an item's canonical JSON (held items are kept once per fingerprint)."""
    return hashlib.sha256(_json_bytes(raw)).hexdigest()


def _item_key(raw: Any) -> str:
    if isinstance(raw, dict):
        for key in ("instanceId", "opId"):
            if isinstance(raw.get(key), str):
                return str(raw[key])[:200]
    return ""


def _kind(raw: Any) -> str:
    if isinstance(raw, dict):
        if raw.get("type") in ("submission", "entity"):
            return str(raw["type"])
        if "instanceId" in raw:
            return "submission"
        if "opId" in raw:
            return "entity"
    return "unknown"


def hold(session: Session, ctx: PushContext, raw: Any, outcome: Quarantined | Rejected) -> None:
    """Keep a raw item the server could not use (quarantined) or refused (rejected): never lost."""
    q.hold_item(
        session,
        {
            "project_id": ctx.project_id,
            "fingerprint": ctx.held_fingerprint or item_fingerprint(raw),
            "kind": _kind(raw),
            "item_key": _item_key(raw),
            "raw": raw,
            "outcome": outcome.status,
            "reason": outcome.reason[:100],
            "detail": outcome.detail,
            "status": "open",
            "device_id": ctx.device_id[:200],
            "actor": ctx.principal.actor,
            "created_at": utcnow(),
        },
    )


def _result(index: int, raw: Any, outcome: Any, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"index": index, "id": _item_key(raw), "status": outcome.status}
    metrics.count_sync_item(_kind(raw), outcome.status, outcome.kind if isinstance(outcome, Conflict) else None)
    if isinstance(outcome, Conflict):
        result["conflict"] = {"kind": outcome.kind, "fields": list(outcome.fields)}
    if isinstance(outcome, AwaitingAttachments):
        result["missing"] = list(outcome.missing)
        result["accepted"] = outcome.accepted.status  # created / updated / duplicate
    if isinstance(outcome, Quarantined | Rejected):
        result["reason"] = outcome.reason
        if outcome.detail:
            result["detail"] = outcome.detail
    result.update(extra)
    return result


def process_item(session: Session, ctx: PushContext, index: int, raw: Any) -> dict[str, Any]:
    """Apply one pushed item (inside the caller's savepoint) and return its result."""
    parsed = parse_push_item(raw, index=index, device_id=ctx.device_id)
    if isinstance(parsed, Rejected):
        hold(session, ctx, raw, parsed)
        return _result(index, raw, parsed)
    if isinstance(parsed, EntityItem):
        return _process_entity(session, ctx, index, raw, parsed)
    return _process_submission(session, ctx, index, raw, parsed)


def _process_entity(session: Session, ctx: PushContext, index: int, raw: Any, item: EntityItem) -> dict[str, Any]:
    entity_list = eq.get_list(session, ctx.project_id, item.list_name)
    if entity_list is None:
        outcome = Quarantined(entity_service.UNKNOWN_ENTITY_LIST, f"no entity list {item.list_name!r} in this project")
        hold(session, ctx, raw, outcome)
        return _result(index, raw, outcome)
    if ctx.principal.kind == "relay" and isinstance(raw, dict) and "context" in raw:
        # An office relay sends the context the office gave the op (sync.entities.RelayedBase), not a rev.
        relayed = relayed_bases(
            [{"opId": item.op_id, "context": raw["context"], "unknownBase": raw.get("unknownBase", False)}]
        )
        if relayed is None:
            malformed = Rejected(UNPARSEABLE_ITEM, "context is not {max: {writer: n}, extra: [[writer, seq]]}")
            hold(session, ctx, raw, malformed)
            return _result(index, raw, malformed)
        context, unknown_base = relayed[item.op_id].context, relayed[item.op_id].unknown_base
    else:
        context, unknown_base = entity_service.context_for_base_rev(
            session, entity_list.id, item.entity_id, item.base_rev
        )
    op = item.to_op(context, unknown_base=unknown_base)
    applied = entity_service.apply_op(session, entity_list, item.entity_id, op, actor=ctx.principal.actor)
    if isinstance(applied.outcome, Quarantined | Rejected):
        hold(session, ctx, raw, applied.outcome)
        return _result(index, raw, applied.outcome)
    extra: dict[str, Any] = {}
    if applied.entity is not None:
        extra["entity"] = {
            "list": item.list_name,
            "id": item.entity_id,
            "version": applied.entity.version,
            "rev": applied.entity.rev,
        }
    return _result(index, raw, applied.outcome, **extra)


def _xml_mismatch(item: SubmissionItem) -> Rejected | None:
    """An XML item whose stated ids are not its XML's (JSON items are built from the stated ids)."""
    if not isinstance(item.data, str):
        return None
    try:
        header = read_submission_header(item.data.encode("utf-8"))
    except SubmissionError:
        return None  # ingestion refuses it with the parser's own words
    return item_mismatch(item, header)


def _process_submission(
    session: Session, ctx: PushContext, index: int, raw: Any, item: SubmissionItem
) -> dict[str, Any]:
    # The bulk path only stores items whose parsed XML agrees with their fields; this is the check of
    # the one-by-one path, before anything is written.
    mismatch = _xml_mismatch(item)
    if mismatch is not None:
        hold(session, ctx, raw, mismatch)
        return _result(index, raw, mismatch)
    bases = None
    if ctx.principal.kind == "relay" and isinstance(raw, dict) and "entityOps" in raw:
        # An office relay names what its phones' entity updates had seen there (sync.entities.RelayedBase).
        bases = relayed_bases(raw["entityOps"])
        if bases is None:
            malformed = Rejected(UNPARSEABLE_ITEM, "entityOps is not a list of {opId, context, unknownBase}")
            hold(session, ctx, raw, malformed)
            return _result(index, raw, malformed)
    try:
        ingested = _submit(session, ctx, item, bases)
    except NotImplementedError:
        # The submissions service is not wired yet: keep the item raw; a release re-processes it later.
        outcome = Quarantined(SUBMISSIONS_UNAVAILABLE, "submission ingestion is not available on this server yet")
        hold(session, ctx, raw, outcome)
        return _result(index, raw, outcome)
    outcome = ingested.outcome
    if isinstance(outcome, Quarantined | Rejected):
        hold(session, ctx, raw, outcome)
    return _result(index, raw, outcome)


def _process_submissions_bulk(
    session: Session, ctx: PushContext, items: tuple[object, ...]
) -> dict[int, dict[str, Any]]:
    """Store the batch's plain new submissions in a few statements; the results of the items it stored.

    Every other item (entities, duplicates, edits, anything odd) is left to ``_process_one``.
    """
    from server.services.submission_batches import BulkItem, ingest_submissions_bulk

    indexes: list[int] = []
    bulk: list[BulkItem] = []
    for index, raw in enumerate(items):
        if _kind(raw) != "submission":
            continue
        parsed = parse_push_item(raw, index=index, device_id=ctx.device_id)
        # An edit is never a plain new submission; and the bulk path compares only the routing ids with
        # the parsed XML, so an item stating a deprecatedId goes one by one, where it is checked.
        if not isinstance(parsed, SubmissionItem) or parsed.deprecated_id is not None:
            continue
        try:
            xml = parsed.data.encode("utf-8") if isinstance(parsed.data, str) else submission_xml_from_json(parsed)
        except Exception:  # the one-by-one path reports it (quarantined, processing_error)
            continue
        indexes.append(index)
        bulk.append(BulkItem(xml, parsed.attachments, parsed.form_id, parsed.form_version, parsed.instance_id))
    if not bulk:
        return {}
    ingested = ingest_submissions_bulk(
        session, project_id=ctx.project_id, items=bulk, principal=ctx.principal, device_id=ctx.device_id
    )
    return {
        index: _result(index, items[index], result.outcome)
        for index, result in zip(indexes, ingested, strict=True)
        if result is not None
    }


def _entity_lock_keys(session: Session, ctx: PushContext, items: tuple[object, ...]) -> list[str]:
    keys: list[str] = []
    list_ids: dict[str, int | None] = {}
    for index, raw in enumerate(items):
        if _kind(raw) != "entity":
            continue  # only entity items take entity locks (and submissions need no second parse here)
        parsed = parse_push_item(raw, index=index, device_id=ctx.device_id)
        if isinstance(parsed, EntityItem):
            if parsed.list_name not in list_ids:
                found = eq.get_list(session, ctx.project_id, parsed.list_name)
                list_ids[parsed.list_name] = None if found is None else found.id
            list_id = list_ids[parsed.list_name]
            if list_id is not None:
                keys.append(entity_service.entity_lock_key(list_id, parsed.entity_id))
    return keys


def _process_one(session: Session, ctx: PushContext, index: int, raw: Any, key: str) -> dict[str, Any]:
    try:
        with session.begin_nested():
            return process_item(session, ctx, index, raw)
    except OperationalError:
        raise  # lock trouble: retry the whole batch
    except Exception as exc:  # one broken item must never block the others (invariant 7)
        log.exception("push item %s of batch %s failed", index, key)
        outcome = Quarantined(PROCESSING_ERROR, type(exc).__name__)
        with session.begin_nested():
            hold(session, ctx, raw, outcome)
        return _result(index, raw, outcome)


def _submission_chain_keys(ctx: PushContext, items: tuple[object, ...]) -> list[int]:
    """The edit-chain lock keys every submission item of the batch names (``instanceId``, ``deprecatedId``)."""
    keys = []
    for raw in items:
        if isinstance(raw, dict) and _kind(raw) == "submission" and isinstance(raw.get("formId"), str):
            for name in ("instanceId", "deprecatedId"):
                value = raw.get(name)
                if isinstance(value, str) and value:
                    keys.append(sq.chain_lock_key(ctx.project_id, raw["formId"], value))
    return keys


def _process_batch(session: Session, ctx: PushContext, envelope: PushEnvelope, key: str, fingerprint: str) -> PushReply:
    with transaction(session):
        # The claim is part of this transaction, not committed before it: a concurrent resend of the same
        # key waits on the uncommitted row (PostgreSQL's unique index; SQLite's single writer) and then
        # replays the stored answer, and if this worker dies its connection's end rolls the claim back,
        # so the next resend takes the batch over at once (it was 409 for 5 minutes: issue 15 row 7).
        if not q.claim_batch(session, ctx.project_id, key, fingerprint, ctx.principal.actor, utcnow()):
            return _existing_batch(session, ctx.project_id, key, fingerprint)
        # Lock order, everywhere: submission chains, then entities (the OpenRosa door takes a chain
        # lock, then the entities its submission changes). Every chain any submission item names is
        # locked first, in one statement in sorted order, so later per-item locks are re-entrant and
        # batches of the same ids in any order queue instead of deadlocking (issue 15 row 10). Then every
        # entity the batch's entity items touch is locked up front, in sorted order. The merge does not
        # depend on the order in which items are applied; results are reported in item order.
        sq.lock_chains_in_order(session, _submission_chain_keys(ctx, envelope.items))
        is_entity = [_kind(raw) == "entity" for raw in envelope.items]
        results = _process_submissions_bulk(session, ctx, envelope.items)
        for index, raw in enumerate(envelope.items):
            if not is_entity[index] and index not in results:
                results[index] = _process_one(session, ctx, index, raw, key)
        q.lock_keys(session, _entity_lock_keys(session, ctx, envelope.items))
        for index, raw in enumerate(envelope.items):
            if is_entity[index]:
                results[index] = _process_one(session, ctx, index, raw, key)
        ordered = [results[index] for index in range(len(envelope.items))]
        if ctx.principal.kind == "relay":
            # Which office carried each stored submission, and the phone it came from (issue 22).
            relays.record_relayed_items(
                session,
                project_id=ctx.project_id,
                relay_id=ctx.principal.id,
                device_id=ctx.device_id,
                items=envelope.items,
                results=ordered,
            )
        # One pull change per batch carries every item's outcome (SYNC.md "Pull": the device's item
        # outcomes), so a device whose push reply was lost learns them; one row, not one per item.
        # Numbered now, as the last change-log write of this transaction: the clock stays locked from
        # here to the commit, a few milliseconds.
        q.log_change_numbered(
            session,
            ctx.project_id,
            "batch",
            key,
            "upsert",
            {"batch_id": key, "device_id": ctx.device_id, "results": ordered},
            audience=ctx.principal.actor,
        )
        body = _reply_bytes(
            {"protocol": PROTOCOL, "batchId": key, "serverTime": utcnow().isoformat(), "results": ordered}
        )
        q.finish_batch(session, ctx.project_id, key, body)
    return PushReply(200, body)


def _existing_batch(session: Session, project_id: int, key: str, fingerprint: str) -> PushReply:
    """The answer for a key already stored: its stored bytes, 422 for another body, 409 while in progress."""
    row = q.get_batch(session, project_id, key)
    if row is None:  # cannot happen once the claim waited for the other transaction; ask for a retry
        return error_reply(409, "batch_in_progress", "Retry the batch", headers={"Retry-After": "1"})
    stored = StoredBatch(
        key,
        row.body_sha256,
        "done" if row.state == "done" else "in_progress",
        {"raw": True} if row.state == "done" else None,
    )
    decision = decide_batch(key, fingerprint, stored)
    if isinstance(decision, Replay):
        assert row.response is not None
        return PushReply(200, row.response)
    if isinstance(decision, KeyReused):
        return error_reply(422, decision.code, "This Idempotency-Key was used for another body")
    # A committed "in progress" row: written by a server before this version, whose worker died.
    if not q.take_over_stale_batch(session, row.id, utcnow() - STALE_BATCH_AFTER, utcnow()):
        return error_reply(
            409, decision.code, "This batch is being processed", headers={"Retry-After": str(decision.retry_after_s)}
        )
    q.release_batch(session, project_id, key)
    return error_reply(409, decision.code, "This batch was abandoned; send it again", headers={"Retry-After": "0"})


def _replay_protocol_1(
    session: Session, project_id: int, body: Mapping[str, Any], idempotency_key: str | None, fingerprint: str
) -> PushReply | None:
    """The stored reply of a fieldsync/1 batch resent byte for byte after the upgrade; ``None``: refuse it."""
    key = old_batch_key(body, idempotency_key)
    if key is None or len(key) > 200:
        return None
    with transaction(session):
        row = q.get_batch(session, project_id, key)
        stored = (
            None
            if row is None or row.response is None
            else StoredBatch(key, row.body_sha256, "done" if row.state == "done" else "in_progress", {"raw": True})
        )
        if isinstance(decide_old_protocol(fingerprint, stored), Replay):
            assert row is not None and row.response is not None
            return PushReply(200, row.response)  # the stored bytes, in the shape they were answered in
    return None


def push(
    session: Session,
    *,
    project_id: int,
    principal: Principal,
    raw_body: bytes,
    content_encoding: str,
    idempotency_key: str | None,
    max_bytes: int,
) -> PushReply:
    """Process one push request end to end and return the exact HTTP answer."""
    if len(raw_body) > max_bytes:
        return error_reply(413, "too_large", "The push body is over the limit", limits(max_bytes))
    try:
        decoded, body = decode_body(raw_body, content_encoding, max_bytes)
    except IncompleteBody as exc:
        return error_reply(400, "incomplete_body", str(exc))
    except ClientJsonError as exc:  # complete, but nested too deep or not Unicode text
        return error_reply(400, "malformed_body", f"The body is not acceptable JSON: {exc}")
    except BodyTooLarge:
        return error_reply(413, "too_large", "The decompressed push body is over the limit", limits(max_bytes))
    envelope = parse_push_envelope(body)
    if isinstance(envelope, TooManyItems):
        return error_reply(413, envelope.code, f"At most {envelope.max_items} items per push", limits(max_bytes))
    if isinstance(envelope, UnsupportedProtocol):
        if envelope.protocol == PROTOCOL_1 and isinstance(body, dict):
            replayed = _replay_protocol_1(session, project_id, body, idempotency_key, body_fingerprint(decoded))
            if replayed is not None:
                return replayed
        return error_reply(
            426,
            envelope.code,
            f"Unsupported protocol {envelope.protocol!r}: this server speaks {PROTOCOL} (the same protocol with "
            "camelCase keys)",
            {"supported": [PROTOCOL]},
        )
    if isinstance(envelope, MalformedBody):
        return error_reply(400, envelope.code, envelope.detail)
    key = idempotency_key or envelope.batch_id
    if idempotency_key and idempotency_key != envelope.batch_id:
        return error_reply(400, "malformed_body", "Idempotency-Key and batchId differ")
    if len(key) > 200:
        return error_reply(400, "malformed_body", "The batch id is longer than 200 characters")
    if principal.is_admin and accounts_q.get_project(session, project_id) is None:
        # Members and devices belong to an existing project; an admin may name any id (the batch row's
        # foreign key refused it: a 500).
        return error_reply(404, "not_found", "project not found", {"project_id": project_id})
    fingerprint = body_fingerprint(decoded)
    ctx = PushContext(project_id, principal, envelope.device_id)
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return _process_batch(session, ctx, envelope, key, fingerprint)
        except OperationalError:
            session.rollback()
            log.warning("push batch %s: lock or serialisation failure (attempt %s)", key, attempt + 1)
        except BaseException:
            session.rollback()  # the claim goes with the transaction: a retry processes the batch again
            raise
    return error_reply(503, "busy", "The server is busy; retry the batch", headers={"Retry-After": "2"})
