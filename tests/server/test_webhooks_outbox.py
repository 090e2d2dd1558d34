"""The transactional outbox: an event exists if and only if the change it describes committed.

Rules:
- O1 every kind of change writes exactly one event, in the change's own transaction, when a subscription
  of the project wants that kind (OpenRosa/one-by-one ingest, its PostgreSQL one-statement path, and the
  push bulk path alike).
- O2 nothing is written for a project without a subscription, for a kind nobody asked for, or for a form
  outside a subscription's form filter (the hot path pays no write).
- O3 (property) over any sequence of changes, some of which fail after their event was written: the
  rolled-back ones leave no event, every committed one exactly one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.auth import Principal
from server.db.models.webhooks import EVENT_KINDS, Event
from server.services import submissions as svc
from server.services import webhooks as hooks
from server.services.submission_batches import BulkItem, ingest_submissions_bulk
from server.store import get_store
from sync.outcomes import Created
from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.fixtures_forms import publish_form
from tests.server.sync_fixtures import LIST, entity_item, fresh_project
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission


def subscribe(app: Flask, project_id: int, events: tuple[str, ...] = EVENT_KINDS, **extra: Any) -> int:
    """Subscribe a loopback URL of ``project_id`` to ``events``; return the subscription id."""
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    with app.app_context():
        session = get_store().sessions()
        try:
            view = hooks.create_subscription(
                session, project_id, {"url": "http://127.0.0.1:9/hook", "events": list(events), **extra}, actor="test"
            )
            return view.subscription.id
        finally:
            session.close()


def events_of(session: Session, project_id: int) -> list[tuple[str, str]]:
    """The (kind, subject) of every event of a project, in id order."""
    session.commit()
    rows = session.execute(select(Event.kind, Event.subject).where(Event.project_id == project_id).order_by(Event.id))
    found = [(str(k), str(s)) for k, s in rows]
    session.commit()
    return found


@pytest.fixture
def photo(app: Flask, personas: Personas) -> Iterator[tuple[Session, Principal]]:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    with app.app_context():
        session = get_store().sessions()
        principal = Principal("device", personas.device.id, "test phone", project_id=personas.project_id, role="coach")
        yield session, principal
        session.close()


def _ingest(session: Session, principal: Principal, xml: bytes) -> svc.IngestResult:
    return svc.ingest_submission(
        session,
        project_id=principal.project_id or 0,
        xml=xml,
        files={},
        principal=principal,
        device_id="dev-1",
        source="openrosa",
    )


def _review(session: Session, principal: Principal, instance_id: str) -> None:
    svc.review_submission(
        session,
        project_id=principal.project_id or 0,
        xml_form_id="photo_visit",
        instance_id=instance_id,
        review_state="approved",
        comment="ok",
        principal=principal,
    )


def _deleted(session: Session, principal: Principal, instance_id: str, *, deleted: bool) -> None:
    change = svc.delete_submission if deleted else svc.restore_submission
    change(
        session,
        project_id=principal.project_id or 0,
        xml_form_id="photo_visit",
        instance_id=instance_id,
        principal=principal,
    )


def test_every_submission_change_writes_one_event(
    app: Flask, photo: tuple[Session, Principal], personas: Personas
) -> None:
    session, principal = photo
    subscribe(app, personas.project_id)
    assert _ingest(session, principal, photo_submission("uuid:o1", [])).submission_id is not None
    _ingest(session, principal, photo_submission("uuid:o1", []))  # a retry: a duplicate changes nothing
    _ingest(session, principal, photo_submission("uuid:o1b", [], site="Tiznit", deprecated_id="uuid:o1"))
    _review(session, principal, "uuid:o1b")
    _deleted(session, principal, "uuid:o1b", deleted=True)
    _deleted(session, principal, "uuid:o1b", deleted=True)  # already deleted: nothing
    _deleted(session, principal, "uuid:o1b", deleted=False)
    kinds = [kind for kind, _ in events_of(session, personas.project_id)]
    assert kinds == [
        "submission.created",
        "submission.updated",
        "submission.reviewed",
        "submission.deleted",
        "submission.restored",
    ]
    assert len({subject for _, subject in events_of(session, personas.project_id)}) == 1


def test_a_published_form_version_writes_one_event(app: Flask, session: Session, personas: Personas) -> None:
    subscribe(app, personas.project_id, ("form.published",))
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    assert events_of(session, personas.project_id) == [("form.published", "form:photo_visit")]


def test_entity_changes_write_one_event_each(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], session: Session, personas: Personas
) -> None:
    project_id = fresh_project(db)
    subscribe(app, project_id)
    transport = FaultyTransport(client, personas.admin.headers, project_id)
    created = transport.push("devA", [entity_item("devA", 1, "awa", {"phone": "1"}, label="Awa")], "ok")
    rev = created["results"][0]["entity"]["rev"]
    # Two devices change the same property from the same base: the second is a conflict.
    transport.push("devA", [entity_item("devA", 2, "awa", {"phone": "2"}, base_rev=rev)], "ok")
    transport.push("devB", [entity_item("devB", 1, "awa", {"phone": "3"}, base_rev=rev)], "ok")
    url = f"/v1/projects/{project_id}/entities/{LIST}/awa"
    resolved = client.post(f"{url}/resolve", json={"fields": {"phone": "2"}}, headers=personas.admin.headers)
    assert resolved.status_code == 200, resolved.get_json()
    assert client.delete(url, headers=personas.admin.headers).status_code == 200
    assert client.post(f"{url}/restore", headers=personas.admin.headers).status_code == 200
    assert [kind for kind, _ in events_of(session, project_id)] == [
        "entity.created",
        "entity.updated",
        "entity.conflicted",
        "entity.resolved",
        "entity.deleted",
        "entity.restored",
    ]


@pytest.mark.parametrize(
    ("events", "extra", "written"),
    [
        ((), {}, False),
        (("submission.reviewed",), {}, False),
        (("submission.created",), {"form_id": "photo_visit"}, True),
        (("submission.created",), {"form_id": "other_form"}, False),
    ],
    ids=["no-subscription", "other-kind", "this-form", "other-form"],
)
def test_an_event_nobody_wants_is_not_written(
    app: Flask,
    photo: tuple[Session, Principal],
    personas: Personas,
    events: tuple[str, ...],
    extra: dict[str, Any],
    written: bool,
) -> None:
    session, principal = photo
    if extra.get("form_id") == "other_form":
        publish_form(app, personas.project_id, PHOTO_XFORM.replace(b"photo_visit", b"other_form"), "other.xml")
    if events:
        subscribe(app, personas.project_id, events, **extra)
    _ingest(session, principal, photo_submission("uuid:w1", []))
    assert bool(events_of(session, personas.project_id)) is written


def test_the_push_bulk_path_writes_one_event_per_created_submission(
    app: Flask, photo: tuple[Session, Principal], personas: Personas
) -> None:
    session, principal = photo
    subscribe(app, personas.project_id, ("submission.created",))
    items = [BulkItem(photo_submission(f"uuid:b{i}", [])) for i in range(5)]
    with session.begin():
        results = ingest_submissions_bulk(
            session, project_id=personas.project_id, items=items, principal=principal, device_id="d"
        )
    assert all(r is not None for r in results)
    found = events_of(session, personas.project_id)
    assert [kind for kind, _ in found] == ["submission.created"] * 5
    assert sorted(s for _, s in found) == sorted(f"submission:{r.submission_id}" for r in results if r)


class _Boom(Exception):
    """Raised inside a use case's transaction, after its event was written."""


