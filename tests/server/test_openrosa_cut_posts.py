"""What arrives of a cut OpenRosa POST is kept; Collect's split follows the advertised length (issue 14).

Rules:
- CP1 A POST cut after its XML part: the submission is stored, awaiting its files; the answer is 400 (never
  201: Collect must send it again); Collect's retry with the identical XML completes it, stored once.
- CP2 Every file part that arrived whole before the cut is kept; the part the cut went through is not.
- CP3 A POST cut inside its XML part stores nothing.
- CP4 Collect, told ``X-OpenRosa-Accept-Content-Length`` by HEAD, splits a submission into one POST per file
  when files are about that size, and the server stores every file of every POST.
"""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models.submissions import Submission, SubmissionAttachment, SubmissionVersion
from tests.conftest import Personas
from tests.server.collect_client import accept_content_length, split_posts
from tests.server.fixtures_forms import publish_form
from tests.server.live_server import multipart
from tests.server.test_submissions_support import COLLECT_HEADERS, PHOTO_XFORM, dump_store, photo_submission

PHOTOS = {"a.jpg": b"A" * 20_000, "b.jpg": b"B" * 20_000}


def _body(xml: bytes, files: dict[str, bytes], *, incomplete: bool = False) -> tuple[bytes, str]:
    parts = [("xml_submission_file", "submission.xml", xml, "text/xml")]
    parts += [(name, name, content, "image/jpeg") for name, content in files.items()]
    if incomplete:
        parts.append(("*isIncomplete*", "", b"yes", "text/plain"))
    return multipart(parts)


def _post(client: FlaskClient, personas: Personas, body: bytes, content_type: str, cut_at: int | None = None):  # type: ignore[no-untyped-def]
    sent = body if cut_at is None else body[:cut_at]
    return client.post(
        f"{personas.collect_prefix}/submission",
        input_stream=io.BytesIO(sent),
        headers={**COLLECT_HEADERS, "Content-Type": content_type},
        # Content-Length announces the whole body; fewer bytes arrive: the link was cut.
        environ_overrides={"CONTENT_LENGTH": str(len(body))},
    )


def _state(session: Session) -> tuple[int, int, list[tuple[str, bool]]]:
    session.commit()
    rows = session.scalars(select(Submission)).all()
    versions = len(session.scalars(select(SubmissionVersion)).all())
    attachments = sorted((a.name, a.blob_sha256 is not None) for a in session.scalars(select(SubmissionAttachment)))
    session.commit()
    return len(rows), versions, attachments


@pytest.mark.parametrize(
    ("cut_after", "kept"),
    [
        ("xml", []),
        ("a.jpg", ["a.jpg"]),
    ],
    ids=["cut-after-the-xml", "cut-after-the-first-photo"],
)
def test_a_cut_post_keeps_its_xml_and_whole_files_and_the_retry_completes_it(
    cut_after: str, kept: list[str], app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:cut-1", list(PHOTOS))
    body, content_type = _body(xml, PHOTOS)
    # The cut lands in the middle of the part after ``cut_after``.
    marker = b"A" * 20_000 if cut_after == "a.jpg" else xml
    cut_at = body.index(marker) + len(marker) + 300
    cut = _post(client, personas, body, content_type, cut_at)
    assert cut.status_code == 400, cut.get_data(as_text=True)
    assert "connection was cut" in cut.get_data(as_text=True)
    expected = [(name, name in kept) for name in sorted(PHOTOS)]
    assert _state(session) == (1, 1, expected)
    retry = _post(client, personas, body, content_type)
    assert retry.status_code == 201, retry.get_data(as_text=True)
    assert _state(session) == (1, 1, [("a.jpg", True), ("b.jpg", True)])


def test_a_post_cut_inside_its_xml_stores_nothing(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:cut-2", list(PHOTOS))
    body, content_type = _body(xml, PHOTOS)
    before = dump_store(session, app)
    cut = _post(client, personas, body, content_type, body.index(xml) + len(xml) // 2)
    assert cut.status_code == 400
    assert dump_store(session, app) == before


@pytest.mark.parametrize(
    ("advertised", "photo_sizes", "posts"),
    [
        (50_000, [40_000, 40_000], [["p0.jpg"], ["p1.jpg"]]),
        (50_000, [10_000, 10_000, 40_000], [["p0.jpg", "p1.jpg"], ["p2.jpg"]]),
        (50_000, [60_000, 1_000], [["p0.jpg"], ["p1.jpg"]]),  # a file above the limit still goes, alone
        (10_000_000, [40_000, 40_000], [["p0.jpg", "p1.jpg"]]),
    ],
    ids=["one-photo-per-post", "small-photos-share", "oversized-photo", "big-limit-one-post"],
)
def test_collect_splits_by_the_advertised_length_and_every_post_is_stored(
    advertised: int,
    photo_sizes: list[int],
    posts: list[list[str]],
    app: Flask,
    client: FlaskClient,
    personas: Personas,
    session: Session,
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    app.config["OPENROSA_ACCEPT_CONTENT_LENGTH"] = advertised
    head = client.head(f"{personas.collect_prefix}/submission", headers=COLLECT_HEADERS)
    limit = accept_content_length(head.headers.get("X-OpenRosa-Accept-Content-Length"))
    assert limit == advertised
    photos = [(f"p{i}.jpg", bytes([65 + i]) * size) for i, size in enumerate(photo_sizes)]
    xml = photo_submission("uuid:split-1", [name for name, _ in photos])
    split = split_posts(xml, photos, limit)
    assert [[name for name, _ in post.files] for post in split] == posts
    assert [post.incomplete for post in split] == [True] * (len(posts) - 1) + [False]
    for post in split:
        body, content_type = _body(xml, dict(post.files), incomplete=post.incomplete)
        assert _post(client, personas, body, content_type).status_code == 201
    assert _state(session) == (1, 1, [(name, True) for name, _ in photos])
