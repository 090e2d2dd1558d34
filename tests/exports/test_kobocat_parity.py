"""Parity with KoboCAT's expected CSV exports in the shared corpus (same forms, same submissions).

KoboCAT writes one wide table (``repeat[n]/field`` columns); we write one table per repeat. Every cell
KoboCAT has is looked up in our layout and must hold the same data:
- ``a/b/c`` (no index) → root table column ``a-b-c``;
- ``r[2]/x[1]/f`` → the row with ``KEY = <instanceID>/r[2]/x[1]`` in the repeat's table, column ``f``
  (our KEY carries the same ``[n]`` indices, so the wide layout maps onto ours exactly);
- ``_gps_latitude`` … ``_gps_precision`` → ``gps-Latitude`` … ``gps-Accuracy``;
- ``select/choice`` → our split column ``select/choice``;
- ``_submission_time`` → ``SubmissionDate`` (we append milliseconds and ``Z``).

Documented differences, normalised before comparing:
- KoboCAT writes ``n/a`` for a missing value, we write an empty cell;
- KoboCAT writes ``True``/``False`` for split select_multiple cells, we write ``1``/``0``; for an
  unanswered select_multiple KoboCAT writes ``False`` (or ``n/a``) in every cell, we leave them empty
  (unanswered is not "not selected");
- KoboCAT keeps the raw ``gps`` column next to the split parts; we split it (``split_geopoint``);
- ``_uuid``, ``_tags``, ``_notes``, ``_validation_status`` have no counterpart;
- the flattened variant (one row per repeat instance with parent values copied) is not compared: our
  repeat tables link to their parent by PARENT_KEY instead of copying.

Schemas come from the XLSForms through ``forms.convert.convert_upload`` and submissions through
``forms.submission.parse_submission`` — the real pipeline, not hand-built schemas.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exports.options import ExportOptions
from exports.records import ExportRecord
from tests import corpus_conversions
from tests.exports.coop_fixture import export_files, table_dicts

CASES = [
    ("tutorial_w_repeats", "tutorial_w_repeats_export_wide.csv"),
    ("nested_repeats", "nested_repeats_export.csv"),
    ("double_repeat", "double_repeat_export.csv"),
    ("transportation", "transportation_export.csv"),
]
_NO_COUNTERPART = {"_uuid", "_tags", "_notes", "_validation_status", "gps"}
_GPS = re.compile(r"^_(.+)_(latitude|longitude|altitude|precision)$")
_GPS_PART = {"latitude": "Latitude", "longitude": "Longitude", "altitude": "Altitude", "precision": "Accuracy"}


def _kobo(value: str) -> str:
    return {"n/a": "", "True": "1", "False": "0"}.get(value, value)


def _ours(rows_by_key: dict[str, dict[str, str]], instance: str, column: str) -> str | None:
    """Our cell for KoboCAT's ``column`` of submission ``instance`` (None: no such column)."""
    if column == "_submission_time":
        return rows_by_key[instance]["SubmissionDate"]
    gps = _GPS.match(column)
    if gps:
        return rows_by_key[instance].get(f"{gps.group(1)}-{_GPS_PART[gps.group(2)]}")
    segments = column.split("/")
    last_indexed = max((i for i, s in enumerate(segments) if s.endswith("]")), default=-1)
    key = "/".join([instance, *segments[: last_indexed + 1]])
    row = rows_by_key.get(key)
    if row is None:
        return ""  # that repeat instance does not exist in this submission: KoboCAT writes n/a
    rest = segments[last_indexed + 1 :]
    for header in ("-".join(rest), "-".join(rest[:-1]) + "/" + rest[-1]):
        if header in row:
            return row[header]
    return None


@pytest.mark.parametrize(("form", "expected_csv"), CASES, ids=[c[0] for c in CASES])
def test_same_cells_as_kobocat(corpus_dir: Path, form: str, expected_csv: str) -> None:
    submission = pytest.importorskip("forms.submission", reason="the submission parser is not in the tree yet")
    xls = corpus_dir / "forms" / "kobocat" / f"{form}.xls"
    expected_path = corpus_dir / "expected" / "kobocat" / expected_csv
    if not xls.is_file() or not expected_path.is_file():
        pytest.skip(reason=f"corpus files for {form} are absent")
    schema = corpus_conversions.convert(xls.read_bytes(), xls.name, form).schema
    expected = list(csv.DictReader(io.StringIO(expected_path.read_text(encoding="utf-8"))))
    times = {row["meta/instanceID"]: row.get("_submission_time", "") for row in expected}

    records: dict[str, ExportRecord] = {}
    for xml in sorted((corpus_dir / "submissions" / "kobocat" / form).glob("*.xml")):
        try:
            parsed = submission.parse_submission(xml.read_bytes(), schema)
        except Exception:  # encrypted manifests and deliberately broken files are not this test's concern
            continue
        if parsed.instance_id in times and parsed.instance_id not in records:
            when = times[parsed.instance_id] or "2013-02-18T15:54:01"
            records[parsed.instance_id] = ExportRecord(
                parsed.instance_id, parsed.version, datetime.fromisoformat(when).replace(tzinfo=UTC), parsed.values
            )
    assert set(records) == set(times), "every submission KoboCAT exported must be in the corpus"

    files = export_files(list(records.values()), ExportOptions(split_select_multiple=True), schemas=(schema,))
    rows_by_key = {
        row["KEY"]: row
        for name, text in files.items()
        if name.endswith(".csv") and name != "cleaning_report.csv"
        for row in table_dicts(text)
    }
    compared = 0
    for kobo_row in expected:
        instance = kobo_row["meta/instanceID"]
        ours_root = rows_by_key[instance]
        for column, value in kobo_row.items():
            if column is None or column in _NO_COUNTERPART:
                continue  # None: KoboCAT's transportation rows end with a stray comma
            got = _ours(rows_by_key, instance, column)
            assert got is not None, f"no column for KoboCAT's {column!r}"
            if column == "_submission_time":
                assert got == value + ".000Z"
                continue
            want = _kobo(value)
            select = column.rpartition("/")[0].replace("/", "-")
            if want == "0" and got == "" and ours_root.get(select, "x") == "":
                continue  # unanswered select_multiple: KoboCAT says False, we leave it empty
            assert got == want, f"{form} {instance} {column}: ours {got!r}, KoboCAT {value!r}"
            compared += 1
    assert compared >= len(expected)
