"""The XLSX export: the CSV zip's tables as sheets of one workbook, typed, written with openpyxl write-only.

openpyxl's write-only worksheets stream their rows to temporary files, so memory does not grow with the
number of submissions. Sheet names are the table names without ``.csv``, with characters Excel forbids
replaced, cut to 31 characters and made unique with ``~n`` (``History``, which Excel reserves, too); the
cleaning report is the last sheet.

Cells are typed from the form, never guessed from the value (``column_kind``): a text answer that looks
like a number (a phone ``0612345678``, a code ``007``) stays text, and a number the cleaning could not
read stays text (its ``_issues`` cell says why). By column:

- ``int`` / ``decimal`` questions, geopoint parts: numbers; ``AttachmentsPresent``, ``AttachmentsExpected``,
  ``Edits`` and the 0/1 choice flags: integers. A number of more than 15 significant digits stays text
  (Excel would round it).
- ``date``: a date (``yyyy-mm-dd``); ``time``: a time (``hh:mm:ss``); ``dateTime`` and ``SubmissionDate``:
  a datetime (``yyyy-mm-dd hh:mm:ss``). Excel has no time zones: ``SubmissionDate`` is in UTC (as in the
  CSV) and a ``dateTime`` answer is the device's local time, its offset dropped (the CSV keeps it).
  Dates before 1900 stay text (Excel's calendar starts there).
- ``boolean``: TRUE/FALSE. Selects (values or labels), text and everything else: text.

Every sheet has its header row bold and frozen, an auto-filter over its rows, column widths from the
header and the type, and reads right to left when the labels are in a right-to-left language (``lang=ar``).
Text starting with ``=`` is forced to a string cell (no formula is ever written); control characters that
XML 1.0 cannot carry are replaced by U+FFFD. Empty cells are not written.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time
from typing import BinaryIO, Literal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from exports.cleaning import CleaningReport
from exports.options import ExportOptions
from exports.records import ExportRecord
from exports.rows import ExportSummary, export_rows, summarise
from exports.tables import Column, ExportPlan, plan_tables
from forms.schema import FormSchema

REPORT_SHEET = "cleaning_report"
MAX_SHEET_NAME = 31
_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_RESERVED_SHEETS = ("History",)  # Excel refuses a sheet of that name

CellKind = Literal["text", "integer", "decimal", "boolean", "date", "time", "datetime"]
_META_KINDS: dict[str, CellKind] = {
    "SubmissionDate": "datetime",
    "AttachmentsPresent": "integer",
    "AttachmentsExpected": "integer",
    "Edits": "integer",
}
_BIND_KINDS: dict[str, CellKind] = {
    "int": "integer",
    "decimal": "decimal",
    "boolean": "boolean",
    "date": "date",
    "time": "time",
    "dateTime": "datetime",
}
_CHOICE_CONTROLS = frozenset({"select_one", "select_multiple", "rank"})
NUMBER_FORMATS: dict[CellKind, str] = {"date": "yyyy-mm-dd", "time": "hh:mm:ss", "datetime": "yyyy-mm-dd hh:mm:ss"}
# Column widths (in characters): at least the type's own, the header's length + 2, at most MAX_WIDTH.
_MIN_WIDTHS: dict[CellKind, int] = {
    "text": 12,
    "integer": 8,
    "decimal": 10,
    "boolean": 8,
    "date": 12,
    "time": 10,
    "datetime": 20,
}
_WIDE_COLUMNS = {"KEY": 44, "PARENT_KEY": 44, "_issues": 40}  # uuid:… keys; issues are sentences
MAX_WIDTH = 50

# Right-to-left scripts, by language code or English name as forms write them ("Arabic (ar)", "ar").
_RTL_CODES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ps", "sd", "ug", "ur", "yi"})
_RTL_NAMES = frozenset({"arabic", "darija", "dari", "hebrew", "pashto", "persian", "farsi", "sindhi", "urdu"})
_RTL_SCRIPT = re.compile(r"[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")  # Hebrew, Arabic, Syriac, Thaana ...
_LANG_CODE = re.compile(r"\(([^)]+)\)\s*$")

_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?")
EXCEL_DIGITS = 15  # an Excel number keeps 15 significant digits
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def sheet_names(stems: Sequence[str]) -> list[str]:
    """Excel-safe, unique sheet names (≤ 31 characters) for the given table names, in order."""
    used: set[str] = {REPORT_SHEET.casefold(), *(r.casefold() for r in _RESERVED_SHEETS)}
    out: list[str] = []
    for stem in stems:
        base = _FORBIDDEN.sub("_", stem).strip("'") or "sheet"
        name, n = base[:MAX_SHEET_NAME], 1
        while name.casefold() in used:  # Excel compares sheet names case-insensitively
            n += 1
            suffix = f"~{n}"
            name = base[: MAX_SHEET_NAME - len(suffix)] + suffix
        used.add(name.casefold())
        out.append(name)
    return out


def column_kind(plan: ExportPlan, column: Column) -> CellKind:
    """How the cells of ``column`` are typed: by the field's bind type and control, never by the values."""
    if column.kind == "meta":
        return _META_KINDS.get(column.path, "text")
    if column.kind == "geo_part":
        return "decimal"
    if column.kind == "choice_flag":
        return "integer"
    field = plan.fields[column.path]
    if field.control in _CHOICE_CONTROLS:  # choice names such as "01" are codes, labels are words
        return "text"
    return _BIND_KINDS.get(field.bind_type, "text")


