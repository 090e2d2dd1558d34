"""Helpers for the exports tests: store parsed submissions, read an export zip back as tables.

``store_submission`` uses the submissions area's ``ingest_submission`` when it is implemented and
otherwise writes the ``submissions``/``submission_versions`` rows the same way (parsed against the
form version the XML names; an edit, ``deprecatedID``, becomes the new current version of its chain).
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from forms.schema import FormSchema
from forms.submission import parse_submission
from server.db.models.forms import Form, FormVersion
from server.db.models.submissions import Submission, SubmissionVersion
from server.db.transaction import transaction

DEFAULT_WHEN = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def version_schema(session: Session, form_db_id: int, version: str) -> tuple[int, FormSchema]:
    """The id and schema of a form's version (the current one when ``version`` is unknown)."""
    row = session.execute(
        select(FormVersion.id, FormVersion.schema_json).where(
            FormVersion.form_id == form_db_id, FormVersion.version == version
        )
    ).one_or_none()
    if row is None:
        form = session.get(Form, form_db_id)
        assert form is not None and form.current_version_id is not None
        row = session.execute(
            select(FormVersion.id, FormVersion.schema_json).where(FormVersion.id == form.current_version_id)
        ).one()
    return row.id, FormSchema.from_json(row.schema_json)


def store_submission(
    session: Session,
    project_id: int,
    form_db_id: int,
    xml: bytes,
    *,
    when: datetime = DEFAULT_WHEN,
    review_state: str = "received",
    submitter_id: int | None = None,
    device_id: str | None = None,
) -> int:
    """Store one submission XML (or an edit of one) as the submissions area does; return the version id."""
    from forms.submission import read_submission_header

    header = read_submission_header(xml)
    fv_id, schema = version_schema(session, form_db_id, header.version)
    record = parse_submission(xml, schema)
    with transaction(session):
        sub: Submission | None = None
        if record.deprecated_id:
            sub = session.scalars(
                select(Submission)
                .join(SubmissionVersion, SubmissionVersion.submission_id == Submission.id)
                .where(SubmissionVersion.form_id == form_db_id, SubmissionVersion.instance_id == record.deprecated_id)
            ).one_or_none()
        if sub is None:
            sub = Submission(
                project_id=project_id,
                form_id=form_db_id,
                instance_id=record.instance_id,
                current_instance_id=record.instance_id,
                review_state=review_state,
                edits=0,
                submitter_id=submitter_id,
                attachments_expected=len(record.attachments),
                attachments_present=0,
                created_at=when,
                updated_at=when,
            )
            session.add(sub)
            session.flush()
        else:
            sub.edits += 1
            sub.review_state = review_state
        version = SubmissionVersion(
            submission_id=sub.id,
            project_id=project_id,
            form_id=form_db_id,
            form_version_id=fv_id,
            instance_id=record.instance_id,
            deprecated_id=record.deprecated_id,
            form_version=record.version,
            xml=xml,
            xml_sha256=hashlib.sha256(xml).hexdigest(),
            record=dict(record.values),
            instance_name=record.instance_name,
            encrypted=record.encrypted,
            source="openrosa",
            received_at=when,
            submitter_id=submitter_id,
            device_id=device_id,
        )
        session.add(version)
        session.flush()
        sub.current_instance_id = record.instance_id
        return version.id


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
