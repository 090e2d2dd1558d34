"""Role matrix rows for the sync area: push, pull, blobs, tus uploads, entities, conflicts, quarantine."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.role_matrix import Case, statuses

SYNCERS = ("admin", "manager", "coach", "device")
READERS = ("admin", "manager", "coach", "analyst", "device")
MANAGERS = ("admin", "manager")
EVERYONE = ("anonymous", "admin", "manager", "coach", "analyst", "outsider", "device")
ABC_SHA = hashlib.sha256(b"abc").hexdigest()


def with_entity(app: Flask, personas: Personas) -> dict[str, Any]:
    """The list ``entrepreneurs`` with one entity ``e1`` in the personas' project."""
    from forms.schema import EntityDeclaration
    from server.db.queries import entities as eq
    from server.db.transaction import transaction
    from server.services import entities
    from server.store import get_store
    from sync.entities import EMPTY_CONTEXT, Dot, EntityOp

    with app.app_context():
        session = get_store().sessions()
        with transaction(session):
            declared = EntityDeclaration(list_name="entrepreneurs", properties={"phone": "phone"})
            entities.declare_entity_lists(session, personas.project_id, [declared])
            entity_list = eq.get_list(session, personas.project_id, "entrepreneurs")
            assert entity_list is not None
            op = EntityOp("op-1", Dot("devA", 1), EMPTY_CONTEXT, {"phone": "1"}, 0)
            entities.apply_op(session, entity_list, "e1", op, actor="test")
        session.close()
    return {}


def with_upload(app: Flask, personas: Personas) -> dict[str, Any]:
    """An open upload of the 3 bytes ``abc``."""
    from server.services import uploads
    from server.store import get_store

    with app.app_context():
        store = get_store()
        state = uploads.create_upload(
            store.sessions(),
            store.storage_dir,
            project_id=personas.project_id,
            length=3,
            sha256=ABC_SHA,
            content_type="",
            actor="test",
            max_size=1000,
        )
    return {"upload": state.id}


def with_held_item(app: Flask, personas: Personas) -> dict[str, Any]:
    """A rejected (unparseable) pushed item kept for review."""
    from sqlalchemy import select

    from server.auth import Principal
    from server.db.models.sync import HeldItem
    from server.db.transaction import transaction
    from server.services import sync_push
    from server.store import get_store
    from sync.outcomes import Rejected

    with app.app_context():
        session = get_store().sessions()
        ctx = sync_push.PushContext(personas.project_id, Principal("user", 0, "test"), "devA")
        with transaction(session):
            sync_push.hold(session, ctx, {"type": "entity"}, Rejected("unparseable_item", "test"))
        with transaction(session):
            held = session.scalars(select(HeldItem).where(HeldItem.project_id == personas.project_id)).first()
            assert held is not None
            held_id = held.id
        session.close()
    return {"held": held_id}


PUSH_BODY = {"protocol": "fieldsync/2", "deviceId": "d", "batchId": "batch-{persona}", "items": []}
UPLOAD_META = f"sha256 {base64.b64encode(ABC_SHA.encode()).decode()}"

CASES = [
    Case(
        "POST",
        "/v1/projects/{pid}/sync/push",
        "/v1/projects/<int:project_id>/sync/push",
        statuses(200, allowed=SYNCERS),
        json=PUSH_BODY,
    ),
    Case(
        "GET", "/v1/projects/{pid}/sync/pull", "/v1/projects/<int:project_id>/sync/pull", statuses(200, allowed=SYNCERS)
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/blobs/missing",
        "/v1/projects/<int:project_id>/blobs/missing",
        statuses(200, allowed=SYNCERS),
        json={"sha256": [ABC_SHA]},
    ),
    Case("OPTIONS", "/v1/uploads", "/v1/uploads", {p: 204 for p in EVERYONE}),
    Case(
        "POST",
        "/v1/uploads?project={pid}",
        "/v1/uploads",
        statuses(201, allowed=SYNCERS),
        kwargs={"environ_base": {"HTTP_UPLOAD_LENGTH": "3", "HTTP_UPLOAD_METADATA": UPLOAD_META}},
    ),
    Case(
        "HEAD", "/v1/uploads/{upload}", "/v1/uploads/<upload_id>", statuses(200, allowed=SYNCERS), setup="with_upload"
    ),
    Case(
        "PATCH",
        "/v1/uploads/{upload}",
        "/v1/uploads/<upload_id>",
        statuses(204, allowed=SYNCERS),
        setup="with_upload",
        kwargs={
            "data": b"abc",
            "content_type": "application/offset+octet-stream",
            "environ_base": {"HTTP_UPLOAD_OFFSET": "0"},
        },
    ),
    Case(
        "DELETE",
        "/v1/uploads/{upload}",
        "/v1/uploads/<upload_id>",
        statuses(204, allowed=SYNCERS),
        setup="with_upload",
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/entities/entrepreneurs",
        "/v1/projects/<int:project_id>/entities/<list_name>",
        statuses(200, allowed=READERS),
        setup="with_entity",
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/entities/entrepreneurs/e1",
        "/v1/projects/<int:project_id>/entities/<list_name>/<entity_id>",
        statuses(200, allowed=READERS),
        setup="with_entity",
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/entities/entrepreneurs/e1/resolve",
        "/v1/projects/<int:project_id>/entities/<list_name>/<entity_id>/resolve",
        statuses(200, allowed=MANAGERS),
        setup="with_entity",
        json={"fields": {"phone": "2"}},
    ),
    Case(
        "DELETE",
        "/v1/projects/{pid}/entities/entrepreneurs/e1",
        "/v1/projects/<int:project_id>/entities/<list_name>/<entity_id>",
        statuses(200, allowed=MANAGERS),
        setup="with_entity",
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/entities/entrepreneurs/e1/restore",
        "/v1/projects/<int:project_id>/entities/<list_name>/<entity_id>/restore",
        statuses(200, allowed=MANAGERS),
        setup="with_entity",
    ),
    Case(
        "GET", "/v1/projects/{pid}/conflicts", "/v1/projects/<int:project_id>/conflicts", statuses(200, allowed=READERS)
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/quarantine",
        "/v1/projects/<int:project_id>/quarantine",
        statuses(200, allowed=MANAGERS),
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/quarantine/{held}",
        "/v1/projects/<int:project_id>/quarantine/<int:item_id>",
        statuses(200, allowed=MANAGERS),
        setup="with_held_item",
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/quarantine/{held}/release",
        "/v1/projects/<int:project_id>/quarantine/<int:item_id>/release",
        statuses(200, allowed=MANAGERS),
        setup="with_held_item",
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/quarantine/{held}/discard",
        "/v1/projects/<int:project_id>/quarantine/<int:item_id>/discard",
        statuses(200, allowed=MANAGERS),
        setup="with_held_item",
    ),
]
