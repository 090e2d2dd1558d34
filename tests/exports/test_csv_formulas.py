"""Issue 15 row 8: CSV cells a spreadsheet could run as formulas are neutralised (OWASP "CSV injection").

Rules checked:
- F1 a text answer starting with ``=``, ``+``, ``-``, ``@`` (or a tab, carriage return or spaces before
  one) is written with a leading apostrophe, whether cleaning is on (which trims the tab: the trimmed
  value must not become live) or off.
- F2 a plain number in a numeric column (a decimal, an int, a geopoint part) stays a number: ``-2.5``,
  ``-9.5981``; a numeric field's value that is not a number (kept as sent, flagged) is escaped.
- F3 the same text as a number in a text column is escaped: the column's type decides, not the value.
- F4 every escape is counted in cleaning_report.csv (step ``formula_escaped``); repeat tables are covered.
- F5 invariant (Hypothesis): no cell of any text column of the CSV is formula-like once written.
"""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.options import ExportOptions
from exports.spreadsheet_formulas import is_formula_like
from tests.exports.coop_fixture import coop_values, export_files, record, table_dicts

ATTACKS = [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ('+HYPERLINK("http://evil.example","x")', '\'+HYPERLINK("http://evil.example","x")'),
    ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("\t=1+1", "'=1+1"),  # cleaning trims the tab: the trimmed value is escaped, not left live
    ("  =1+1", "'=1+1"),
    ("-5", "'-5"),  # a text column holds text
    ("Coopérative =1", "Coopérative =1"),
    ("", ""),
]


def _root(values: dict, options: ExportOptions | None = None) -> dict[str, str]:
    return table_dicts(export_files([record("uuid:x", coop_values("uuid:x", **values))], options)["coop.csv"])[0]


@pytest.mark.parametrize(("sent", "written"), ATTACKS, ids=[a[0][:12] or "empty" for a in ATTACKS])
def test_text_answers_that_spreadsheets_would_run_are_escaped(sent: str, written: str) -> None:
    assert _root({"coop_name": sent})["coop_name"] == written


@pytest.mark.parametrize(
    ("sent", "written"),
    [("\t=1+1", "'\t=1+1"), ("\r=1+1", "'\r=1+1"), (" @x", "' @x"), ("=1", "'=1")],
    ids=["tab", "cr", "space-at", "equals"],
)
def test_without_cleaning_the_value_is_kept_and_still_escaped(sent: str, written: str) -> None:
    buf = export_files([record("uuid:x", coop_values("uuid:x", coop_name=sent))], ExportOptions(clean=False))
    row = next(r for r in csv.reader(io.StringIO(buf["coop.csv"], newline="")) if r[0].startswith("2024"))
    assert row[1] == written


def test_numbers_in_numeric_columns_stay_numbers() -> None:
    row = _root({"revenue": "-2.5", "location": "30.4278 -9.5981 -12 5.0"})
    assert (row["revenue"], row["location-Longitude"], row["location-Altitude"]) == ("-2.5", "-9.5981", "-12")


@pytest.mark.parametrize("sent", ["-2+3", "=1+1", "@A1"], ids=["minus-formula", "equals", "at"])
def test_a_numeric_fields_value_that_is_not_a_number_is_escaped(sent: str) -> None:
    row = _root({"revenue": sent})
    assert row["revenue"] == "'" + sent
    assert "revenue" in row["_issues"]


def test_repeat_tables_are_escaped_and_every_escape_is_counted() -> None:
    values = coop_values("uuid:x", coop_name="=1")
    values["details"]["members"][0]["name"] = "+1"
    values["details"]["members"][1]["age"] = "-3"  # an int: a number, left alone
    files = export_files([record("uuid:x", values)])
    members = table_dicts(files["coop-members.csv"])
    assert [m["name"] for m in members] == ["'+1", "Youssef"]
    assert [m["age"] for m in members] == ["42", "-3"]
    report = table_dicts(files["cleaning_report.csv"])
    escaped = {(r["table"], r["column"]): r["count"] for r in report if r["step"] == "formula_escaped"}
    assert escaped == {("coop.csv", "coop_name"): "1", ("coop-members.csv", "name"): "1"}


TEXT_COLUMNS = ("coop_name", "region", "activities", "founded", "KEY", "SubmitterID", "DeviceID", "_issues")


@settings(max_examples=100, deadline=None)
@given(
    name=st.text(st.sampled_from("=+-@\t\r\n '\"x1.,é"), max_size=8),
    region=st.text(st.sampled_from("=+-@ r1"), max_size=4),
    device=st.text(st.sampled_from("=+-@\t collect:"), max_size=6),
    clean=st.booleans(),
)
def test_no_text_cell_is_ever_formula_like(name: str, region: str, device: str, clean: bool) -> None:
    rec = record("uuid:x", coop_values("uuid:x", coop_name=name, region=region), device_id=device)
    text = export_files([rec], ExportOptions(clean=clean))["coop.csv"]
    for row in csv.DictReader(io.StringIO(text, newline="")):
        for column in TEXT_COLUMNS:
            cell = row[column]
            assert not is_formula_like(cell) or cell.startswith("'"), (column, cell)


def test_an_unsplit_geopoint_of_numbers_stays_as_sent() -> None:
    row = _root({"location": "-30.4278 -9.5981 74 5.0"}, ExportOptions(split_geopoint=False))
    assert row["location"] == "-30.4278 -9.5981 74 5.0"
    assert _root({"location": "-1 =cmd|x"}, ExportOptions(split_geopoint=False))["location"] == "'-1 =cmd|x"
