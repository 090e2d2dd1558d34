"""Helpers for the exports tests: submit through the real doors, read an export zip back as tables.

Submissions go through the submissions area, never straight into its tables:
- ``post_submission_xml`` POSTs like ODK Collect (``/v1/projects/{p}/submission``, multipart
  ``xml_submission_file``, HTTP Basic of a persona) and, when asked, sets the review state with the
  review API (``PATCH .../submissions/{instanceID}``); an edit is just an XML naming ``deprecatedID``.
- ``ingest_xml`` calls ``server.services.submissions.ingest_submission`` for code without a test client
  (the scheduler test's committed database).
- ``received_at(when)`` pins the server clock the ingestion reads, so ``SubmissionDate`` (and the
  ``since``/``until`` filters on it) is deterministic in golden files.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from forms.schema import FormSchema
from server.auth import Principal
from server.services import submissions as submissions_svc
from tests.conftest import Persona, Personas
from tests.server.test_submissions_support import post_submission

DEFAULT_WHEN = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
# The export's review-state names → the names the review API takes.
REVIEW_API_STATE = {"received": None, "hasIssues": "hasIssues", "approved": "approved", "rejected": "rejected"}


@contextmanager
def received_at(when: datetime | None) -> Iterator[None]:
    """Within the block, the submissions service stamps what it stores with ``when`` (no-op for None)."""
    if when is None:
        yield
        return
    with mock.patch.object(submissions_svc, "utcnow", lambda: when):
        yield


def post_submission_xml(
    client: FlaskClient,
    personas: Personas,
    xml: bytes,
    *,
    submitter: Persona | None = None,
    when: datetime | None = DEFAULT_WHEN,
    review_state: str | None = None,
    expect: int = 201,
) -> str | None:
    """POST one submission XML as ODK Collect does; return its meta/instanceID (None: refused, or none).

    ``submitter`` defaults to the coach (HTTP Basic); ``review_state`` (export names: ``hasIssues``,
    ``approved``, ``rejected``) is then set by the manager through the review API.
    """
    who = submitter or personas.coach
    with received_at(when):
        response = post_submission(
            client, f"/v1/projects/{personas.project_id}", xml, headers=who.basic, query="?deviceID=collect%3Aexports"
        )
    assert response.status_code == expect, response.get_data(as_text=True)[:500]
    if expect != 201:
        return None
    from forms.submission import read_submission_header

    header = read_submission_header(xml)
    if review_state is not None:
        assert header.instance_id is not None, "give review states only to submissions with an instanceID"
        review(client, personas, header.form_id, header.instance_id, review_state)
    return header.instance_id


def review(client: FlaskClient, personas: Personas, xml_form_id: str, instance_id: str, state: str) -> None:
    """Set a submission's review state through the review API, as the manager."""
    response = client.patch(
        f"/v1/projects/{personas.project_id}/forms/{xml_form_id}/submissions/{instance_id}",
        json={"reviewState": REVIEW_API_STATE[state]},
        headers=personas.manager.headers,
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:500]


def ingest_xml(
    session: Session, project_id: int, xml: bytes, principal: Principal, *, when: datetime | None = DEFAULT_WHEN
) -> submissions_svc.IngestResult:
    """Ingest one submission through ``ingest_submission`` (the OpenRosa door's service); assert it was stored."""
    with received_at(when):
        result = submissions_svc.ingest_submission(
            session,
            project_id=project_id,
            xml=xml,
            files={},
            principal=principal,
            device_id="collect:exports",
            source="openrosa",
        )
    assert result.version_id is not None, result.outcome
    return result


def zip_tables(data: bytes) -> dict[str, str]:
    """The text of every member of an export zip, by name (BOM stripped)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n).decode("utf-8-sig") for n in zf.namelist()}


def table_rows(text: str) -> list[dict[str, str]]:
    """A CSV's rows as dicts."""
    return list(csv.DictReader(io.StringIO(text)))


def rows_by_key(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every data row of every table by its KEY (with the table name under ``_table``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, text in files.items():
        if name.endswith(".csv") and name != "cleaning_report.csv":
            for row in table_rows(text):
                out[row["KEY"]] = {**row, "_table": name}
    return out


def assert_export_holds(
    files: dict[str, str], values_by_instance: dict[str, Any], schemas: list[FormSchema], *, split_geopoint: bool
) -> int:
    """Check every submitted leaf is in the export, in the row its repeat indices name; return the count.

    A leaf at ``a/r[2]/x[1]/f`` must be in the row whose KEY is ``<instanceID>/a/r[2]/x[1]`` (so the row
    is linked to the right parent), column ``f``; root leaves in the root row, column ``a-b-f``. Leaves
    the forms do not declare (``formhub/uuid``) are not exported, by design.
    """
    from forms.submission import flatten_values, strip_repeat_indices

    rows = rows_by_key(files)
    questions = {f.path: f for s in schemas for f in s.fields if f.kind == "question"}
    checked = 0
    for instance, values in values_by_instance.items():
        assert instance in rows, f"submission {instance} is missing from the export"
        for path, value in flatten_values(values).items():
            field = questions.get(strip_repeat_indices(path))
            if field is None:
                continue
            cut = path.rfind("]")
            key = instance if cut < 0 else f"{instance}/{path[: cut + 1]}"
            rel = path if cut < 0 else path[cut + 2 :]
            row = rows[key]
            if cut >= 0:  # the parent link: PARENT_KEY is the enclosing row's KEY
                parent = key.rsplit("/", 1)[0]
                parent_cut = parent.rfind("]")
                expected_parent = instance if parent_cut < 0 else parent[: parent_cut + 1]
                assert row["PARENT_KEY"] == expected_parent, (key, row["PARENT_KEY"])
            header = rel.replace("/", "-")
            if field.bind_type == "geopoint" and split_geopoint:
                parts = [row[f"{header}-{p}"] for p in ("Latitude", "Longitude", "Altitude", "Accuracy")]
                assert " ".join(p for p in parts if p) == " ".join(value.split()), (key, header)
            else:
                assert header in row, f"no column {header!r} in {row['_table']}"
                assert row[header] == value, (key, header, row[header], value)
            checked += 1
    return checked
