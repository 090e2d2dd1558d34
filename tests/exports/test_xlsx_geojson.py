"""XLSX and GeoJSON: same data as the CSV zip, in other shapes.

Rules checked:
- X1 one sheet per table, same cells as the CSVs (typed: see test_xlsx.py; but for the apostrophe the CSV
  puts before a formula-like text), plus the cleaning report sheet.
- X2 sheet names are ≤ 31 characters, free of ``[]:*?/\\`` and unique (case-insensitively).
- X3 text starting with ``=`` stays text, never a formula.
- G1 a valid FeatureCollection; one Point per submission with a geopoint, ``[lon, lat(, alt)]``.
- G2 properties are the root table's columns; submissions without a point are left out and counted.
"""

from __future__ import annotations

import csv
import io
import json
from itertools import chain
from typing import Any

import pytest
from openpyxl import load_workbook

from exports.geojson import iter_geojson, write_geojson
from exports.options import ExportOptionError, ExportOptions
from exports.spreadsheet_formulas import is_formula_like
from exports.xlsx import sheet_names, write_xlsx
from tests.exports.coop_fixture import SCHEMAS, coop_schema, coop_values, export_files, record, same_as_csv


def _records() -> list[Any]:
    return [
        record("uuid:a", coop_values("uuid:a", coop_name="=1+1 تعاونية", revenue="1,5")),
        record("uuid:b", coop_values("uuid:b", location="", region="r9")),
        record("uuid:c", coop_values("uuid:c", location="30.1 -9.2 0 3")),
    ]


def test_xlsx_has_the_same_cells_as_the_csvs() -> None:
    options = ExportOptions(split_select_multiple=True, labels="labels", lang="ar")
    buf = io.BytesIO()
    summary = write_xlsx(SCHEMAS, _records(), options, buf)
    files = export_files(_records(), options)
    wb = load_workbook(io.BytesIO(buf.getvalue()), read_only=True)
    assert wb.sheetnames == ["coop", "coop-members", "coop-children", "cleaning_report"]
    for sheet in ["coop", "coop-members", "coop-children"]:
        rows = list(csv.reader(io.StringIO(files[f"{sheet}.csv"])))
        width = len(rows[0])  # empty cells are not written: read-only mode leaves a row's tail out
        cells = [[*row, *[None] * (width - len(row))] for row in wb[sheet].iter_rows(values_only=True)]
        assert len(cells) == len(rows)
        for got, text in zip(chain.from_iterable(cells), chain.from_iterable(rows), strict=True):
            # The CSV escapes a formula-like text with an apostrophe (issue 15 row 8); the XLSX cell is text.
            unescaped = text[1:] if text[:1] == "'" and is_formula_like(text[1:]) else text
            assert same_as_csv(got, unescaped), (got, text)
    report = [list(r) for r in wb["cleaning_report"].iter_rows(values_only=True)]
    assert report[0] == ["table", "column", "step", "count"]
    assert ["coop.csv", "revenue", "number", 1] in report
    assert summary.records_exported == 3
    wb.close()


def test_text_starting_with_equals_is_not_a_formula() -> None:
    buf = io.BytesIO()
    write_xlsx(SCHEMAS, _records(), ExportOptions(), buf)
    wb = load_workbook(io.BytesIO(buf.getvalue()))
    cell = wb["coop"]["B2"]
    assert (cell.value, cell.data_type) == ("=1+1 تعاونية", "s")


@pytest.mark.parametrize(
    ("stems", "expected"),
    [
        (["coop"], ["coop"]),
        (["a" * 40, "a" * 40], ["a" * 31, "a" * 29 + "~2"]),
        (["x[1]:y/z"], ["x_1__y_z"]),
        (["Coop", "coop"], ["Coop", "coop~2"]),
        (["cleaning_report"], ["cleaning_report~2"]),
        (["history"], ["history~2"]),
    ],
    ids=["plain", "long-clash", "forbidden-chars", "case-clash", "report-name", "reserved-by-excel"],
)
def test_sheet_names(stems: list[str], expected: list[str]) -> None:
    assert sheet_names(stems) == expected


def test_geojson_is_a_valid_feature_collection() -> None:
    buf = io.BytesIO()
    summary = write_geojson(SCHEMAS, _records(), ExportOptions(), buf)
    doc = json.loads(buf.getvalue())
    assert doc["type"] == "FeatureCollection"
    assert [f["id"] for f in doc["features"]] == ["uuid:a", "uuid:c"]
    first, second = doc["features"]
    assert first["type"] == "Feature"
    assert first["geometry"] == {"type": "Point", "coordinates": [-9.5981, 30.4278, 74.0]}
    assert second["geometry"]["coordinates"] == [-9.2, 30.1]  # altitude 0 means "unknown"
    assert first["properties"]["coop_name"] == "=1+1 تعاونية"
    assert first["properties"]["revenue"] == "1.5"
    assert next(iter(first["properties"])) == "SubmissionDate"
    assert summary.excluded == {"no_geopoint": 1}


def test_geojson_streams_in_chunks_and_checks_options_first() -> None:
    chunks = list(iter_geojson(SCHEMAS, _records(), ExportOptions(labels="labels", lang="fr")))
    assert len(chunks) == 4  # head, two features, tail
    assert json.loads(b"".join(chunks))["features"][0]["properties"]["region"] == "Souss-Massa"
    no_geo = coop_schema("2")
    no_geo = type(no_geo)(
        no_geo.form_id, no_geo.version, no_geo.title, fields=tuple(f for f in no_geo.fields if f.name != "location")
    )
    with pytest.raises(ExportOptionError) as err:
        iter_geojson([no_geo], [], ExportOptions())
    assert err.value.field == "geojson_field"
