"""Office relays, national side: issue, list and revoke a relay's credential, and remember which relay
carried each submission it pushed (with the phone's device id and submitter as the office saw them).

A relay's token is stored as its sha256, like a device's; it authenticates as a principal of kind
``relay`` that holds the ``relay`` role in the projects it was issued for and nothing elsewhere
(``server.auth``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models.relays import Relay, RelayProject
from server.db.queries import accounts as accounts_q
from server.db.queries import audit
from server.db.queries import relays as q
from server.db.transaction import transaction
from server.errors import ApiError, conflict, not_found
from server.passwords import new_token, token_hash

RELAYED_STATUSES = frozenset({"created", "updated", "duplicate", "conflict", "awaiting_attachments"})


@dataclass(frozen=True)
class IssuedRelay:
    """A freshly issued relay credential: the secret is shown once, only its hash is stored."""

    id: int
    name: str
    token: str
    project_ids: tuple[int, ...]


@dataclass(frozen=True)
class RelayInfo:
    """A relay as ``relays list`` shows it."""

    id: int
    name: str
    project_ids: tuple[int, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def issue_relay(session: Session, name: str, project_ids: Sequence[int], *, actor: str = "system") -> IssuedRelay:
    """Issue a relay credential for ``project_ids`` (404 for an unknown project, 409 for a name in use)."""
    if not project_ids:
        raise ApiError(400, "no_project", "A relay is issued for at least one project")
    token = new_token()
    try:
        with transaction(session):
            for project_id in project_ids:
                if accounts_q.get_project(session, project_id) is None:
                    raise not_found("project", project_id=project_id)
            relay_id: int = session.execute(
                insert(Relay).values(name=name, token_hash=token_hash(token), created_at=utcnow()).returning(Relay.id)
            ).scalar_one()
            wanted = sorted(set(project_ids))
            session.execute(insert(RelayProject), [{"relay_id": relay_id, "project_id": p} for p in wanted])
            for project_id in wanted:
                audit.record(session, actor, "relay.issue", project_id, f"relay:{relay_id}", {"name": name})
    except IntegrityError:
        raise conflict("relay_exists", f"A relay named {name!r} exists already", name=name) from None
    return IssuedRelay(relay_id, name, token, tuple(wanted))


def list_relays(session: Session) -> list[RelayInfo]:
    """Every relay with its projects."""
    with transaction(session):
        return [
            RelayInfo(r.id, r.name, projects, r.created_at, r.last_used_at, r.revoked_at)
            for r, projects in q.list_relays(session)
        ]


def revoke_relay(session: Session, name: str, *, actor: str = "system") -> RelayInfo:
    """Revoke a relay's credential (its next request is 401); revoking twice keeps the first time."""
    with transaction(session):
        relay = q.get_relay_by_name(session, name)
        if relay is None:
            raise not_found("relay", name=name)
        if relay.revoked_at is None:
            relay.revoked_at = utcnow()
            for project_id in q.relay_project_ids(session, relay.id):
                audit.record(session, actor, "relay.revoke", project_id, f"relay:{relay.id}", {"name": name})
        projects = q.relay_project_ids(session, relay.id)
        return RelayInfo(relay.id, relay.name, projects, relay.created_at, relay.last_used_at, relay.revoked_at)


def record_relayed_items(
    session: Session,
    *,
    project_id: int,
    relay_id: int,
    device_id: str,
    items: Sequence[Any],
    results: Sequence[Mapping[str, Any]],
) -> None:
    """Inside a push's transaction: note the relay that carried each stored submission item, and its origin."""
    rows = []
    for raw, result in zip(items, results, strict=True):
        if not isinstance(raw, dict) or result.get("status") not in RELAYED_STATUSES:
            continue
        if not isinstance(raw.get("instanceId"), str) or not isinstance(raw.get("formId"), str):
            continue
        origin = raw.get("origin") if isinstance(raw.get("origin"), dict) else {}
        submitter = origin.get("submitter") if isinstance(origin.get("submitter"), str) else None
        rows.append(
            {
                "project_id": project_id,
                "relay_id": relay_id,
                "xml_form_id": raw["formId"][:255],
                "instance_id": raw["instanceId"][:255],
                "device_id": device_id[:255],
                "submitter": submitter[:200] if submitter else None,
                "created_at": utcnow(),
            }
        )
    q.record_relayed(session, rows)


def enqueue_for_upstream(session: Session, project_id: int, version_id: int) -> None:
    """Office side, inside the transaction that stored a submission version: queue it for the relay.

    Writes a ``relay_outbox`` row only when the project is relayed (one ``INSERT ... SELECT`` that
    finds no link and inserts nothing on a server that relays nothing).
    """
    q.enqueue_version(session, project_id, version_id, utcnow())


def note_relay_use(session: Session, relay_id: int) -> bool:
    """Record that a relay just called (at most one write per ``LAST_USED_RESOLUTION``, its own transaction)."""
    from server.services.accounts import LAST_USED_RESOLUTION

    now = utcnow()
    with transaction(session):
        return q.touch_relay(session, relay_id, now, now - LAST_USED_RESOLUTION)
