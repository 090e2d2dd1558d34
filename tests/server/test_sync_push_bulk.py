"""The bulk path of push gives every item the status the one-by-one path gives it (same batch, same order)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AuditEvent
from server.db.models.submissions import Submission
from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.fixtures_forms import name_photo_xlsform, publish_form

FORM = name_photo_xlsform("bulk_test", "3")
PHOTO = b"\xff\xd8 photo" * 20


def _xml(instance_id: str, name: str, deprecated_id: str | None = None, photo: str = "") -> str:
    deprecated = f"<deprecatedID>{deprecated_id}</deprecatedID>" if deprecated_id else ""
    return (
        f'<data id="bulk_test" version="3"><name>{name}</name><photo>{photo}</photo>'
        f"<meta><instanceID>{instance_id}</instanceID>{deprecated}</meta></data>"
    )


def _item(instance_id: str, xml: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "submission",
        "instanceId": instance_id,
        "formId": "bulk_test",
        "formVersion": "3",
        "data": xml,
        **extra,
    }


def _batch() -> list[Any]:
    declared = [{"name": "p.jpg", "sha256": hashlib.sha256(PHOTO).hexdigest(), "size": len(PHOTO)}]
    return [
        _item("uuid:e1", _xml("uuid:e1", "edited", deprecated_id="uuid:x1")),  # an edit before its original
        _item("uuid:x1", _xml("uuid:x1", "original")),
        _item("uuid:y1", _xml("uuid:y1", "Yasmine")),
        _item("uuid:y1", _xml("uuid:y1", "Yasmina")),  # same id, other content
        _item("uuid:y1", _xml("uuid:y1", "Yasmine")),  # an identical copy
        _item("uuid:z1", _xml("uuid:z1", "Zineb", photo="p.jpg"), attachments=declared),
        _item("uuid:w2", _xml("uuid:w1", "fields disagree with the XML")),
        _item("uuid:w1", _xml("uuid:w1", "fields disagree with the XML")),
        _item("uuid:v1", _xml("uuid:v1", "Vanessa").replace('version="3"', 'version="9"'), formVersion="9"),
        {"type": "submission", "instanceId": "uuid:bad"},  # not a submission item
        _item("uuid:u1", "<data id='bulk_test' version='3'><name>cut"),  # unparseable XML
        _item("uuid:t1", _xml("uuid:t1", "Touria")),
    ]


def _statuses(response: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(r["status"], r.get("reason") or r.get("missing") or r.get("accepted")) for r in response["results"]]


@pytest.mark.parametrize(
    ("bulk", "chunk"),
    [(True, 50), (True, 2), (True, 1), (False, 50)],
    ids=["bulk", "chunks_of_2", "chunks_of_1", "one_by_one"],
)
def test_bulk_and_one_by_one_answer_the_same(
    app: Flask,
    client: FlaskClient,
    personas: Personas,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    bulk: bool,
    chunk: int,
) -> None:
    from server.services import submission_batches

    publish_form(app, personas.project_id, FORM, "bulk_test.xlsx")
    # Small chunks: the writes of one chunk are pipelined while the next is parsed, across the copies,
    # the edit and its original that the batch spreads over several chunks.
    monkeypatch.setattr(submission_batches, "CHUNK_ITEMS", chunk)
    if not bulk:
        monkeypatch.setattr(
            submission_batches, "ingest_submissions_bulk", lambda session, *, items, **kw: [None] * len(items)
        )
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    with caplog.at_level("ERROR", logger="fieldsync.submissions"):
        pushed = transport.push("phone-1", _batch(), "ok")
    assert pushed is not None
    # The bulk path did its part: it did not give up and hand every item to the one-by-one path.
    assert [r.getMessage() for r in caplog.records if r.name == "fieldsync.submissions"] == []
    photo_sha = hashlib.sha256(PHOTO).hexdigest()
    assert _statuses(pushed) == [
        ("updated", None),
        ("created", None),
        ("created", None),
        ("rejected", "id_conflict"),
        ("duplicate", None),
        ("awaiting_attachments", [photo_sha]),
        ("rejected", "item_mismatch"),  # the item says w2, its XML w1: neither is stored (issue 15 row 6)
        ("created", None),
        ("quarantined", "unknown_form_version"),
        ("rejected", "unparseable_item"),
        ("rejected", "unparseable_item"),
        ("created", None),
    ]
    # Each stored chain has one audit event naming it, whichever path wrote it.
    session.commit()
    chains = {f"submission:{sid}": iid for sid, iid in session.execute(select(Submission.id, Submission.instance_id))}
    events = session.execute(
        select(AuditEvent.action, AuditEvent.actor, AuditEvent.subject, AuditEvent.details).where(
            AuditEvent.subject.in_(list(chains))
        )
    ).all()
    session.commit()
    created = {
        (subject, details["instance_id"], details["form"], details["source"], actor)
        for action, actor, subject, details in events
        if action == "submission.create"
    }
    device = f"device:{personas.device.id}"
    assert created == {(subject, iid, "bulk_test", "push", device) for subject, iid in chains.items()}
    assert len(events) == len(chains) + 1  # and the edit's submission.update


def test_a_bulk_write_that_fails_rolls_back_and_every_item_goes_one_by_one(
    app: Flask,
    client: FlaskClient,
    personas: Personas,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write error inside the bulk SAVEPOINT (here: a stored id the bulk path was told is new, so its
    INSERT hits the unique key in the middle of a pipelined chunk) stores nothing of the bulk part, and
    the one-by-one path then answers every item as if the bulk path had not run."""
    from server.services import submission_batches

    publish_form(app, personas.project_id, FORM, "bulk_test.xlsx")
    monkeypatch.setattr(submission_batches, "CHUNK_ITEMS", 2)
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    first = transport.push("phone-1", [_item("uuid:s1", _xml("uuid:s1", "Salma"))], "ok")
    assert first is not None and _statuses(first) == [("created", None)]

    monkeypatch.setattr(submission_batches, "_stored_relatives", lambda *args: set())
    batch = [_item(f"uuid:n{i}", _xml(f"uuid:n{i}", f"N{i}")) for i in range(3)]
    batch.insert(2, _item("uuid:s1", _xml("uuid:s1", "Salma")))  # stored: its INSERT fails in chunk 2
    with caplog.at_level("ERROR", logger="fieldsync.submissions"):
        pushed = transport.push("phone-1", batch, "ok")
    assert pushed is not None
    assert _statuses(pushed) == [("created", None), ("created", None), ("duplicate", None), ("created", None)]
    assert any("go one by one" in r.getMessage() for r in caplog.records)
    listed = client.get(
        f"/v1/projects/{personas.project_id}/forms/bulk_test/submissions", headers=personas.manager.headers
    ).get_json()
    stored = sorted(s["instanceId"] for s in listed)
    assert stored == ["uuid:n0", "uuid:n1", "uuid:n2", "uuid:s1"]