def is_right_to_left(language: str | None) -> bool:
    """Whether a form's language key (``Arabic (ar)``, ``ar``, ``العربية``) names a right-to-left language."""
    if not language:
        return False
    code = _LANG_CODE.search(language)
    tag = (code.group(1) if code else language).strip().casefold()
    name = _LANG_CODE.sub("", language).strip().casefold()
    return tag.replace("_", "-").split("-")[0] in _RTL_CODES or name in _RTL_NAMES or bool(_RTL_SCRIPT.search(language))


def _labels_right_to_left(plan: ExportPlan, options: ExportOptions) -> bool:
    if plan.lang is not None:  # asked for by name: lang=ar
        return is_right_to_left(plan.lang)
    labelled = options.labels == "labels" or options.headers == "labels"
    return labelled and is_right_to_left(plan.default_language)


Convert = Callable[[str], object]


def _text_converter(ws: WriteOnlyWorksheet) -> Convert:
    def text(value: str) -> object:
        if not value:
            return None
        if not value.isprintable():  # cheap test first: the characters XML cannot carry are unprintable
            value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
        return value if value[0] != "=" else _string_cell(ws, value)

    return text


def _string_cell(ws: WriteOnlyWorksheet, value: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(ws, value=value)
    cell.data_type = "s"  # openpyxl would otherwise store "=..." as a formula
    return cell


def _significant_digits(number: str) -> int:
    return len(number.replace("-", "").replace(".", "").lstrip("0"))


def _converter(ws: WriteOnlyWorksheet, kind: CellKind) -> Convert:
    """The function turning one exported text into the cell value of a column of ``kind``."""
    text = _text_converter(ws)
    if kind == "text":
        return text
    if kind in ("integer", "decimal"):
        shape, cast = (_INTEGER, int) if kind == "integer" else (_DECIMAL, float)

        def number(value: str) -> object:
            if shape.fullmatch(value) and _significant_digits(value) <= EXCEL_DIGITS:
                return cast(value)
            return text(value)

        return number
    if kind == "boolean":

        def boolean(value: str) -> object:
            folded = value.casefold()
            return True if folded in _TRUE else False if folded in _FALSE else text(value)

        return boolean
    parsers: dict[CellKind, Callable[[str], date | time | datetime]] = {
        "date": date.fromisoformat,
        "time": time.fromisoformat,
        "datetime": datetime.fromisoformat,
    }
    parse = parsers[kind]
    # One styled cell per column, its value replaced row after row: openpyxl writes a row as soon as it is
    # appended, and styling a fresh cell for every date would cost more than the whole conversion.
    cell = WriteOnlyCell(ws)
    cell.number_format = NUMBER_FORMATS[kind]

    def temporal(value: str) -> object:
        if not value:
            return None
        try:
            parsed = parse(value)
        except ValueError:
            return text(value)
        if isinstance(parsed, date) and parsed.year < 1900:  # datetime is a date too
            return text(value)
        cell.value = parsed.replace(tzinfo=None) if isinstance(parsed, datetime | time) else parsed
        return cell

    return temporal


def _width(header: str, kind: CellKind) -> float:
    wanted = max(_MIN_WIDTHS[kind], _WIDE_COLUMNS.get(header, 0), len(header) + 2)
    return float(min(wanted, MAX_WIDTH))


def _open_sheet(
    wb: Workbook, name: str, headers: Sequence[str], kinds: Sequence[CellKind], rtl: bool
) -> WriteOnlyWorksheet:
    """A sheet with its layout set and its header row written (write-only: layout goes before rows)."""
    ws = wb.create_sheet(title=name)
    ws.freeze_panes = "A2"
    ws.sheet_view.rightToLeft = rtl
    for i, (header, kind) in enumerate(zip(headers, kinds, strict=True), start=1):
        ws.column_dimensions[get_column_letter(i)].width = _width(header, kind)
    bold = Font(bold=True)
    row = []
    for header in headers:
        cell = _string_cell(ws, ILLEGAL_CHARACTERS_RE.sub("\ufffd", header))
        cell.font = bold
        row.append(cell)
    ws.append(row)
    return ws


def _filter(ws: WriteOnlyWorksheet, columns: int, rows: int) -> None:
    ws.auto_filter.ref = f"A1:{get_column_letter(max(columns, 1))}{rows + 1}"


def write_xlsx(
    schemas: Sequence[FormSchema], records: Iterable[ExportRecord], options: ExportOptions, out: BinaryIO
) -> ExportSummary:
    """Write the tables of ``records`` as a typed XLSX workbook to ``out`` (``schemas`` oldest first)."""
    plan = plan_tables(schemas, options)
    rtl = _labels_right_to_left(plan, options)
    report = CleaningReport()
    wb = Workbook(write_only=True)
    sheets: list[tuple[WriteOnlyWorksheet, list[Convert]]] = []
    for table, name in zip(plan.tables, sheet_names([t.stem for t in plan.tables]), strict=True):
        kinds = [column_kind(plan, c) for c in table.columns]
        ws = _open_sheet(wb, name, table.headers, kinds, rtl)
        sheets.append((ws, [_converter(ws, k) for k in kinds]))
    counts: Counter[int] = Counter()
    for index, cells in export_rows(plan, options, records, report):
        ws, converters = sheets[index]
        ws.append([convert(c) for convert, c in zip(converters, cells)])  # noqa: B905  # same length: one plan
        counts[index] += 1
    for index, (ws, converters) in enumerate(sheets):
        _filter(ws, len(converters), counts[index])
    report_kinds: list[CellKind] = ["text", "text", "text", "integer"]
    rs = _open_sheet(wb, REPORT_SHEET, ["table", "column", "step", "count"], report_kinds, rtl=False)
    rows = report.rows()
    for t, c, s, n in rows:
        rs.append([t, c, s, n])
    _filter(rs, len(report_kinds), len(rows))
    wb.save(out)
    return summarise(plan, counts, report)
