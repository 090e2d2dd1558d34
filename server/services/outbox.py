"""The transactional outbox: ``record_event`` adds an ``events`` row to the transaction of the change it describes.

Every service where a change commits calls ``record_event`` (the one-statement hot paths of OpenRosa
and push embed the same ``INSERT ... SELECT`` as a CTE of their statement, see
``server.db.queries.outbox``): the event then exists if and only if the change committed. The row is
written only when the project has a subscription (active or paused) that wants this kind of event for
this form: a project without webhooks pays one indexed ``EXISTS`` probe inside a statement, and on
the hot paths not even an extra round trip.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, Text, bindparam
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.webhooks import EVENT_KINDS, Event
from server.db.queries.outbox import event_insert, kind_pattern

__all__ = ["EVENT_KINDS", "created_payload", "record_event"]

_EVENTS = cast(Table, Event.__table__)


def _param(column: str, name: str | None = None) -> Any:
    return bindparam(name or column, type_=_EVENTS.c[column].type)


# Built once: every outbox write of every service runs this one statement.
_INSERT = event_insert(
    project_id=_param("project_id"),
    kind=_param("kind"),
    pattern=bindparam("pattern", type_=Text()),
    subject=_param("subject"),
    form_id=_param("form_id"),
    payload=_param("payload"),
    created_at=_param("created_at"),
)


def record_event(
    session: Session,
    project_id: int,
    kind: str,
    subject: str,
    payload: dict[str, Any],
    *,
    form_id: str | None = None,
) -> None:
    """Add the event ``kind`` about ``subject`` to the caller's transaction, if a subscription wants it.

    ``payload`` is what the dispatcher needs to render the record later (ids of immutable rows, or a
    snapshot of a mutable one); ``form_id`` is the XForm id, matched against subscriptions' form filter.
    """
    session.execute(
        _INSERT,
        {
            "project_id": project_id,
            "kind": kind,
            "pattern": kind_pattern(kind),
            "subject": subject,
            "form_id": form_id,
            "payload": payload,
            "created_at": utcnow(),
        },
    )


def created_payload(submission_id: int, version_id: int, instance_id: str, form_version: str) -> dict[str, Any]:
    """The payload of a submission version's event (the hot paths build the same object in SQL)."""
    return {
        "submission_id": submission_id,
        "version_id": version_id,
        "instance_id": instance_id,
        "form_version": form_version,
    }
