"""The formList cache: a document kept per project, ``formID`` and caller URL, valid while the stamp holds.

Rules:
- FL-CACHE-HIT an unchanged formList is answered without reading its rows again (one stamp read).
- FL-CACHE-PUBLISH a publish, a new version or a state change is in the very next formList.
- FL-CACHE-ANY-WRITER a change made by another process (any SQL on ``forms`` or ``form_attachments``,
  not only the service's) moves the stamp in its own transaction: the next formList shows it.
- FL-CACHE-ETAG the cached document keeps its ETag; ``If-None-Match`` still answers 304.
- FL-CACHE-SAME after any sequence of changes (states through the API or plain SQL, attachments
  removed), the formList served is the one rendered afresh from the rows (Hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlalchemy import text
from sqlalchemy.orm import Session

from server.openrosa import formlist
from server.services import forms as svc
from tests.conftest import Personas
from tests.server.fixtures_forms import COOP_XLSX, ENTREPRENEUR_XLSX, media_form, publish_form

L = "{http://openrosa.org/xforms/xformsList}"


def _listed(client: FlaskClient, prefix: str) -> dict[str, dict[str, str]]:
    response = client.get(f"{prefix}/formList")
    assert response.status_code == 200
    entries = [{child.tag.removeprefix(L): child.text or "" for child in x} for x in etree.fromstring(response.data)]
    return {entry["formID"]: entry for entry in entries}


@pytest.fixture
def row_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the formList row reads (the cache's misses)."""
    reads: list[int] = []

    def counted(real: Callable[..., Any]) -> Callable[..., Any]:
        def counting(*args: Any, **kwargs: Any) -> Any:
            reads.append(1)
            return real(*args, **kwargs)

        return counting

    # A device's list (its own key) and the general one: both are row reads.
    monkeypatch.setattr(svc, "form_list", counted(svc.form_list))
    monkeypatch.setattr(svc, "device_form_list", counted(svc.device_form_list))
    return reads


def test_fl_cache_hit_and_etag(app: Flask, client: FlaskClient, personas: Personas, row_reads: list[int]) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    prefix = personas.collect_prefix
    first = client.get(f"{prefix}/formList")
    again = client.get(f"{prefix}/formList")
    assert again.data == first.data
    assert again.headers["ETag"] == first.headers["ETag"]
    assert client.get(f"{prefix}/formList", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert len(row_reads) == 1


def test_fl_cache_publish_version_and_state(
    app: Flask, client: FlaskClient, personas: Personas, row_reads: list[int]
) -> None:
    prefix = personas.collect_prefix
    publish_form(app, personas.project_id, media_form("1"), "m.xlsx")
    assert _listed(client, prefix)["media_test"]["version"] == "1"
    publish_form(app, personas.project_id, media_form("2"), "m.xlsx")
    assert _listed(client, prefix)["media_test"]["version"] == "2"
    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)
    assert set(_listed(client, prefix)) == {"media_test", "entrepreneur_followup"}
    url = f"/v1/projects/{personas.project_id}/forms/media_test"
    patched = client.patch(url, json={"state": "closing"}, headers=personas.manager.headers)
    assert patched.status_code == 200
    assert set(_listed(client, prefix)) == {"entrepreneur_followup"}
    assert len(row_reads) == 4  # one read per change, none more


@pytest.mark.parametrize(
    ("statement", "check"),
    [
        (
            "UPDATE forms SET state = 'closed' WHERE xml_form_id = 'coop_diagnostic'",
            lambda e: "coop_diagnostic" not in e,
        ),
        (
            "DELETE FROM form_attachments WHERE form_version_id IN "
            "(SELECT current_version_id FROM forms WHERE xml_form_id = 'media_test')",
            lambda e: "manifestUrl" not in e["media_test"],
        ),
    ],
    ids=["form-state", "attachments"],
)
def test_fl_cache_any_writer(
    app: Flask,
    client: FlaskClient,
    personas: Personas,
    session: Session,
    statement: str,
    check: Callable[[dict[str, dict[str, str]]], bool],
) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    publish_form(app, personas.project_id, media_form(), "media.xlsx")
    before = _listed(client, personas.collect_prefix)
    assert "coop_diagnostic" in before and "manifestUrl" in before["media_test"]
    # As another host would: plain SQL, no service, no message to this process.
    session.execute(text(statement))
    session.flush()
    assert check(_listed(client, personas.collect_prefix))


def test_fl_cache_unrelated_form_update_keeps_the_stamp(app: Flask, personas: Personas, session: Session) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    stamp = svc.formlist_stamp(session, personas.project_id)
    assert stamp != 0
    session.execute(text("UPDATE forms SET updated_at = created_at"))
    assert svc.formlist_stamp(session, personas.project_id) == stamp


_CHANGES = st.lists(
    st.tuples(
        st.sampled_from(["api", "sql", "drop-attachments"]),
        st.sampled_from(["coop_diagnostic", "media_test"]),
        st.sampled_from(["open", "closing", "closed"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_CHANGES)
def test_fl_cache_same_as_fresh(
    app: Flask, client: FlaskClient, personas: Personas, session: Session, changes: list[tuple[str, str, str]]
) -> None:
    if not session.execute(text("SELECT 1 FROM forms WHERE xml_form_id = 'media_test'")).first():
        publish_form(app, personas.project_id, COOP_XLSX)
        publish_form(app, personas.project_id, media_form(), "media.xlsx")
    prefix = personas.collect_prefix
    for how, form_id, state in changes:
        client.get(f"{prefix}/formList")  # cache what is there now
        if how == "api":
            url = f"/v1/projects/{personas.project_id}/forms/{form_id}"
            assert client.patch(url, json={"state": state}, headers=personas.manager.headers).status_code == 200
        elif how == "sql":
            session.execute(text("UPDATE forms SET state = :s WHERE xml_form_id = :f"), {"s": state, "f": form_id})
        else:
            session.execute(
                text(
                    "DELETE FROM form_attachments WHERE form_version_id IN "
                    "(SELECT current_version_id FROM forms WHERE xml_form_id = :f)"
                ),
                {"f": form_id},
            )
        session.flush()
        served = client.get(f"{prefix}/formList").data
        with app.test_request_context(f"{prefix}/formList"):
            base = formlist._base_url(personas.project_id, personas.device.token)
        assert served == formlist._render(base, svc.form_list(session, personas.project_id))
