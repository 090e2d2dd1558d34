"""Office relay credentials on the national server (issue 22).

Rules:
- RL1 a relay's token lets it read forms, push and pull in the projects it was issued for; anything else
  (another project, writing a form, reading submissions) is 403, and a revoked token is 401;
- RL2 a submission a relay pushes keeps the phone's device id (the batch's) and submitter (the item's
  ``origin``), and the national store notes the relay that carried it, once per instance;
- RL3 a relay is issued for existing projects only (404), under a name not in use (409), for at least one
  project (400); revoking twice keeps the first time.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.errors import ApiError
from server.services import accounts, relays
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission


def _photo_project(app: Flask, db: sessionmaker[Session], name: str) -> int:
    session = db()
    project = accounts.create_project(session, f"{name} {uuid.uuid4().hex[:6]}")
    with app.app_context():
        publish_form(session, project.id, PHOTO_XFORM, "photo_visit.xml")
    session.close()
    return project.id


def _issue(db: sessionmaker[Session], name: str, projects: list[int]) -> relays.IssuedRelay:
    session = db()
    try:
        return relays.issue_relay(session, name, projects)
    finally:
        session.close()


def _push(client: FlaskClient, token: str, project_id: int, instance_id: str, submitter: str) -> Any:
    item = {
        "type": "submission",
        "instanceId": instance_id,
        "formId": "photo_visit",
        "formVersion": "1",
        "data": photo_submission(instance_id, []).decode(),
        "origin": {"deviceId": "collect:abc", "submitter": submitter},
    }
    body = {"protocol": "fieldsync/2", "deviceId": "collect:abc", "batchId": uuid.uuid4().hex, "items": [item]}
    return client.post(
        f"/v1/projects/{project_id}/sync/push",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": body["batchId"]},
    )


def test_rl1_rl2_a_relay_pushes_and_pulls_in_its_projects_only(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas
) -> None:
    from server.db.models.relays import RelayedSubmission
    from server.db.models.submissions import SubmissionVersion

    own, other = _photo_project(app, db, "Safi"), _photo_project(app, db, "Azilal")
    issued = _issue(db, f"safi-{uuid.uuid4().hex[:6]}", [own])
    bearer = {"Authorization": f"Bearer {issued.token}"}
    assert client.get(f"/v1/projects/{own}/forms", headers=bearer).status_code == 200
    assert client.get(f"/v1/projects/{own}/sync/pull", headers=bearer).status_code == 200
    pushed = _push(client, issued.token, own, "uuid:relayed-1", "device:coach-amina")
    assert pushed.status_code == 200, pushed.get_data(as_text=True)
    assert [r["status"] for r in pushed.get_json()["results"]] == ["created"]
    again = _push(client, issued.token, own, "uuid:relayed-1", "device:coach-amina")
    assert [r["status"] for r in again.get_json()["results"]] == ["duplicate"]
    for method, path in (
        ("GET", f"/v1/projects/{other}/forms"),
        ("GET", f"/v1/projects/{other}/sync/pull"),
        ("GET", f"/v1/projects/{own}/forms/photo_visit/submissions"),
        ("POST", f"/v1/projects/{own}/forms/photo_visit/draft/publish"),
    ):
        assert client.open(path, method=method, headers=bearer).status_code == 403, path
    assert _push(client, issued.token, other, "uuid:relayed-2", "x").status_code == 403
    session = db()
    try:
        carried = session.execute(
            select(RelayedSubmission.relay_id, RelayedSubmission.device_id, RelayedSubmission.submitter).where(
                RelayedSubmission.project_id == own
            )
        ).all()
        device_ids = session.scalars(select(SubmissionVersion.device_id).where(SubmissionVersion.project_id == own))
        assert [tuple(row) for row in carried] == [(issued.id, "collect:abc", "device:coach-amina")]
        assert list(device_ids) == ["collect:abc"]
    finally:
        session.close()
    session = db()
    revoked = relays.revoke_relay(session, issued.name)
    session.close()
    assert revoked.last_used_at is not None  # `fieldsync relays list` shows when it last called
    assert client.get(f"/v1/projects/{own}/forms", headers=bearer).status_code == 401


def test_rl3_issue_and_revoke_refusals(db: sessionmaker[Session], personas: Personas) -> None:
    name = f"khouribga-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ApiError) as unknown:
        _issue(db, name, [personas.project_id, 987654321])
    assert unknown.value.status == 404
    with pytest.raises(ApiError) as empty:
        _issue(db, name, [])
    assert empty.value.status == 400
    issued = _issue(db, name, [personas.project_id, personas.other_project_id, personas.project_id])
    assert issued.project_ids == tuple(sorted({personas.project_id, personas.other_project_id}))
    with pytest.raises(ApiError) as taken:
        _issue(db, name, [personas.project_id])
    assert taken.value.status == 409
    session = db()
    try:
        first = relays.revoke_relay(session, name)
        second = relays.revoke_relay(session, name)
        assert first.revoked_at is not None and second.revoked_at == first.revoked_at
        assert [r.name for r in relays.list_relays(session) if r.name == name] == [name]
    finally:
        session.close()


@pytest.mark.parametrize(
    ("locale", "words"),
    [("fr", ("Relais du bureau", "Coupé", "En attente d’envoi")), ("ar", ("مرحّل المكتب", "منقطع", "آخر خطأ"))],
    ids=["fr", "ar"],
)
def test_rl4_the_relay_page_shows_queue_contact_and_error(
    client: FlaskClient, db: sessionmaker[Session], personas: Personas, locale: str, words: tuple[str, ...]
) -> None:
    from server.services import relay_uplink
    from tests.server.console.test_console_roles import sign_in

    session = db()
    relay_uplink.ensure_link(session, personas.project_id, "https://national.example.org", 4)
    relay_uplink.note_contact(session, personas.project_id, "POST /v1/uploads: ConnectTimeout")
    session.close()
    sign_in(client, "admin-persona")
    html = client.get("/relay", headers={"Accept-Language": locale}).get_data(as_text=True)
    assert all(word in html for word in words), html
    assert "https://national.example.org" in html and "ConnectTimeout" in html


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("fr", ("Refusé en amont", "Rejeté : 1", "En quarantaine : 1")),
        ("ar", ("رفضه الخادم الوطني", "مرفوض: 1", "في العزل: 1")),
        ("en", ("Refused upstream", "Rejected: 1", "Quarantined: 1")),
    ],
    ids=["fr", "ar", "en"],
)
def test_rl5_the_relay_page_shows_what_the_national_server_refused(
    app: Flask, client: FlaskClient, db: sessionmaker[Session], personas: Personas, locale: str, words: tuple[str, ...]
) -> None:
    from server.db.base import utcnow
    from server.db.models.relays import RelayOutboxRow
    from server.db.queries import relays as relays_q
    from server.db.transaction import transaction
    from server.services import relay_uplink
    from tests.server.console.test_console_roles import sign_in

    project_id = _photo_project(app, db, "Safi")
    session = db()
    relay_uplink.ensure_link(session, project_id, "https://national.example.org", 4)
    device = accounts.create_device(session, project_id, "coach-amina")
    session.close()
    for index in range(3):
        pushed = _push(client, device.token, project_id, f"uuid:refused-{index}", "device:coach-amina")
        assert pushed.status_code == 200, pushed.get_data(as_text=True)
    session = db()
    with transaction(session):
        relays_q.backfill_outbox(session, project_id, utcnow())  # as the relay's round does
        rows = session.scalars(select(RelayOutboxRow.id).where(RelayOutboxRow.project_id == project_id)).all()
        assert len(rows) == 3
        for outbox_id, status in zip(rows, ("created", "rejected", "quarantined"), strict=True):
            relays_q.mark_sent(session, outbox_id, status, utcnow())
    session.close()
    sign_in(client, "admin-persona")
    html = client.get("/relay", headers={"Accept-Language": locale}).get_data(as_text=True)
    assert all(word in html for word in words), html
