"""Refused submissions (409 "kept for review") are listed and readable by managers through the JSON API.

Rules: RS-1 a refused payload is listed with its form id, instance id, reason, hash, size and who
sent it; RS-2 its XML reads back byte for byte, with the hash of the XML stored under the same
instance id; RS-3 pages by ``after_id`` and filters by ``form_id``; RS-4 another project's payload is
404; RS-5 bad query parameters are 400 naming the field.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sync.submissions import content_hash_xml
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, photo_submission, post_submission


@pytest.fixture
def refused(app: Flask, client: FlaskClient, personas: Personas) -> list[bytes]:
    """Two refused payloads for one stored submission (two distinct changed contents)."""
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    stored = photo_submission("uuid:kept-1", [])
    assert post_submission(client, personas.collect_prefix, stored).status_code == 201
    changed = [photo_submission("uuid:kept-1", [], site=site) for site in ("Tiznit", "Guelmim")]
    for xml in changed:
        response = post_submission(client, personas.collect_prefix, xml)
        assert response.status_code == 409 and b"kept for review" in response.data
    return [stored, *changed]


def test_a_manager_lists_and_reads_refused_content(
    client: FlaskClient, personas: Personas, refused: list[bytes]
) -> None:
    stored, first, _second = refused
    base = f"/v1/projects/{personas.project_id}/refused-submissions"
    listing = client.get(base, headers=personas.manager.headers)
    assert listing.status_code == 200
    rows = listing.get_json()
    assert [r["instanceId"] for r in rows] == ["uuid:kept-1", "uuid:kept-1"]
    row = rows[0]
    assert row["formId"] == "photo_visit" and row["reason"] == "id_conflict"
    assert row["size"] == len(first) and row["xmlSha256"]
    assert row["device"] == "test phone" and row["submitter"] is None and row["source"] == "openrosa"
    assert listing.headers["X-Total-Count"] == "2" and "Link" not in listing.headers

    detail = client.get(f"{base}/{row['id']}", headers=personas.manager.headers).get_json()
    assert detail["xml"].encode() == first
    assert detail["xmlSha256"] == content_hash_xml(first)
    assert detail["storedXmlSha256"] == content_hash_xml(stored)  # what the first arrival stored, to compare
    raw = client.get(detail["xmlUrl"], headers=personas.manager.headers)
    assert raw.status_code == 200 and raw.data == first and raw.mimetype == "application/xml"


def test_pages_and_form_filter(client: FlaskClient, personas: Personas, refused: list[bytes]) -> None:
    base = f"/v1/projects/{personas.project_id}/refused-submissions"
    page = client.get(f"{base}?limit=1", headers=personas.manager.headers)
    (first,) = page.get_json()
    assert page.headers["X-Total-Count"] == "2"
    following = page.headers["Link"]
    assert f"afterId={first['id']}" in following
    rest = client.get(following[1 : following.index(">")], headers=personas.manager.headers).get_json()
    assert len(rest) == 1 and rest[0]["id"] > first["id"]
    other = client.get(f"{base}?formId=coop_diagnostic", headers=personas.manager.headers)
    assert other.get_json() == [] and other.headers["X-Total-Count"] == "0"


def test_another_project_s_refused_content_is_404(
    client: FlaskClient, personas: Personas, refused: list[bytes]
) -> None:
    base = f"/v1/projects/{personas.project_id}/refused-submissions"
    refused_id = client.get(base, headers=personas.admin.headers).get_json()[0]["id"]
    response = client.get(
        f"/v1/projects/{personas.other_project_id}/refused-submissions/{refused_id}", headers=personas.admin.headers
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("afterId=x", "afterId"), ("colour=red", "colour")],
    ids=["limit", "after", "unknown"],
)
def test_bad_query_is_400_naming_the_field(client: FlaskClient, personas: Personas, query: str, field: str) -> None:
    response = client.get(
        f"/v1/projects/{personas.project_id}/refused-submissions?{query}", headers=personas.manager.headers
    )
    assert response.status_code == 400
    assert field in response.get_json()["details"]["fields"]