def _failing_after(monkeypatch: pytest.MonkeyPatch, fail: list[bool]) -> None:
    """Make every outbox write (and the one-statement new chain) raise once it is done, while ``fail[0]``."""
    import server.db.queries.submissions as queries
    import server.services.submissions as services

    real_record, real_chain = services.record_event, queries.insert_new_chain

    def record(*args: Any, **kwargs: Any) -> None:
        real_record(*args, **kwargs)
        if fail[0]:
            raise _Boom

    def chain(*args: Any, **kwargs: Any) -> Any:
        stored = real_chain(*args, **kwargs)
        if fail[0] and stored is not None:
            raise _Boom
        return stored

    monkeypatch.setattr(services, "record_event", record)
    monkeypatch.setattr(queries, "insert_new_chain", chain)


_NUMBERS = itertools.count()
_STEPS = st.lists(
    st.tuples(st.sampled_from(["submit", "edit", "review", "delete", "restore"]), st.booleans()),
    min_size=1,
    max_size=8,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# A new chain after a deleted one is live: restoring it changes nothing and writes no event.
@example(steps=[("submit", False), ("delete", False), ("submit", False), ("restore", False)])
@given(steps=_STEPS)
def test_rolled_back_changes_leave_no_event_and_committed_ones_exactly_one(
    app: Flask,
    photo: tuple[Session, Principal],
    personas: Personas,
    monkeypatch: pytest.MonkeyPatch,
    steps: list[tuple[str, bool]],
) -> None:
    session, principal = photo
    if not events_of(session, personas.project_id) and not hooks.list_subscriptions(session, personas.project_id):
        subscribe(app, personas.project_id)
    fail = [False]
    _failing_after(monkeypatch, fail)
    before = len(events_of(session, personas.project_id))
    chain: list[str] = []  # instance ids of the one chain these steps build, newest last
    deleted = False
    committed = 0
    actions: dict[str, Callable[[], bool]] = {}

    def submit() -> bool:
        instance = f"uuid:p{next(_NUMBERS)}"
        result = _ingest(session, principal, photo_submission(instance, []))
        if not isinstance(result.outcome, Created):
            return False
        chain[:] = [instance]
        return True

    def edit() -> bool:
        if not chain or deleted:
            return False
        instance = f"{chain[-1]}e"
        _ingest(session, principal, photo_submission(instance, [], site=instance, deprecated_id=chain[-1]))
        chain.append(instance)
        return True

    def review() -> bool:
        if not chain or deleted:
            return False
        _review(session, principal, chain[-1])
        return True

    def set_deleted(value: bool) -> bool:
        if not chain or deleted == value:
            return False
        _deleted(session, principal, chain[-1], deleted=value)
        return True

    actions = {
        "submit": submit,
        "edit": edit,
        "review": review,
        "delete": lambda: set_deleted(True),
        "restore": lambda: set_deleted(False),
    }
    for name, failing in steps:
        fail[0] = failing
        saved = (list(chain), deleted)
        try:
            changed = actions[name]()
        except _Boom:
            chain[:], deleted = saved
            session.rollback()
            continue
        finally:
            fail[0] = False
        if changed:
            committed += 1
            if name in ("delete", "restore"):
                deleted = name == "delete"
            elif name == "submit":
                deleted = False  # a new chain is live, whatever happened to the one before it
    assert len(events_of(session, personas.project_id)) - before == committed
