"""OpenRosa submission door, played like ODK Collect (reference/peers.md §4, OPENROSA.md).

Rules:
- S1 HEAD → 204 with X-OpenRosa-Version and X-OpenRosa-Accept-Content-Length; POST → 201 + OpenRosaResponse.
- S2 a POST whose response was lost, repeated → 201, one submission, one version.
- S3 a multi-POST split (``*isIncomplete*``) adds files idempotently; counts are exact.
- S4 an edit chain sent newest-first links up; the newest is current; every version is kept.
- S5 the same instance in two projects is two submissions.
- S6 same instanceID with other XML → 409, refused payload kept once.
- S7 closed form → 403; closing form still accepts; an older published version is accepted.
- S8 chunked request bodies are accepted.
- S9 an identical resend is answered from the routing read: nothing written (no blob, row, outbox event,
  audit row, not even an id drawn), the first answer's body, its XML never parsed; other bytes under the
  same instanceID still take the full path (409, refused payload kept).
"""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models.submissions import RefusedSubmission, Submission, SubmissionAttachment, SubmissionVersion
from server.db.queries import submissions as submission_queries
from server.services import submissions as submissions_service
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form, published_coop  # noqa: F401  (fixture)
from tests.server.test_submissions_support import (
    COLLECT_HEADERS,
    PHOTO_XFORM,
    dump_store,
    example_submission,
    photo_submission,
    post_submission,
)


def _count(session: Session, model: type) -> int:
    # The test session shares the app's connection: end its read (RELEASE, never ROLLBACK TO, which
    # would undo the app's later writes) so each read sees everything committed so far.
    session.commit()
    value = session.scalar(select(func.count()).select_from(model)) or 0
    session.commit()
    return value


@pytest.mark.usefixtures("published_coop")
def test_head_then_post_is_204_then_201(client: FlaskClient, personas: Personas, session: Session) -> None:
    head = client.head(f"{personas.collect_prefix}/submission?deviceID=x", headers={"X-OpenRosa-Version": "1.0"})
    assert head.status_code == 204
    assert head.headers["X-OpenRosa-Version"] == "1.0"
    assert int(head.headers["X-OpenRosa-Accept-Content-Length"]) > 0
    xml = example_submission("coop_diagnostic", "01")
    response = post_submission(client, personas.collect_prefix, xml, {"1796200361318.jpg": b"jpeg-bytes"})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert b"OpenRosaResponse" in response.data
    assert response.headers["Content-Type"].startswith("text/xml")
    assert response.headers["X-OpenRosa-Accept-Content-Length"]
    row = session.scalars(select(Submission)).one()
    assert (row.attachments_expected, row.attachments_present) == (1, 1)
    version = session.scalars(select(SubmissionVersion)).one()
    assert version.xml == xml
    assert version.device_id == "collect:test123"


@pytest.mark.usefixtures("published_coop")
def test_lost_response_then_repeat_stores_once(client: FlaskClient, personas: Personas, session: Session) -> None:
    xml = example_submission("coop_diagnostic", "02")
    for _ in range(3):
        assert post_submission(client, personas.collect_prefix, xml).status_code == 201
    assert _count(session, Submission) == 1
    assert _count(session, SubmissionVersion) == 1


def test_multi_post_split_of_five_photos(app: Flask, client: FlaskClient, personas: Personas, session: Session) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    names = [f"17962003613{i}.jpg" for i in range(5)]
    xml = photo_submission("uuid:photos-1", names)
    photos = {name: f"photo {name}".encode() * 50 for name in names}
    splits = [names[:2], names[2:4], names[4:]]
    for index, part in enumerate(splits):
        response = post_submission(
            client, personas.collect_prefix, xml, {n: photos[n] for n in part}, incomplete=index < 2
        )
        assert response.status_code == 201, response.get_data(as_text=True)
    # Collect may re-send the last part if its response was lost.
    assert post_submission(client, personas.collect_prefix, xml, {names[4]: photos[names[4]]}).status_code == 201
    session.commit()
    row = session.scalars(select(Submission)).one()
    assert (row.attachments_expected, row.attachments_present) == (5, 5)
    attachments = session.scalars(select(SubmissionAttachment)).all()
    assert sorted(a.name for a in attachments) == sorted(names)
    assert all(a.blob_sha256 for a in attachments)
    assert _count(session, SubmissionVersion) == 1


def test_edit_chain_sent_newest_first(app: Flask, client: FlaskClient, personas: Personas, session: Session) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    v1 = photo_submission("uuid:v1", ["a.jpg"], site="one")
    v2 = photo_submission("uuid:v2", ["a.jpg"], site="two", deprecated_id="uuid:v1")
    v3 = photo_submission("uuid:v3", ["a.jpg", "b.jpg"], site="three", deprecated_id="uuid:v2")
    assert post_submission(client, personas.collect_prefix, v3, {"b.jpg": b"b"}).status_code == 201
    assert post_submission(client, personas.collect_prefix, v2).status_code == 201
    assert _count(session, Submission) == 1
    last = post_submission(client, personas.collect_prefix, v1, {"a.jpg": b"a"}, headers={"Accept-Language": "fr"})
    assert last.status_code == 201
    assert "Le formulaire a bien été envoyé en entier" in last.get_data(as_text=True)
    session.commit()
    row = session.scalars(select(Submission)).one()
    assert (row.instance_id, row.current_instance_id, row.edits) == ("uuid:v1", "uuid:v3", 2)
    assert (row.attachments_expected, row.attachments_present) == (2, 2)
    assert _count(session, SubmissionVersion) == 3


