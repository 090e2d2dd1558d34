"""Role matrix rows for the submissions area: the OpenRosa submission door and the JSON API (Central's REST
submissions: list, read, create, edit, versions, XML, review, files, delete, restore)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.role_matrix import PERSONAS, Case, statuses

SUBMITTERS = ("admin", "manager", "coach", "device")
READERS = ("admin", "manager", "analyst")
FORM = "/v1/projects/{pid}/forms/photo_visit/submissions"
FORM_RULE = "/v1/projects/<int:project_id>/forms/<xml_form_id>/submissions"


def photo_xml(instance_id: str, photos: list[str], deprecated_id: str | None = None) -> bytes:
    """A photo_visit submission (imported late: the matrix modules load before the test support)."""
    from tests.server.test_submissions_support import photo_submission

    return photo_submission(instance_id, photos, deprecated_id=deprecated_id)


def with_submission(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the photo form and store one submission with one photo in the personas' project."""
    from tests.server.fixtures_forms import publish_form
    from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission, post_submission

    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    xml = photo_submission("uuid:matrix-1", ["m.jpg"])
    response = post_submission(app.test_client(), personas.collect_prefix, xml, {"m.jpg": b"matrix photo"})
    assert response.status_code == 201, response.get_data(as_text=True)
    return {}


CASES = [
    Case(
        "HEAD",
        "/v1/projects/{pid}/submission",
        "/v1/projects/<int:project_id>/submission",
        statuses(204, allowed=SUBMITTERS),
    ),
    Case(
        "HEAD",
        "/v1/key/{token}/projects/{pid}/submission",
        "/v1/key/<token>/projects/<int:project_id>/submission",
        {persona: 204 for persona in PERSONAS},
    ),
    Case("GET", FORM, FORM_RULE, statuses(200, allowed=READERS), setup="with_submission"),
    Case(
        "GET",
        FORM + "/uuid:matrix-1",
        FORM_RULE + "/<instance_id>",
        statuses(200, allowed=READERS),
        setup="with_submission",
    ),
    Case(
        "PATCH",
        FORM + "/uuid:matrix-1",
        FORM_RULE + "/<instance_id>",
        statuses(200, allowed=("admin", "manager")),
        json={"reviewState": "approved", "comment": "vu"},
        setup="with_submission",
    ),
    Case(
        "GET",
        FORM + "/uuid:matrix-1/attachments/m.jpg",
        FORM_RULE + "/<instance_id>/attachments/<name>",
        statuses(200, allowed=READERS),
        setup="with_submission",
    ),
    Case(
        "DELETE",
        FORM + "/uuid:matrix-1",
        FORM_RULE + "/<instance_id>",
        statuses(200, allowed=("admin", "manager")),
        setup="with_submission",
    ),
    Case(
        "POST",
        FORM + "/uuid:matrix-1/restore",
        FORM_RULE + "/<instance_id>/restore",
        statuses(200, allowed=("admin", "manager")),
        setup="with_submission",
    ),
    Case("GET", FORM + "-columns", FORM_RULE + "-columns", statuses(200, allowed=READERS), setup="with_submission"),
    Case(
        "PUT",
        FORM + "-columns",
        FORM_RULE + "-columns",
        statuses(200, allowed=READERS),
        json={"paths": ["site"], "display": "values"},
        setup="with_submission",
    ),
    Case(
        "GET",
        FORM + "?sort=field&sortField=site&order=desc&columns=site&reviewState=null,approved",
        FORM_RULE,
        statuses(200, allowed=READERS),
        setup="with_submission",
    ),
    Case(
        "POST",
        FORM,
        FORM_RULE,
        statuses(200, allowed=SUBMITTERS),
        kwargs={"data": photo_xml("uuid:matrix-2", []), "content_type": "application/xml"},
        setup="with_submission",
    ),
    Case(
        "PUT",
        FORM + "/uuid:matrix-1",
        FORM_RULE + "/<instance_id>",
        statuses(200, allowed=("admin", "manager")),
        kwargs={"data": photo_xml("uuid:matrix-1b", ["m.jpg"], "uuid:matrix-1"), "content_type": "application/xml"},
        setup="with_submission",
    ),
    Case(
        "GET",
        FORM + "/uuid:matrix-1.xml",
        FORM_RULE + "/<instance_id>.xml",
        statuses(200, allowed=READERS),
        setup="with_submission",
    ),
    Case(
        "GET",
        FORM + "/uuid:matrix-1/versions",
        FORM_RULE + "/<instance_id>/versions",
        statuses(200, allowed=READERS),
        setup="with_submission",
    ),
    Case(
        "GET",
        FORM + "/uuid:matrix-1/attachments",
        FORM_RULE + "/<instance_id>/attachments",
        statuses(200, allowed=READERS),
        setup="with_submission",
    ),
    Case(
        "POST",
        FORM + "/uuid:matrix-1/attachments/m.jpg",
        FORM_RULE + "/<instance_id>/attachments/<name>",
        statuses(200, allowed=SUBMITTERS),
        kwargs={"data": b"matrix photo", "content_type": "image/jpeg"},
        setup="with_submission",
    ),
]
