"""The SQL of an outbox write: ``INSERT INTO events ... SELECT ... WHERE`` a subscription wants the event.

Built once here and used by ``server.services.outbox.record_event`` and, as a CTE, by the
one-statement hot paths of OpenRosa and push (``server.db.queries.submissions``).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, Text, exists, literal, or_, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import Insert

from server.db.models.webhooks import COLLECTING_STATES, EVENT_KINDS, Event, WebhookSubscription

_EVENTS = cast(Table, Event.__table__)
_SUBSCRIPTIONS = cast(Table, WebhookSubscription.__table__)


def kind_pattern(kind: str) -> str:
    """The LIKE pattern that finds ``kind`` in a subscription's JSON list of kinds.

    The kinds are a fixed vocabulary of dotted words, so ``"kind"`` with its quotes appears in the
    list's JSON text exactly when the list holds it (the same test on SQLite's JSON text and on
    PostgreSQL's jsonb rendered as text).
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    return f'%"{kind}"%'


def wanted(project_id: Any, pattern: Any, form_id: Any) -> ColumnElement[bool]:
    """``EXISTS`` a collecting subscription of the project that names the kind (``pattern``) and accepts the form."""
    subs = _SUBSCRIPTIONS.c
    return exists().where(
        subs.project_id == project_id,
        # Plain parameters, not an expanding IN: the hot paths compile this once for psycopg.
        subs.state.in_([literal(state) for state in COLLECTING_STATES]),
        sql_cast(subs.events, Text).like(pattern),
        or_(subs.form_id.is_(None), subs.form_id == form_id),
    )


def event_insert(
    *,
    project_id: Any,
    kind: Any,
    pattern: Any,
    subject: Any,
    form_id: Any,
    payload: Any,
    created_at: Any,
) -> Insert:
    """``INSERT INTO events ... SELECT ... WHERE <a subscription wants it>``: the one shape of an outbox write.

    The arguments are SQL expressions (bind parameters, or columns of a CTE on the hot paths).
    """
    columns = ("project_id", "kind", "subject", "form_id", "payload", "created_at", "fanned_out")
    row = select(
        project_id,
        kind,
        subject,
        form_id,
        payload,
        created_at,
        literal(False),
    ).where(wanted(project_id, pattern, form_id))
    return _EVENTS.insert().from_select(columns, row)
