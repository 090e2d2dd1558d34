"""Exports read the store page by page: the records are the same whatever the page size.

Rule P1: ``iter_export_records`` yields every stored version once, in (submission, version) order,
for any page size, including page boundaries that fall inside an edit chain.
Rule P2: the records' timestamps are the stored instants in UTC (``datetime.UTC``) whatever the
connection's time zone, and reading them leaves that time zone as it was (PostgreSQL).
"""

from __future__ import annotations

import uuid
from datetime import UTC

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from exports import ExportOptions
from server.db.queries import exports as q
from tests.conftest import REPO, Backend, Personas
from tests.server.fixtures_exports import post_submission_xml
from tests.server.fixtures_forms import COOP_XLSX, publish_form

SUBMISSIONS = REPO / "examples" / "submissions" / "coop_diagnostic"
FIRST = "uuid:2f8db99c-f871-439e-8c1f-230c48988777"
EDIT = "uuid:1765513a-04a4-40e1-bacd-dae53ee2ede4"


def _with_ids(xml: bytes, instance_id: str, deprecated_id: str | None = None) -> bytes:
    text = xml.decode()
    text = text.replace(FIRST, instance_id).replace(EDIT, instance_id)
    if deprecated_id is not None:
        # The edit example deprecates FIRST; after the replace above both ids are ours: fix the link.
        text = text.replace(
            f"<deprecatedID>{instance_id}</deprecatedID>", f"<deprecatedID>{deprecated_id}</deprecatedID>"
        )
    return text.encode()


@pytest.fixture
def stored(app: Flask, client: FlaskClient, personas: Personas) -> int:
    publish_form(app, personas.project_id, COOP_XLSX)
    base = (SUBMISSIONS / "01_tamount_argan_tiznit.xml").read_bytes()
    edit = (SUBMISSIONS / "03_tamount_edit_revenue.xml").read_bytes()
    for _ in range(4):
        first = f"uuid:{uuid.uuid4()}"
        post_submission_xml(client, personas, _with_ids(base, first))
        second = f"uuid:{uuid.uuid4()}"
        post_submission_xml(client, personas, _with_ids(edit, second, deprecated_id=first))
    return personas.project_id


def _read(session: Session, project_id: int, page_size: int) -> list[tuple[str, str, bool]]:
    form = q.get_form(session, project_id, "coop_diagnostic")
    options = ExportOptions(include_edits=True)
    return [
        (r.instance_id, r.form_version, r.current) for r in q.iter_export_records(session, form.id, options, page_size)
    ]


@pytest.mark.parametrize("page_size", [1, 2, 3, 7], ids=lambda n: f"page-{n}")
def test_any_page_size_reads_the_same_records(session: Session, stored: int, page_size: int) -> None:
    everything = _read(session, stored, 10_000)
    assert len(everything) == 8  # 4 submissions x 2 versions
    assert sum(1 for _, _, current in everything if current) == 4
    assert _read(session, stored, page_size) == everything


def test_timestamps_are_read_in_utc_whatever_the_connections_time_zone(
    session: Session, stored: int, backend: Backend
) -> None:
    if backend.name != "postgresql":
        pytest.skip(reason="PostgreSQL only: SQLite has no session time zone, its timestamps are UTC as stored")
    form = q.get_form(session, stored, "coop_diagnostic")
    options = ExportOptions(include_edits=True)
    expected = {
        instance_id: (created, updated)
        for instance_id, created, updated in session.execute(
            text(
                "SELECT v.instance_id, s.created_at, s.updated_at FROM submission_versions v "
                "JOIN submissions s ON s.id = v.submission_id"
            )
        )
    }
    session.execute(text("SET TIME ZONE 'Africa/Casablanca'"))
    session.commit()  # the connection's own setting, past this transaction
    try:
        records = list(q.iter_export_records(session, form.id, options))
        assert len(records) == 8
        for record in records:
            assert record.submission_date.tzinfo is UTC
            assert record.updated_at is None or record.updated_at.tzinfo is UTC
            assert (record.submission_date, record.updated_at) == expected[record.instance_id]
        assert session.execute(text("SHOW TIME ZONE")).scalar_one() == "Africa/Casablanca"
    finally:
        session.rollback()
        session.execute(text("SET TIME ZONE DEFAULT"))
        session.commit()
