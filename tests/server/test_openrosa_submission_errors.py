"""Bad input at the OpenRosa submission door: the right 4xx with an OpenRosa message, and an untouched store.

Rules:
- E1 every refusal below answers its status with an ``OpenRosaResponse`` ``<message>`` and the OpenRosa headers.
- E2 after a refusal, every table (all rows) and the blob directory are exactly as before.
- E3 messages are French when ``Accept-Language`` prefers French.
- E4 closed forms refuse (403); closing forms and older published versions accept; drafts are unknown.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import (
    COLLECT_HEADERS,
    PHOTO_XFORM,
    dump_store,
    photo_submission,
    post_submission,
)

LIMIT = 10_000

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<data id="photo_visit" version="1"><site>&lol3;</site><meta><instanceID>uuid:lol</instanceID></meta></data>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<data id="photo_visit" version="1"><site>&xxe;</site><meta><instanceID>uuid:xxe</instanceID></meta></data>"""


@dataclass(frozen=True)
class Ctx:
    client: FlaskClient
    prefix: str
    personas: Personas


def _chunked_multipart(parts: list[tuple[str, str, bytes]]) -> tuple[Callable[[], io.BytesIO], str]:
    boundary = "fieldsyncboundary"
    body = b""
    for name, filename, content in parts:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + content
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return (lambda: io.BytesIO(body)), f"multipart/form-data; boundary={boundary}"


