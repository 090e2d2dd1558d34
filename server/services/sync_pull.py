"""The pull use case (``GET /v1/projects/{p}/sync/pull``, SYNC.md "Pull", research §8.9).

Serves change-log rows with ``seq`` above the cursor, in seq order. Seqs are allocated from the
``sync_clock`` row as the last statement of each writing transaction (``server.db.queries.sync``), so
seq order is commit order and a row that commits later always gets a higher seq: a pull never skips a
concurrently committed change. Rows are entity upserts and deletes (everyone in the project), published
form versions (logged by the forms area through ``log_change``) and the caller's own batch outcomes (one
change per pushed batch, counted as its number of items against the page limit).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server.auth import Principal
from server.db.queries import accounts as accounts_q
from server.db.queries import sync as q
from server.db.transaction import transaction
from server.errors import ApiError, not_found
from sync.batches import PROTOCOL
from sync.cursor import InvalidCursor, decode_cursor, encode_cursor

MAX_PULL_LIMIT = 500


def _weight(collection: str, data: Any) -> int:
    """How many items a change counts for in a page: a batch's outcomes count one per item."""
    if collection == "batch" and isinstance(data, dict) and isinstance(data.get("results"), list):
        return max(1, len(data["results"]))
    return 1


def pull(
    session: Session, *, project_id: int, principal: Principal, cursor: str | None, limit: int, key: bytes
) -> dict[str, Any]:
    """Changes after ``cursor`` (at most ``limit`` items), the next cursor and whether more are waiting."""
    after = 0
    if cursor:
        try:
            after = decode_cursor(cursor, key).seq
        except InvalidCursor as exc:
            raise ApiError(400, exc.code, str(exc)) from None
    limit = max(1, min(limit, MAX_PULL_LIMIT))
    if principal.is_admin and accounts_q.get_project(session, project_id) is None:
        raise not_found("project", project_id=project_id)  # members and devices always name a real one
    with transaction(session):
        rows = q.changes_since(session, project_id, after, principal.actor, limit + 1)
    # A page holds at most ``limit`` items: a batch's outcome change counts as its item count, so a
    # page stays as small on a 2G link as when each item was a change of its own (at least one change
    # per page, so a cursor always moves on).
    kept, weight = 0, 0
    for row in rows:
        row_weight = _weight(row.collection, row.data)
        if kept and weight + row_weight > limit:
            break
        kept, weight = kept + 1, weight + row_weight
        if weight >= limit:
            break
    has_more = len(rows) > kept
    rows = rows[:kept]
    last = rows[-1].seq if rows else after
    assert last is not None
    changes = [{"seq": r.seq, "collection": r.collection, "id": r.key, "op": r.op, "data": r.data} for r in rows]
    # The door dumps this page in camelCase (``server.api.sync_wire.PullOut``), ``data`` by collection.
    return {
        "protocol": PROTOCOL,
        "changes": changes,
        "next_cursor": encode_cursor(last, key),
        "has_more": has_more,
    }
