"""The key in a submission URL (``/v1/key/<token>/...``): who may submit, whatever path the request takes.

A small POST is authenticated in the query that also routes it (key and form target at once); a
large one authenticates before its body is read. Both must answer alike.

Rules:
- K1 an unknown key is 401 and stores nothing, whatever the body: a good submission, no XML part,
  broken XML, an unknown form, or a body over the limit (the key is told before the body's faults).
- K2 a revoked or an expired device key is 403 ("revoked") and stores nothing, small body or large.
- K3 a device key of another project is 403 and stores nothing.
- K4 a person's API key in the path submits as that person (submitter, no device).
- K5 a form target read for one routing is used only for that routing: ``ingest_submission`` reads
  the target again for any other.
- K6 on PostgreSQL the one query takes the edit-chain locks of the submission's ids (held until
  the transaction ends), and none for an unknown key.
- K7 the XML's header is read once per keyed POST: the routing the one query used is handed to the
  use case, not read again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from server.auth import Principal
from server.db.advisory import STORE_SALT_SQL
from server.db.base import utcnow
from server.db.models.submissions import Submission, SubmissionVersion
from server.db.queries.submissions import RoutedTarget, chain_lock_key, get_token_and_form_target
from server.openrosa.submission import ONE_QUERY_BYTES
from server.passwords import token_hash
from server.services import accounts
from server.services.submissions import ingest_submission
from server.store import get_store
from sync.outcomes import Created, Quarantined
from tests.conftest import Backend, Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, dump_store, photo_submission, post_submission

LIMIT = 10_000

BODIES: dict[str, Callable[[FlaskClient, str], TestResponse]] = {
    "good": lambda c, prefix: post_submission(c, prefix, photo_submission("uuid:k-good", [])),
    "no-xml-part": lambda c, prefix: post_submission(c, prefix, None, {"a.jpg": b"photo"}),
    "broken-xml": lambda c, prefix: post_submission(c, prefix, b"<data id='photo_visit'><site>"),
    "unknown-form": lambda c, prefix: post_submission(
        c, prefix, photo_submission("uuid:k-nf", []).replace(b'id="photo_visit"', b'id="nowhere"')
    ),
    "over-the-limit": lambda c, prefix: post_submission(
        c, prefix, photo_submission("uuid:k-big", ["a.jpg"]), {"a.jpg": b"x" * (LIMIT + 1)}
    ),
    "large-photo": lambda c, prefix: post_submission(
        c, prefix, photo_submission("uuid:k-large", ["a.jpg"]), {"a.jpg": b"x" * (ONE_QUERY_BYTES + 1)}
    ),
}


def _issue_device(app: Flask, project_id: int, *, revoked: bool = False, expired: bool = False) -> str:
    with app.app_context():
        session = get_store().sessions()
        expires = utcnow() - timedelta(minutes=1) if expired else None
        issued = accounts.create_device(session, project_id, "phone under test", expires_at=expires)
        if revoked:
            accounts.revoke_device(session, project_id, issued.id)
        session.close()
    return issued.token


@pytest.fixture
def photo_app(app: Flask, personas: Personas) -> Flask:
    """The app with the photo form published and a submission limit small enough to exceed cheaply."""
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    app.config["MAX_SUBMISSION_BYTES"] = max(LIMIT, 2 * ONE_QUERY_BYTES)
    return app


@pytest.mark.parametrize("body", sorted(BODIES))
def test_unknown_key_is_401_whatever_the_body(
    photo_app: Flask, client: FlaskClient, personas: Personas, session: Session, body: str
) -> None:
    """K1 (``over-the-limit`` runs with the small limit: its 413 must not come before the 401)."""
    if body == "over-the-limit":
        photo_app.config["MAX_SUBMISSION_BYTES"] = LIMIT
    before = dump_store(session, photo_app)
    response = BODIES[body](client, f"/v1/key/not-a-key/projects/{personas.project_id}")
    assert response.status_code == 401, response.get_data(as_text=True)
    assert "<OpenRosaResponse" in response.get_data(as_text=True)
    assert dump_store(session, photo_app) == before


@pytest.mark.parametrize("body", ["good", "large-photo"])
@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_revoked_or_expired_key_is_403(
    photo_app: Flask, client: FlaskClient, personas: Personas, session: Session, state: str, body: str
) -> None:
    """K2."""
    token = _issue_device(photo_app, personas.project_id, revoked=state == "revoked", expired=state == "expired")
    before = dump_store(session, photo_app)
    response = BODIES[body](client, f"/v1/key/{token}/projects/{personas.project_id}")
    assert response.status_code == 403, response.get_data(as_text=True)
    assert "revoked" in response.get_data(as_text=True)
    assert dump_store(session, photo_app) == before


def test_device_key_of_another_project_is_403(
    photo_app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    """K3."""
    token = _issue_device(photo_app, personas.other_project_id)
    before = dump_store(session, photo_app)
    response = BODIES["good"](client, f"/v1/key/{token}/projects/{personas.project_id}")
    assert response.status_code == 403, response.get_data(as_text=True)
    assert dump_store(session, photo_app) == before


def test_a_persons_key_submits_as_that_person(
    photo_app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    """K4."""
    response = post_submission(
        client, f"/v1/key/{personas.coach.token}/projects/{personas.project_id}", photo_submission("uuid:k-p", [])
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    session.commit()
    row = session.execute(
        select(Submission.submitter_id, Submission.device_token_id).where(Submission.instance_id == "uuid:k-p")
    ).one()
    assert tuple(row) == (personas.coach.id, None)


def test_a_target_read_for_another_routing_is_not_used(photo_app: Flask, personas: Personas) -> None:
    """K5: a read saying "no such form" serves only its own routing."""
    device = Principal("device", personas.device.id, "test phone", project_id=personas.project_id, role="coach")

    def ingest(instance_id: str, routed_for: str) -> object:
        routed = RoutedTarget(personas.project_id, "photo_visit", "1", (routed_for,), None)
        with photo_app.app_context():
            session = get_store().sessions()
            try:
                return ingest_submission(
                    session,
                    project_id=personas.project_id,
                    xml=photo_submission(instance_id, []),
                    files={},
                    principal=device,
                    device_id=None,
                    source="openrosa",
                    routed=routed,
                ).outcome
            finally:
                session.close()

    assert isinstance(ingest("uuid:k-other", routed_for="uuid:k-elsewhere"), Created)
    assert isinstance(ingest("uuid:k-same", routed_for="uuid:k-same"), Quarantined)
    with photo_app.app_context():
        session = get_store().sessions()
        stored = session.scalars(
            select(SubmissionVersion.instance_id).where(SubmissionVersion.instance_id.like("uuid:k-%"))
        )
        assert sorted(stored) == ["uuid:k-other"]
        session.close()


def _advisory_locks_held(session: Session) -> set[int]:
    rows = session.execute(
        text(
            "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 AND pid = pg_backend_pid() AND granted"
        )
    )
    # pg_locks shows the key's two unsigned halves; chain_lock_key is signed.
    return {key - (1 << 64) if key >= 1 << 63 else key for (key,) in rows}


def test_the_one_query_takes_the_chain_locks(
    photo_app: Flask, personas: Personas, session: Session, backend: Backend
) -> None:
    """K6."""
    if backend.name != "postgresql":
        pytest.skip(reason="chain locks are PostgreSQL advisory locks; SQLite has a single writer and takes none")
    ids = ("uuid:k-edit", "uuid:k-original")
    nested = session.begin_nested()
    try:
        assert (
            get_token_and_form_target(session, token_hash("not-a-key"), personas.project_id, "photo_visit", "1", ids)
            is None
        )
        assert _advisory_locks_held(session) == set()
        found = get_token_and_form_target(
            session, token_hash(personas.device.token), personas.project_id, "photo_visit", "1", ids
        )
        assert found is not None
        row, routed = found
        assert row.id == personas.device.id and routed.target is not None and routed.target.version_pk is not None
        # Each key is the store's own: XORed with its schema's salt (server/db/advisory.py).
        salt = session.execute(text(f"SELECT {STORE_SALT_SQL}")).scalar_one()
        expected = {chain_lock_key(personas.project_id, "photo_visit", i) ^ salt for i in ids}
        assert _advisory_locks_held(session) == expected
    finally:
        nested.rollback()


def test_the_header_is_read_once(
    photo_app: Flask, client: FlaskClient, personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """K7."""
    import server.services.submissions as service

    reads: list[bytes] = []
    real = service.read_submission_header

    def counted(xml: bytes) -> object:
        reads.append(xml)
        return real(xml)

    monkeypatch.setattr(service, "read_submission_header", counted)
    xml = photo_submission("uuid:k-once", [])
    response = post_submission(client, f"/v1/key/{personas.device.token}/projects/{personas.project_id}", xml)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert reads == [xml]
