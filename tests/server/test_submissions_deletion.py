"""Soft deletion of submissions: hidden from reads and exports, restorable, and never resubmitted (409)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AuditEvent
from tests.conftest import Personas
from tests.server.faulty_transport import FaultyTransport
from tests.server.fixtures_exports import table_rows, zip_tables
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM, dump_store, photo_submission, post_submission

KEPT = "uuid:kept-1"
GONE = "uuid:gone-1"


@dataclass(frozen=True)
class Stored:
    """Two stored submissions of the photo form, ``GONE`` soft-deleted by the manager."""

    form: str
    gone_xml: bytes


@pytest.fixture()
def stored(app: Flask, client: FlaskClient, personas: Personas) -> Stored:
    publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")
    for instance_id in (KEPT, GONE):
        response = post_submission(client, personas.collect_prefix, photo_submission(instance_id, []))
        assert response.status_code == 201, response.get_data(as_text=True)
    form = f"/v1/projects/{personas.project_id}/forms/photo_visit"
    for _ in range(2):  # deleting twice is harmless
        response = client.delete(f"{form}/submissions/{GONE}", headers=personas.manager.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["deletedBy"].startswith("user:")
    return Stored(form, photo_submission(GONE, []))


def _listed(client: FlaskClient, personas: Personas, stored: Stored, query: str = "") -> list[str]:
    response = client.get(f"{stored.form}/submissions{query}", headers=personas.analyst.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["instanceId"] for item in response.get_json()]


def _actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("submission.%"))))


def test_a_deleted_submission_is_hidden_then_restored(
    client: FlaskClient, session: Session, personas: Personas, stored: Stored
) -> None:
    assert _listed(client, personas, stored) == [KEPT]
    assert _listed(client, personas, stored, "?deleted=true") == [GONE]
    headers = personas.analyst.headers
    assert client.get(f"{stored.form}/submissions/{GONE}", headers=headers).status_code == 404
    trashed = client.get(f"{stored.form}/submissions/{GONE}?deleted=true", headers=headers)
    assert trashed.status_code == 200 and trashed.get_json()["deletedAt"] is not None
    assert _actions(session).count("submission.delete") == 1

    restored = client.post(f"{stored.form}/submissions/{GONE}/restore", headers=personas.manager.headers)
    assert restored.status_code == 200, restored.get_data(as_text=True)
    assert restored.get_json()["deletedAt"] is None
    assert sorted(_listed(client, personas, stored)) == [GONE, KEPT]
    assert _listed(client, personas, stored, "?deleted=true") == []
    assert _actions(session).count("submission.restore") == 1
    again = post_submission(client, personas.collect_prefix, stored.gone_xml)
    assert again.status_code == 201, again.get_data(as_text=True)  # a plain retry once restored


def test_exports_leave_deleted_submissions_out_unless_asked(
    client: FlaskClient, personas: Personas, stored: Stored
) -> None:
    response = client.get(f"{stored.form}/export.zip", headers=personas.analyst.headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    files = zip_tables(response.get_data())
    assert [row["KEY"] for row in table_rows(files["photo_visit.csv"])] == [KEPT]
    report = table_rows(files["cleaning_report.csv"])
    assert {r["step"]: int(r["count"]) for r in report if r["table"] == "*"}.get("excluded:deleted") == 1

    response = client.get(f"{stored.form}/export.zip?includeDeleted=true", headers=personas.analyst.headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    rows = table_rows(zip_tables(response.get_data())["photo_visit.csv"])
    assert {row["KEY"]: row["Status"] for row in rows} == {KEPT: "", GONE: "deleted"}


@pytest.mark.parametrize(
    ("language", "words"),
    [("en", "has been deleted"), ("fr", "a été supprimé")],
    ids=["english", "french"],
)
def test_resubmitting_or_editing_a_deleted_instance_is_409_and_stores_nothing(
    app: Flask, client: FlaskClient, session: Session, personas: Personas, stored: Stored, language: str, words: str
) -> None:
    edit = photo_submission("uuid:gone-2", [], site="Tiznit", deprecated_id=GONE)
    before = dump_store(session, app)
    for xml in (stored.gone_xml, photo_submission(GONE, [], site="other content"), edit):
        response = post_submission(client, personas.collect_prefix, xml, headers={"Accept-Language": language})
        assert response.status_code == 409, response.get_data(as_text=True)
        assert words in response.get_data(as_text=True)
    assert dump_store(session, app) == before


def test_pushing_a_deleted_instance_is_rejected(client: FlaskClient, personas: Personas, stored: Stored) -> None:
    transport = FaultyTransport(client, personas.device.headers, personas.project_id)
    item = {
        "type": "submission",
        "instanceId": GONE,
        "formId": "photo_visit",
        "formVersion": "1",
        "data": stored.gone_xml.decode(),
    }
    pushed = transport.push("phone-1", [item], "ok")
    assert pushed is not None
    result = pushed["results"][0]
    assert (result["status"], result["reason"]) == ("rejected", "deleted"), result
    assert _listed(client, personas, stored) == [KEPT]
