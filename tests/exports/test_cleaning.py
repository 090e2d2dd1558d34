"""Cleaning: each step per value, and a dirty export where every fix is counted.

Rules checked:
- C1 text is NFC and trimmed; runs of spaces collapse; newlines stay.
- C2 numbers: ``1,5`` → ``1.5`` (decimal), thousands spaces joined, ints stay ints, ambiguity flagged.
- C3 dates/times/dateTimes: ISO 8601, offset kept and written ``±HH:MM`` (``+03`` accepted).
- C4 a value that does not fit its type or choices is kept and flagged in ``_issues``.
- C5 superseded edits, deleted and rejected submissions are left out and counted; options bring them back.
- C6 ``clean=False`` changes nothing but still flags problems.
- C7 the fast "already clean" path never skips a change (property test).
"""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exports.cleaning import Cleaned, clean_value, normalise_text
from exports.options import ExportOptions
from forms.schema import Field
from tests.exports.coop_fixture import coop_values, export_files, record, table_dicts


def _f(bind: str, control: str = "input") -> Field:
    return Field("q", "q", "question", bind, control)


@pytest.mark.parametrize(
    ("bind", "raw", "expected"),
    [
        ("string", "  Coopérative   Tifawin \t", Cleaned("Coopérative Tifawin", ("whitespace",))),
        ("string", unicodedata.normalize("NFD", "Coopérative"), Cleaned("Coopérative", ("nfc",))),
        ("string", "ligne 1  \n  ligne 2", Cleaned("ligne 1\nligne 2", ("whitespace",))),
        ("decimal", "1,5", Cleaned("1.5", ("number",))),
        ("decimal", "1 234,5", Cleaned("1234.5", ("number",))),
        ("decimal", "125000.5", Cleaned("125000.5")),
        ("decimal", "-0,25", Cleaned("-0.25", ("number",))),
        ("decimal", "3", Cleaned("3")),
        ("int", "+042", Cleaned("42", ("number",))),
        ("int", "12 500", Cleaned("12500", ("number",))),
        ("int", "1,5", Cleaned("1,5", issue="not an integer")),
        ("decimal", "1.234,5", Cleaned("1.234,5", issue="not a decimal number")),
        ("decimal", "1,250", Cleaned("1,250", issue="ambiguous decimal comma (thousands separator or decimals?)")),
        ("decimal", "0,125", Cleaned("0.125", ("number",))),
        ("string", "a\r\nb", Cleaned("a\nb", ("whitespace",))),
        ("string", "a\u00a0b", Cleaned("a b", ("whitespace",))),
        ("string", "déjà vu", Cleaned("déjà vu")),
        ("decimal", "12abc", Cleaned("12abc", issue="not a decimal number")),
        ("date", "2024-5-2", Cleaned("2024-05-02", ("date",))),
        ("date", "2024-02-30", Cleaned("2024-02-30", issue="not a valid calendar date")),
        ("dateTime", "2014-01-09T11:51:38.008+03", Cleaned("2014-01-09T11:51:38.008+03:00", ("datetime",))),
        ("dateTime", "2024-05-02T10:00:00Z", Cleaned("2024-05-02T10:00:00.000Z", ("datetime",))),
        ("dateTime", "2024-05-02T10:00:00.000+01:00", Cleaned("2024-05-02T10:00:00.000+01:00")),
        ("dateTime", "hier", Cleaned("hier", issue="not a dateTime (ISO 8601)")),
        ("time", "10:30", Cleaned("10:30:00.000", ("time",))),
        ("time", "10:30:00.000+0100", Cleaned("10:30:00.000+01:00", ("time",))),
        ("geopoint", "30.4  -9.5 0 5", Cleaned("30.4 -9.5 0 5", ("whitespace",))),
        ("geopoint", "north", Cleaned("north", issue="not a geopoint")),
    ],
    ids=[
        "trim-collapse",
        "nfd-to-nfc",
        "newlines-kept",
        "decimal-comma",
        "thousands-space",
        "decimal-clean",
        "negative-comma",
        "int-stays-int",
        "int-plus-zeros",
        "int-thousands",
        "int-with-comma-flagged",
        "ambiguous-decimal-flagged",
        "ambiguous-comma",
        "zero-comma",
        "crlf",
        "nbsp",
        "already-clean",
        "garbage-decimal",
        "short-date",
        "impossible-date",
        "offset-without-minutes",
        "utc-z-kept",
        "canonical-datetime",
        "not-a-datetime",
        "short-time",
        "compact-offset",
        "geopoint-spaces",
        "not-a-geopoint",
    ],
)
def test_clean_value(bind: str, raw: str, expected: Cleaned) -> None:
    assert clean_value(raw, _f(bind), None) == expected


def test_choices_are_checked_against_the_form() -> None:
    allowed = {"agri", "craft"}
    assert clean_value("agri  craft", _f("string", "select_multiple"), allowed) == Cleaned(
        "agri craft", ("whitespace",)
    )
    flagged = clean_value("agri fishing", _f("string", "select_multiple"), allowed)
    assert (flagged.value, flagged.issue) == ("agri fishing", "not among the form's choices: fishing")
    assert clean_value("r9", _f("string", "select_one"), {"r1"}).issue == "not one of the form's choices"
    assert clean_value("anything", _f("string", "select_one"), None).issue is None  # list from a file


