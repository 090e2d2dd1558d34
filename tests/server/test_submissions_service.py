"""``ingest_submission`` as the JSON push door calls it: savepoints, declared blobs, chains, outcomes.

Rules:
- V1 with ``nested=True`` each item is a SAVEPOINT inside the caller's transaction: a refused item leaves the
  others stored.
- V2 a declared attachment whose blob is absent is ``awaiting_attachments`` naming its sha256; once the blob is
  uploaded, ``attach_uploaded_blob`` completes the submission.
- V3 two fragments of one edit chain (v1, v3) merge into one submission when the missing link (v2) arrives.
- V4 unknown form → ``Quarantined`` and unparseable XML → ``Rejected(unparseable_item)``, nothing stored.
- V5 a submission without instanceID is named by its content hash, so its retry is a duplicate.
- V6 entity blocks are handed to ``apply_entity_changes`` with the stored version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.auth import Principal
from server.db.models.submissions import Submission, SubmissionVersion
from server.services import submissions as svc
from server.store import get_store
from sync.outcomes import AwaitingAttachments, Created, Duplicate, Quarantined, Rejected, Updated
from sync.submissions import AttachmentRef
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, example_submission, photo_submission


@pytest.fixture
def ctx(app: Flask, personas: Personas) -> Iterator[tuple[Session, Principal]]:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    with app.app_context():
        session = get_store().sessions()
        principal = Principal("device", personas.device.id, "test phone", project_id=personas.project_id, role="coach")
        yield session, principal
        session.close()


def _ingest(session: Session, principal: Principal, xml: bytes, **kwargs: Any) -> svc.IngestResult:
    return svc.ingest_submission(
        session,
        project_id=principal.project_id or 0,
        xml=xml,
        files=kwargs.pop("files", {}),
        principal=principal,
        device_id="dev-1",
        source="push",
        **kwargs,
    )


def _count(session: Session, model: type) -> int:
    session.commit()
    value = session.scalar(select(func.count()).select_from(model)) or 0
    session.commit()
    return value


def test_nested_items_are_independent(ctx: tuple[Session, Principal]) -> None:
    session, principal = ctx
    with session.begin():
        first = _ingest(session, principal, photo_submission("uuid:n1", []), nested=True)
        bad = _ingest(session, principal, b"<data id='photo_visit'><oops>", nested=True)
        changed = _ingest(session, principal, photo_submission("uuid:n1", [], site="other"), nested=True)
        second = _ingest(session, principal, photo_submission("uuid:n2", []), nested=True)
    assert isinstance(first.outcome, Created) and isinstance(second.outcome, Created)
    assert isinstance(bad.outcome, Rejected) and bad.outcome.reason == "unparseable_item"
    assert isinstance(changed.outcome, Rejected) and changed.outcome.reason == "id_conflict"
    assert _count(session, SubmissionVersion) == 2


def test_declared_blob_then_upload_completes(ctx: tuple[Session, Principal], app: Flask) -> None:
    session, principal = ctx
    photo = b"declared photo bytes"
    sha = hashlib.sha256(photo).hexdigest()
    xml = photo_submission("uuid:decl", ["p.jpg"])
    result = _ingest(session, principal, xml, declared_attachments=[AttachmentRef("p.jpg", sha, len(photo))])
    assert isinstance(result.outcome, AwaitingAttachments)
    assert result.missing_attachments == (sha,)
    with session.begin():
        assert svc.blob_store().put_bytes(session, photo) == sha
        assert svc.attach_uploaded_blob(session, principal.project_id or 0, sha) == 1
    again = _ingest(session, principal, xml, declared_attachments=[AttachmentRef("p.jpg", sha, len(photo))])
    assert again.outcome == Duplicate()
    session.commit()
    row = session.scalars(select(Submission)).one()
    assert (row.attachments_expected, row.attachments_present) == (1, 1)
    session.commit()


def test_chain_fragments_merge_when_the_link_arrives(ctx: tuple[Session, Principal]) -> None:
    session, principal = ctx
    assert isinstance(_ingest(session, principal, photo_submission("uuid:c1", [])).outcome, Created)
    v3 = _ingest(session, principal, photo_submission("uuid:c3", [], deprecated_id="uuid:c2"))
    assert v3.outcome == Updated(deprecated_id="uuid:c2", predecessor_known=False)
    assert _count(session, Submission) == 2
    v2 = _ingest(session, principal, photo_submission("uuid:c2", [], deprecated_id="uuid:c1"))
    assert v2.outcome == Updated(deprecated_id="uuid:c1", predecessor_known=True)
    session.commit()
    row = session.scalars(select(Submission)).one()
    assert (row.instance_id, row.current_instance_id, row.edits) == ("uuid:c1", "uuid:c3", 2)
    session.commit()


def test_unknown_form_and_unparseable_store_nothing(ctx: tuple[Session, Principal]) -> None:
    session, principal = ctx
    unknown = _ingest(session, principal, photo_submission("uuid:u", []).replace(b"photo_visit", b"ghost"))
    assert isinstance(unknown.outcome, Quarantined) and unknown.outcome.reason == "unknown_form"
    assert (unknown.form_id, unknown.instance_id) == ("ghost", "uuid:u")
    broken = _ingest(session, principal, b"not xml at all")
    assert isinstance(broken.outcome, Rejected)
    assert _count(session, SubmissionVersion) == 0


def test_submission_without_instance_id_is_named_by_its_content(ctx: tuple[Session, Principal]) -> None:
    session, principal = ctx
    xml = b'<data id="photo_visit" version="1"><site>old phone</site></data>'
    first = _ingest(session, principal, xml)
    assert isinstance(first.outcome, Created)
    assert first.instance_id == f"sha256:{hashlib.sha256(xml).hexdigest()}"
    assert _ingest(session, principal, xml).outcome == Duplicate()


def test_entity_blocks_go_to_the_entities_service(
    app: Flask, personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.server.fixtures_forms import ENTREPRENEUR_XLSX

    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)
    calls: list[tuple[Any, ...]] = []
    relayed: list[Any] = []
    monkeypatch.setattr(
        svc, "apply_entity_changes", lambda *args, **kwargs: (calls.append(args), relayed.append(kwargs["relayed"]))
    )
    with app.app_context():
        session = get_store().sessions()
        principal = Principal("device", personas.device.id, "test phone", project_id=personas.project_id, role="coach")
        result = _ingest(session, principal, example_submission("entrepreneur_followup", "01"))
        session.close()
    assert isinstance(result.outcome, Created | AwaitingAttachments)
    assert len(calls) == 1
    _, project_id, record, version_id, actor = calls[0]
    assert (project_id, version_id, actor) == (personas.project_id, result.version_id, principal.actor)
    assert record.entities and record.entities[0].create
    assert relayed == [None]  # only a relay's push names the office's contexts


def test_attachment_counts_stay_per_submission_through_edits(ctx: tuple[Session, Principal]) -> None:
    session, principal = ctx
    photo = {"p.jpg": b"p"}
    for k, names in enumerate((["p.jpg"], ["p.jpg", "q.jpg"], ["p.jpg", "q.jpg", "r.jpg"])):
        files = {
            name: svc.FileUpload(name, hashlib.sha256(data).hexdigest(), len(data), data=data)
            for name, data in photo.items()
            if name in names
        }
        _ingest(session, principal, photo_submission(f"uuid:m{k}", names), files=files)
    # An edit of the last one that drops a photo: counts follow its current version only.
    _ingest(session, principal, photo_submission("uuid:m2-edit", ["p.jpg", "q.jpg"], deprecated_id="uuid:m2"))
    session.commit()
    counts = dict(
        session.execute(
            select(Submission.current_instance_id, Submission.attachments_present).order_by(Submission.id)
        ).all()
    )
    expected = dict(session.execute(select(Submission.current_instance_id, Submission.attachments_expected)).all())
    session.commit()
    assert counts == {"uuid:m0": 1, "uuid:m1": 1, "uuid:m2-edit": 1}
    assert expected == {"uuid:m0": 1, "uuid:m1": 2, "uuid:m2-edit": 2}