def test_same_instance_in_two_projects(app: Flask, client: FlaskClient, personas: Personas, session: Session) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    publish_form(app, personas.other_project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:twice", [])
    assert post_submission(client, personas.collect_prefix, xml).status_code == 201
    other = f"/v1/projects/{personas.other_project_id}"
    assert post_submission(client, other, xml, headers=personas.admin.basic).status_code == 201
    assert _count(session, Submission) == 2


@pytest.mark.usefixtures("published_coop")
def test_same_id_other_xml_is_409_and_kept_once(client: FlaskClient, personas: Personas, session: Session) -> None:
    xml = example_submission("coop_diagnostic", "02")
    assert post_submission(client, personas.collect_prefix, xml).status_code == 201
    changed = xml.replace(b"</data>", b"<!-- changed --></data>")
    for _ in range(2):
        response = post_submission(client, personas.collect_prefix, changed)
        assert response.status_code == 409
        assert b"different XML" in response.data
    french = post_submission(client, personas.collect_prefix, changed, headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert "contenu différent".encode() in french.data
    assert _count(session, RefusedSubmission) == 1
    assert _count(session, SubmissionVersion) == 1


def test_chunked_body_is_accepted(app: Flask, client: FlaskClient, personas: Personas, session: Session) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:chunked", ["c.jpg"])
    boundary = "chunkboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="xml_submission_file"; filename="s.xml"\r\n'
            "Content-Type: text/xml\r\n\r\n"
        ).encode()
        + xml
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="c.jpg"; filename="c.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + b"jpeg" * 1000
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        f"{personas.collect_prefix}/submission",
        input_stream=io.BytesIO(body),
        headers={
            **COLLECT_HEADERS,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    session.commit()
    row = session.scalars(select(Submission)).one()
    assert (row.attachments_expected, row.attachments_present) == (1, 1)
    session.commit()


def test_the_store_dump_sees_a_stored_submission(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    before = dump_store(session, app)
    xml = photo_submission("uuid:dumped", ["d.jpg"])
    assert post_submission(client, personas.collect_prefix, xml, {"d.jpg": b"d"}).status_code == 201
    after = dump_store(session, app)
    assert after[0]["submission_versions"] != before[0]["submission_versions"]
    assert len(after[1]) == len(before[1]) + 1


class _FullPathSpy:
    """Counts what only the full ingestion path does: parse the XML, read the stored relatives."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        parse, related = submissions_service.parse_submission, submission_queries.related_versions

        def spied_parse(*args: object, **kwargs: object) -> object:
            self.calls.append("parse_submission")
            return parse(*args, **kwargs)  # type: ignore[arg-type]

        def spied_related(*args: object, **kwargs: object) -> object:
            self.calls.append("related_versions")
            return related(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(submissions_service, "parse_submission", spied_parse)
        monkeypatch.setattr(submission_queries, "related_versions", spied_related)


@pytest.mark.usefixtures("published_coop")
def test_an_identical_resend_writes_nothing_and_answers_the_same(
    app: Flask, client: FlaskClient, personas: Personas, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S9."""
    xml = example_submission("coop_diagnostic", "01")
    photo = {"1796200361318.jpg": b"jpeg-bytes"}
    first = post_submission(client, personas.collect_prefix, xml, photo)
    assert first.status_code == 201, first.get_data(as_text=True)
    first_id = session.scalars(select(Submission.id)).one()
    before = dump_store(session, app)
    spy = _FullPathSpy(monkeypatch)
    # Collect after a lost answer: the same bytes, with or without the photo again.
    for files in (None, photo, None):
        again = post_submission(client, personas.collect_prefix, xml, files)
        assert (again.status_code, again.data) == (201, first.data)
    assert spy.calls == []
    assert dump_store(session, app) == before
    # Not even a submission id was drawn: the next new submission takes the very next one.
    other = example_submission("coop_diagnostic", "02")
    assert post_submission(client, personas.collect_prefix, other).status_code == 201
    session.commit()
    assert session.scalars(select(Submission.id).order_by(Submission.id)).all() == [first_id, first_id + 1]


@pytest.mark.usefixtures("published_coop")
def test_other_bytes_under_a_stored_instance_id_take_the_full_path(
    client: FlaskClient, personas: Personas, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S9: the routing read only short-cuts byte-identical resends."""
    xml = example_submission("coop_diagnostic", "02")
    assert post_submission(client, personas.collect_prefix, xml).status_code == 201
    spy = _FullPathSpy(monkeypatch)
    changed = xml.replace(b"</data>", b"<!-- changed --></data>")
    response = post_submission(client, personas.collect_prefix, changed)
    assert response.status_code == 409, response.get_data(as_text=True)
    assert "related_versions" in spy.calls
    assert _count(session, RefusedSubmission) == 1
    assert _count(session, SubmissionVersion) == 1


def test_a_resend_still_missing_files_is_told_what_to_send(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    """S9: a stored version still awaiting files is not short-cut: the answer counts what is missing."""
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:awaiting", ["a.jpg", "b.jpg"])
    first = post_submission(client, personas.collect_prefix, xml, {"a.jpg": b"a"}, incomplete=True)
    assert first.status_code == 201
    again = post_submission(client, personas.collect_prefix, xml)
    assert (again.status_code, again.data) == (201, first.data)
    assert b"1 file(s) still to send" in again.data
    assert post_submission(client, personas.collect_prefix, xml, {"b.jpg": b"b"}).status_code == 201
    session.commit()
    row = session.scalars(select(Submission)).one()
    assert (row.attachments_expected, row.attachments_present) == (2, 2)
