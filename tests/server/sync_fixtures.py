"""Helpers shared by the sync tests: a fresh project with an entity list, and entity op items."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

PROPERTIES = ("phone", "village", "members", "status")
LIST = "entrepreneurs"


def fresh_project(db: sessionmaker[Session], properties: tuple[str, ...] = PROPERTIES) -> int:
    """A new project with the ``entrepreneurs`` entity list (as a published form would declare it)."""
    from forms.schema import EntityDeclaration
    from server.services import accounts
    from server.services.entities import declare_entity_lists

    session = db()
    project = accounts.create_project(session, f"sync {secrets.token_hex(6)}")
    with session.begin():
        declare_entity_lists(
            session, project.id, [EntityDeclaration(list_name=LIST, properties={p: p for p in properties})]
        )
    session.close()
    return project.id


def entity_item(
    device: str,
    seq: int,
    entity_id: str,
    fields: dict[str, str],
    *,
    base_rev: str | None = None,
    hlc: int = 0,
    label: str | None = None,
    list_name: str = LIST,
) -> dict[str, Any]:
    """A pushed entity change of ``device``'s ``seq``-th op."""
    item: dict[str, Any] = {
        "type": "entity",
        "opId": f"{device}-{seq}",
        "dot": {"w": device, "s": seq},
        "entity": {"list": list_name, "id": entity_id},
        "baseRev": base_rev,
        "fields": dict(fields),
        "hlc": hlc,
    }
    if label is not None:
        item["label"] = label
    return item
