"""Held items: list quarantined and refused payloads, release one (re-processed through the push path,
e.g. once its form version exists) or discard it (audited). Nothing held is ever deleted."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server.auth import Principal
from server.db.base import utcnow
from server.db.models.sync import HeldItem
from server.db.queries import audit
from server.db.queries import sync as q
from server.db.transaction import transaction
from server.errors import conflict, not_found
from server.services import sync_push
from sync.batches import item_from_protocol_1


def held_item_json(row: HeldItem) -> dict[str, Any]:
    """The wire form of a held item."""
    return {
        "id": row.id,
        "kind": row.kind,
        "item_id": row.item_key,
        "outcome": row.outcome,
        "reason": row.reason,
        "detail": row.detail,
        "status": row.status,
        "device_id": row.device_id,
        "actor": row.actor,
        "created_at": row.created_at.isoformat(),
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "raw": row.raw,
    }


def list_held(
    session: Session, project_id: int, *, status: str | None, outcome: str | None, limit: int, after_id: int
) -> list[dict[str, Any]]:
    """Held items of a project, oldest first."""
    return [held_item_json(r) for r in q.list_held_items(session, project_id, status, outcome, limit, after_id)]


def held_page(
    session: Session, project_id: int, *, status: str | None, outcome: str | None, limit: int, after_id: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of ``list_held`` and how many held items the filters keep in all."""
    rows = list_held(session, project_id, status=status, outcome=outcome, limit=limit, after_id=after_id)
    return rows, q.count_held_items(session, project_id, status, outcome)


def held_item(session: Session, project_id: int, item_id: int) -> dict[str, Any]:
    """One held item with its raw payload (``404`` when the project has none with this id)."""
    row = q.get_held_item(session, project_id, item_id)
    if row is None:
        raise not_found("quarantined item", id=item_id)
    return held_item_json(row)


def _open_item(session: Session, project_id: int, item_id: int) -> HeldItem:
    row = q.get_held_item(session, project_id, item_id)
    if row is None:
        raise not_found("quarantined item", id=item_id)
    if row.status != "open":
        raise conflict("already_decided", f"This item was already {row.status}", status=row.status)
    return row


def release(session: Session, project_id: int, item_id: int, principal: Principal) -> dict[str, Any]:
    """Re-process a held item through the push path; it is released unless it is held again.

    An item held before the wire became camelCase (fieldsync/2) was stored raw in fieldsync/1's
    snake_case: it is read through ``item_from_protocol_1`` (the stored raw is shown as it was).
    """
    with transaction(session):
        row = _open_item(session, project_id, item_id)
        ctx = sync_push.PushContext(project_id, principal, row.device_id, held_fingerprint=row.fingerprint)
        with session.begin_nested():
            result = sync_push.process_item(session, ctx, 0, item_from_protocol_1(row.raw))
        if result["status"] not in ("quarantined", "rejected"):
            row.status, row.decided_by, row.decided_at = "released", principal.actor, utcnow()
        audit.record(session, principal.actor, "quarantine.release", project_id, f"held:{item_id}", {"result": result})
        return {"item": held_item_json(row), "result": result}


def discard(session: Session, project_id: int, item_id: int, principal: Principal) -> dict[str, Any]:
    """Mark a held item discarded (kept, audited, never re-processed)."""
    with transaction(session):
        row = _open_item(session, project_id, item_id)
        row.status, row.decided_by, row.decided_at = "discarded", principal.actor, utcnow()
        audit.record(
            session, principal.actor, "quarantine.discard", project_id, f"held:{item_id}", {"reason": row.reason}
        )
        return held_item_json(row)