def test_clean_off_changes_nothing_but_still_flags() -> None:
    assert clean_value(" 1,5 ", _f("decimal"), None, clean=False) == Cleaned(
        " 1,5 ", issue="not in canonical form (cleaning gives '1.5')"
    )
    assert clean_value(" x ", _f("string"), None, clean=False) == Cleaned(" x ")


NFD_AR = unicodedata.normalize("NFD", "تعاونية آمال")  # alef with madda decomposes
NFD_FR = unicodedata.normalize("NFD", "Coopérative Éléonore")


def dirty_records() -> list:  # type: ignore[type-arg]
    members = [{"name": "  Fatima  ", "age": "42", "joined": "2020-01-15T09:30:00.000+03"}]
    return [
        record("uuid:ar", coop_values("uuid:ar", coop_name=NFD_AR + "  ", revenue="1,5", details={"members": members})),
        record("uuid:fr", coop_values("uuid:fr", coop_name=NFD_FR, region="r9", activities="agri  craft")),
        record("uuid:old", coop_values("uuid:old"), current=False),  # superseded by uuid:new
        record("uuid:new", coop_values("uuid:new", coop_name="Tifawin (corrigé)"), edits=1),
        record("uuid:rej", coop_values("uuid:rej"), review_state="rejected"),
        record("uuid:del", coop_values("uuid:del"), deleted=True),
    ]


def test_dirty_export_is_cleaned_flagged_and_counted() -> None:
    files = export_files(dirty_records())
    rows = {r["KEY"]: r for r in table_dicts(files["coop.csv"])}
    assert list(rows) == ["uuid:ar", "uuid:fr", "uuid:new"]
    assert rows["uuid:ar"]["coop_name"] == unicodedata.normalize("NFC", "تعاونية آمال")
    assert rows["uuid:ar"]["revenue"] == "1.5"
    assert rows["uuid:fr"]["coop_name"] == "Coopérative Éléonore"
    assert rows["uuid:fr"]["region"] == "r9"  # kept as sent …
    assert rows["uuid:fr"]["_issues"] == "region: not one of the form's choices ('r9')"  # … and flagged
    assert rows["uuid:fr"]["activities"] == "agri craft"
    member = table_dicts(files["coop-members.csv"])[0]
    assert (member["name"], member["joined"]) == ("Fatima", "2020-01-15T09:30:00.000+03:00")
    assert files["cleaning_report.csv"] == (
        "table,column,step,count\n"
        "coop-members.csv,joined,datetime,1\n"
        "coop-members.csv,name,whitespace,1\n"
        "coop.csv,activities,whitespace,1\n"
        "coop.csv,coop_name,nfc,2\n"
        "coop.csv,coop_name,whitespace,1\n"
        "coop.csv,region,issue,1\n"
        "coop.csv,revenue,number,1\n"
        "*,*,excluded:deleted,1\n"
        "*,*,excluded:rejected,1\n"
        "*,*,excluded:superseded_edit,1\n"
    )
    assert "left out (rejected): 1" in files["README.txt"]


@pytest.mark.parametrize(
    ("options", "keys"),
    [
        (ExportOptions(include_edits=True), ["uuid:ar", "uuid:fr", "uuid:old", "uuid:new"]),
        (ExportOptions(include_rejected=True), ["uuid:ar", "uuid:fr", "uuid:new", "uuid:rej"]),
        (ExportOptions(review_states=frozenset({"rejected"})), ["uuid:rej"]),
        (ExportOptions(include_deleted=True), ["uuid:ar", "uuid:fr", "uuid:new", "uuid:del"]),
    ],
    ids=["include-edits", "include-rejected", "only-rejected", "include-deleted"],
)
def test_left_out_rows_come_back_by_option(options: ExportOptions, keys: list[str]) -> None:
    assert [r["KEY"] for r in table_dicts(export_files(dirty_records(), options)["coop.csv"])] == keys


def test_status_column_says_why_an_included_row_is_special() -> None:
    rows = table_dicts(
        export_files(dirty_records(), ExportOptions(include_edits=True, include_deleted=True))["coop.csv"]
    )
    assert {r["KEY"]: r["Status"] for r in rows}["uuid:old"] == "superseded"
    assert {r["KEY"]: r["Status"] for r in rows}["uuid:del"] == "deleted"


def test_clean_off_exports_values_as_sent() -> None:
    files = export_files(dirty_records(), ExportOptions(clean=False))
    row = table_dicts(files["coop.csv"])[0]
    assert (row["coop_name"], row["revenue"]) == (NFD_AR + "  ", "1,5")
    assert row["_issues"] == "revenue: not in canonical form (cleaning gives '1.5') ('1,5')"


@given(st.text(alphabet=st.sampled_from(list("ab é\u0301\t\n\r\u00a0\u202f\u2028\x85ا"))))
def test_fast_path_agrees_with_the_full_normalisation(raw: str) -> None:
    # The cheap "already clean" check must never skip a change the full normalisation would make.
    full = unicodedata.normalize("NFC", raw)
    spaces = re.compile(r"[ \t\u00a0\u2007\u202f]+")
    full = "\n".join(spaces.sub(" ", line).strip(" ") for line in full.strip().splitlines())
    assert normalise_text(raw).value == full
