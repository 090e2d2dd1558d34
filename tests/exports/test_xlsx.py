"""XLSX cells as an analyst opens them: typed from the form, laid out for reading.

Rules checked:
- T1 every column gets its type from the form (bind type, control) or the metadata it holds:
  numbers, dates, times, datetimes (with a number format), booleans; selects and text stay text.
- T2 the type is decided by the field, never by the value: a text answer that looks like a number (a
  phone, a code with leading zeros) stays text; a value the cleaning could not read stays text (with its
  issue); a number Excel would round (more than 15 digits) stays text.
- T3 every sheet has a bold, frozen header row, an auto-filter over all its rows and readable widths.
- T4 sheets read right to left when the labels are in a right-to-left language (``lang=ar``), else not.
- T5 (invariant) any text answer comes back as the same string, whatever characters it holds.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from exports.options import ExportOptions
from exports.records import ExportRecord
from exports.xlsx import NUMBER_FORMATS, is_right_to_left, write_xlsx
from forms.schema import Field, FormSchema
from tests.exports.coop_fixture import AR, FR, SCHEMAS, coop_schema, coop_values, record

# A form of the types the coop form lacks, as an XLSForm:
# | type      | name   |          | type     | name   |
# | text      | code   |          | boolean* | member |   (*a calculate with type boolean, or an XForm bind)
# | integer   | count  |          | time     | at     |
_OTHER = FormSchema(
    form_id="other",
    version="1",
    title="Other types",
    fields=(
        Field("code", "code", "question", "string", "input"),
        Field("count", "count", "question", "int", "input"),
        Field("member", "member", "question", "boolean", "calculate"),
        Field("at", "at", "question", "time", "input"),
    ),
)


def _book(schemas: Any, records: list[ExportRecord], options: ExportOptions | None = None) -> Any:
    buf = io.BytesIO()
    write_xlsx(schemas, records, options or ExportOptions(), buf)
    return load_workbook(io.BytesIO(buf.getvalue()))


def _column(ws: Worksheet, header: str) -> list[Any]:
    """The cells below ``header`` (openpyxl cells, to read both value and number format)."""
    headers = [c.value for c in ws[1]]
    col = headers.index(header) + 1
    return [ws.cell(row=r, column=col) for r in range(2, ws.max_row + 1)]


def _first(ws: Worksheet, header: str) -> Any:
    return _column(ws, header)[0]


@pytest.fixture(scope="module")
def coop_book() -> Any:
    rec = record("uuid:a", coop_values("uuid:a"), attachments_expected=2, attachments_present=1, edits=3)
    return _book(SCHEMAS, [rec], ExportOptions(split_select_multiple=True))


TYPED = [
    ("coop", "SubmissionDate", datetime(2024, 5, 2, 10, 0), NUMBER_FORMATS["datetime"]),
    ("coop", "founded", datetime(2019, 3, 8), NUMBER_FORMATS["date"]),
    ("coop", "revenue", 125000.5, "General"),
    ("coop", "location-Latitude", 30.4278, "General"),
    ("coop", "activities/craft", 1, "General"),
    ("coop", "activities/other", 0, "General"),
    ("coop", "AttachmentsExpected", 2, "General"),
    ("coop", "AttachmentsPresent", 1, "General"),
    ("coop", "Edits", 3, "General"),
    ("coop", "coop_name", "Coopérative Tifawin", "General"),
    ("coop", "region", "r1", "General"),
    ("coop", "activities", "agri craft", "General"),
    ("coop", "FormVersion", "2", "General"),
    ("coop", "KEY", "uuid:a", "General"),
    ("coop-members", "age", 42, "General"),
    # the device's local time (the CSV has +01:00): Excel has no time zones
    ("coop-members", "joined", datetime(2020, 1, 15, 9, 30), NUMBER_FORMATS["datetime"]),
    ("coop-members", "name", "Fatima", "General"),
]


@pytest.mark.parametrize(("sheet", "header", "value", "number_format"), TYPED, ids=[f"{s}:{h}" for s, h, *_ in TYPED])
def test_cells_are_typed_by_column(coop_book: Any, sheet: str, header: str, value: Any, number_format: str) -> None:
    cell = _first(coop_book[sheet], header)
    assert (cell.value, type(cell.value)) == (value, type(value))
    assert cell.number_format == number_format


def test_booleans_times_and_integers_of_other_forms() -> None:
    rows = [
        {"code": "007", "count": "007", "member": "true", "at": "09:30:00.000+01:00"},
        {"code": "12", "count": "-3", "member": "0", "at": "23:59:59.500Z"},
    ]
    records = [record(f"uuid:{i}", v, form_version="1") for i, v in enumerate(rows)]
    ws = _book([_OTHER], records)["other"]
    assert [c.value for c in _column(ws, "code")] == ["007", "12"]  # text: decided by the field
    assert [c.value for c in _column(ws, "count")] == [7, -3]  # integers, cleaned
    assert [c.value for c in _column(ws, "member")] == [True, False]
    assert [c.value for c in _column(ws, "at")] == [time(9, 30), time(23, 59, 59, 500000)]
    assert _first(ws, "at").number_format == NUMBER_FORMATS["time"]


@pytest.mark.parametrize(
    ("overrides", "header", "expected"),
    [
        ({"coop_name": "0612345678"}, "coop_name", "0612345678"),
        ({"coop_name": "00123"}, "coop_name", "00123"),
        ({"coop_name": "1e5"}, "coop_name", "1e5"),
        ({"coop_name": "2024-01-01"}, "coop_name", "2024-01-01"),
        ({"region": "01"}, "region", "01"),
        ({"revenue": "beaucoup"}, "revenue", "beaucoup"),
        ({"revenue": "1234567890123456.5"}, "revenue", "1234567890123456.5"),
        ({"founded": "2019-02-30"}, "founded", "2019-02-30"),
        ({"founded": "1850-06-01"}, "founded", "1850-06-01"),
    ],
    ids=[
        "phone",
        "leading-zeros",
        "exponent-text",
        "date-looking-text",
        "choice-code",
        "unreadable-decimal",
        "beyond-15-digits",
        "impossible-date",
        "before-excel-calendar",
    ],
)
def test_type_is_decided_by_the_field_not_the_value(overrides: dict[str, str], header: str, expected: str) -> None:
    ws = _book(SCHEMAS, [record("uuid:a", coop_values("uuid:a", **overrides))])["coop"]
    cell = _first(ws, header)
    assert (cell.value, cell.data_type) == (expected, "s")


def test_phone_of_the_older_version_stays_text() -> None:
    old = record("uuid:v1", {**coop_values("uuid:v1"), "phone": "0612345678"}, form_version="1")
    cell = _first(_book(SCHEMAS, [old])["coop"], "phone")
    assert (cell.value, cell.data_type) == ("0612345678", "s")


def test_headers_frozen_filtered_and_widths_readable() -> None:
    records = [record(f"uuid:{i}", coop_values(f"uuid:{i}")) for i in range(3)]
    wb = _book(SCHEMAS, records, ExportOptions(headers="labels", lang="ar"))
    expected_rows = {"coop": 3, "coop-members": 6, "coop-children": 6}
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        assert all(c.font.bold for c in ws[1]), ws.title
        last = ws.cell(row=1, column=ws.max_column).column_letter
        rows = expected_rows.get(ws.title, ws.max_row - 1)
        assert ws.auto_filter.ref == f"A1:{last}{rows + 1}", ws.title
        widths = [ws.column_dimensions[c.column_letter].width for c in ws[1]]
        assert all(8 <= w <= 50 for w in widths), (ws.title, widths)
    coop = wb["coop"]
    assert _first(coop, "الاسم").value == "Coopérative Tifawin"  # Arabic header, label in place of the name
    assert coop.column_dimensions["A"].width >= 19  # SubmissionDate shows its whole datetime


@pytest.mark.parametrize(
    ("options", "rtl"),
    [
        (ExportOptions(), False),
        (ExportOptions(lang="ar"), True),
        (ExportOptions(labels="labels", lang="Arabic"), True),
        (ExportOptions(labels="labels", lang="fr"), False),
    ],
    ids=["default-french", "lang-ar", "labels-arabic", "labels-french"],
)
def test_right_to_left_when_labels_are_arabic(options: ExportOptions, rtl: bool) -> None:
    wb = _book(SCHEMAS, [record("uuid:a", coop_values("uuid:a"))], options)
    assert [bool(ws.sheet_view.rightToLeft) for ws in wb.worksheets[:-1]] == [rtl] * 3
    assert not wb["cleaning_report"].sheet_view.rightToLeft


def test_default_arabic_form_reads_right_to_left_with_labels() -> None:
    arabic_first = coop_schema("2")
    arabic_first = FormSchema(
        **{**{f: getattr(arabic_first, f) for f in arabic_first.__slots__}, "default_language": AR}
    )
    wb = _book([arabic_first], [record("uuid:a", coop_values("uuid:a"))], ExportOptions(labels="labels"))
    assert wb["coop"].sheet_view.rightToLeft
    assert _first(wb["coop"], "region").value == "سوس ماسة"


@pytest.mark.parametrize(
    ("language", "rtl"),
    [
        (AR, True),
        ("ar", True),
        ("ar-MA", True),
        ("العربية", True),
        ("Darija", True),
        (FR, False),
        ("en", False),
        (None, False),
    ],
    ids=["Arabic (ar)", "ar", "ar-MA", "arabic-script", "darija", "French (fr)", "en", "none"],
)
def test_is_right_to_left(language: str | None, rtl: bool) -> None:
    assert is_right_to_left(language) is rtl


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30))
def test_any_text_answer_comes_back_as_the_same_string(text: str) -> None:
    rec = ExportRecord("uuid:h", "1", datetime(2024, 1, 1, tzinfo=UTC), {"code": text})
    buf = io.BytesIO()
    write_xlsx([_OTHER], [rec], ExportOptions(clean=False), buf)
    cell = _first(load_workbook(io.BytesIO(buf.getvalue()))["other"], "code")
    allowed = "".join("\ufffd" if (ord(ch) < 32 and ch not in "\t\n\r") else ch for ch in text)
    assert cell.value == allowed
    assert cell.data_type == "s"