def _post_chunked(ctx: Ctx, parts: list[tuple[str, str, bytes]]) -> TestResponse:
    make, content_type = _chunked_multipart(parts)
    return ctx.client.post(
        f"{ctx.prefix}/submission",
        input_stream=make(),
        headers={**COLLECT_HEADERS, "Content-Type": content_type, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


CASES: list[tuple[str, int, str, Callable[[Ctx], TestResponse]]] = [
    (
        "no-xml-part",
        400,
        "xml_submission_file",
        lambda c: post_submission(c.client, c.prefix, None, {"a.jpg": b"photo"}),
    ),
    (
        "not-multipart",
        400,
        "xml_submission_file",
        lambda c: c.client.post(
            f"{c.prefix}/submission",
            data=photo_submission("uuid:x", []),
            content_type="text/xml",
            headers=COLLECT_HEADERS,
        ),
    ),
    (
        "broken-xml",
        400,
        "cannot be read",
        lambda c: post_submission(c.client, c.prefix, b"<data id='photo_visit'><site>"),
    ),
    ("billion-laughs", 400, "cannot be read", lambda c: post_submission(c.client, c.prefix, BILLION_LAUGHS)),
    ("external-entity", 400, "cannot be read", lambda c: post_submission(c.client, c.prefix, XXE)),
    ("no-form-id", 400, "cannot be read", lambda c: post_submission(c.client, c.prefix, b"<data><a/></data>")),
    (
        "unknown-form",
        404,
        "'nowhere' with version '7'",
        lambda c: post_submission(
            c.client,
            c.prefix,
            photo_submission("uuid:nf", ["a.jpg"]).replace(
                b'id="photo_visit" version="1"', b'id="nowhere" version="7"'
            ),
            {"a.jpg": b"photo"},
        ),
    ),
    (
        "unknown-version",
        404,
        "'photo_visit' with version '99'",
        lambda c: post_submission(
            c.client, c.prefix, photo_submission("uuid:nv", []).replace(b'version="1"', b'version="99"')
        ),
    ),
    (
        "wrong-project",
        404,
        "'photo_visit'",
        lambda c: post_submission(
            c.client,
            f"/v1/projects/{c.personas.other_project_id}",
            photo_submission("uuid:wp", ["a.jpg"]),
            {"a.jpg": b"photo"},
            headers=c.personas.admin.basic,
        ),
    ),
    (
        "edit-of-itself",
        400,
        "cannot be read",
        lambda c: post_submission(c.client, c.prefix, photo_submission("uuid:self", [], deprecated_id="uuid:self")),
    ),
    (
        "encrypted-without-instance-id",
        400,
        "instanceID",
        lambda c: post_submission(
            c.client,
            c.prefix,
            b'<data id="photo_visit" version="1" encrypted="yes"><base64EncryptedKey>a</base64EncryptedKey>'
            b"<encryptedXmlFile>submission.xml.enc</encryptedXmlFile></data>",
        ),
    ),
    (
        "body-over-limit",
        413,
        str(LIMIT),
        lambda c: post_submission(
            c.client, c.prefix, photo_submission("uuid:big", ["a.jpg"]), {"a.jpg": b"x" * 400_000}
        ),
    ),
    (
        "file-part-over-limit",
        413,
        str(LIMIT),
        lambda c: post_submission(
            c.client, c.prefix, photo_submission("uuid:bigf", ["a.jpg"]), {"a.jpg": b"x" * (LIMIT + 1)}
        ),
    ),
    (
        "chunked-body-over-limit",
        413,
        str(LIMIT),
        lambda c: _post_chunked(
            c,
            [
                ("xml_submission_file", "s.xml", photo_submission("uuid:ch", ["a.jpg"])),
                ("a.jpg", "a.jpg", b"x" * 400_000),
            ],
        ),
    ),
]


@pytest.mark.parametrize(("status", "needle", "send"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_the_store_is_untouched(
    app: Flask,
    client: FlaskClient,
    personas: Personas,
    session: Session,
    status: int,
    needle: str,
    send: Callable[[Ctx], TestResponse],
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    app.config["MAX_SUBMISSION_BYTES"] = LIMIT
    # One accepted submission with a photo first, so "untouched" covers existing rows and blobs too.
    ok = post_submission(client, personas.collect_prefix, photo_submission("uuid:ok", ["ok.jpg"]), {"ok.jpg": b"ok"})
    assert ok.status_code == 201
    before = dump_store(session, app)
    response = send(Ctx(client, personas.collect_prefix, personas))
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert "<OpenRosaResponse" in text and 'nature="error"' in text
    assert needle in text
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    assert response.headers["X-OpenRosa-Accept-Content-Length"] == str(LIMIT)
    assert dump_store(session, app) == before


def test_messages_are_french_when_asked(app: Flask, client: FlaskClient, personas: Personas) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:fr", []).replace(b'version="1"', b'version="42"')
    response = post_submission(
        client, personas.collect_prefix, xml, headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}
    )
    assert response.status_code == 404
    assert "Ce projet n'a pas de formulaire « photo_visit » en version « 42 »" in response.get_data(as_text=True)


def _set_state(app: Flask, personas: Personas, state: str) -> None:
    from server.services import forms as forms_svc
    from server.store import get_store

    with app.app_context():
        s = get_store().sessions()
        forms_svc.set_form_state(s, personas.project_id, "photo_visit", state, actor="test")
        s.close()


def test_closed_form_refuses_closing_accepts_old_versions_accepted(
    app: Flask, client: FlaskClient, personas: Personas, session: Session
) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    publish_form(app, personas.project_id, PHOTO_XFORM.replace(b'version="1"', b'version="2"'), "photo_visit.xml")
    stored = photo_submission("uuid:before-close", [])
    assert post_submission(client, personas.collect_prefix, stored).status_code == 201
    _set_state(app, personas, "closing")
    # A phone still on version 1 while version 2 is current: accepted (phones keep old versions for weeks).
    assert post_submission(client, personas.collect_prefix, photo_submission("uuid:closing", [])).status_code == 201
    _set_state(app, personas, "closed")
    before = dump_store(session, app)
    refused = post_submission(client, personas.collect_prefix, photo_submission("uuid:closed", []))
    assert refused.status_code == 403
    assert "closed" in refused.get_data(as_text=True)
    assert dump_store(session, app) == before
    # A retry of something stored before the form closed is still a success for the phone.
    assert post_submission(client, personas.collect_prefix, stored).status_code == 201


def test_draft_version_is_unknown(app: Flask, client: FlaskClient, personas: Personas) -> None:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    publish_form(
        app, personas.project_id, PHOTO_XFORM.replace(b'version="1"', b'version="3"'), "photo_visit.xml", publish=False
    )
    xml = photo_submission("uuid:draft", []).replace(b'version="1"', b'version="3"')
    assert post_submission(client, personas.collect_prefix, xml).status_code == 404
