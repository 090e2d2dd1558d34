"""The XLSX export: the CSV zip's tables as sheets of one workbook, typed, written with openpyxl write-only, streamed.

Records are read once and the workbook leaves as it is written, like the CSV zip (``iter_xlsx``): the
first sheet's XML goes straight into its zip member (deflated, data descriptors, so the output need not
be seekable) as rows arrive, so the first bytes leave after the first rows and an idle-timeout proxy
never sees a silent response. Every other sheet (one per repeat, then the cleaning report) is written
by openpyxl's write-only worksheet to its temporary file and copied in after the first, in chunks; then
openpyxl writes the workbook's own parts (styles, workbook, relationships, content types). openpyxl
writes strings inline (no shared-string table), so memory does not grow with the number of
submissions. Sheet names are the table names without ``.csv``, with characters Excel forbids
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

import contextlib
import os
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from typing import IO, Any, BinaryIO, Literal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.drawing.spreadsheet_drawing import SpreadsheetDrawing
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet._writer import WorksheetWriter
from openpyxl.writer.excel import ExcelWriter

from exports.cleaning import CleaningReport
from exports.csv_zip import COMPRESS_LEVEL, COPY_CHUNK_BYTES, FLUSH_ROWS, ChunkSink, zip_member
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
    wb: Workbook,
    name: str,
    headers: Sequence[str],
    kinds: Sequence[CellKind],
    rtl: bool,
    zf: zipfile.ZipFile | None = None,
) -> WriteOnlyWorksheet:
    """A sheet with its layout set and its header row written (write-only: layout goes before rows).

    With ``zf``, the sheet's XML is written straight into its member of ``zf`` (left open until the
    sheet is closed); without, openpyxl writes it to a temporary file.
    """
    ws = wb.create_sheet(title=name)
    ws._id = len(wb.worksheets)  # its part name, xl/worksheets/sheet<n>.xml, as openpyxl numbers them on saving
    ws.freeze_panes = "A2"
    ws.sheet_view.rightToLeft = rtl
    for i, (header, kind) in enumerate(zip(headers, kinds, strict=True), start=1):
        ws.column_dimensions[get_column_letter(i)].width = _width(header, kind)
    if zf is not None:
        # No ZIP64 (Excel refuses ZIP64 headers on members that do not need them); a sheet past 4 GiB of
        # XML, beyond what Excel opens anyway, stops the export with zipfile's error instead.
        member = zf.open(zip_member(zf, ws.path[1:]), "w")  # closed by _close_sheet
        ws._writer = WorksheetWriter(ws, out=member)
        ws._writer.write_top()
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


class _SheetsAlreadyWritten(ExcelWriter):  # type: ignore[misc]  # openpyxl is untyped
    """openpyxl's workbook writer, for sheets whose XML is already in the archive (streamed or copied in)."""

    def write_worksheet(self, ws: WriteOnlyWorksheet) -> None:
        """Record the sheet in the workbook's parts (as openpyxl's own does) without writing it again."""
        ws._drawing = SpreadsheetDrawing()
        ws._rels = ws._writer._rels
        self.manifest.append(ws)


def _close_sheet(ws: WriteOnlyWorksheet) -> None:
    """Write the sheet's tail (auto-filter) and end its XML; a streamed sheet's zip member is closed too."""
    ws.close()
    out = ws._writer.out
    if not isinstance(out, str):
        out.close()


def _copy_sheet(zf: zipfile.ZipFile, ws: WriteOnlyWorksheet) -> Iterator[None]:
    """Copy a sheet openpyxl wrote to its temporary file into ``zf``, in chunks; yield after each."""
    _close_sheet(ws)
    info = zip_member(zf, ws.path[1:])
    info.file_size = os.path.getsize(ws._writer.out)  # zipfile uses ZIP64 only if the size needs it
    with open(ws._writer.out, "rb") as spooled, zf.open(info, "w") as member:
        while chunk := spooled.read(COPY_CHUNK_BYTES):
            member.write(chunk)
            yield
    ws._writer.cleanup()


def _remove_spools(sheets: Iterable[WriteOnlyWorksheet]) -> None:
    """Delete the sheets' temporary files and close a streamed member left open (an export that failed)."""
    for ws in sheets:
        writer: Any = getattr(ws, "_writer", None)
        if writer is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            if isinstance(writer.out, str):
                writer.cleanup()
            else:
                writer.out.close()


def _workbook_parts(
    zf: zipfile.ZipFile, schemas: Sequence[FormSchema], records: Iterable[ExportRecord], options: ExportOptions
) -> Iterator[ExportSummary | None]:
    """Write the workbook into ``zf``; yield ``None`` after every write so callers can drain, the summary last."""
    plan = plan_tables(schemas, options)
    rtl = _labels_right_to_left(plan, options)
    report = CleaningReport()
    wb = Workbook(write_only=True)
    try:
        sheets: list[tuple[WriteOnlyWorksheet, list[Convert]]] = []
        for index, (table, name) in enumerate(
            zip(plan.tables, sheet_names([t.stem for t in plan.tables]), strict=True)
        ):
            kinds = [column_kind(plan, c) for c in table.columns]
            ws = _open_sheet(wb, name, table.headers, kinds, rtl, zf if index == 0 else None)
            sheets.append((ws, [_converter(ws, k) for k in kinds]))
        yield None
        counts: Counter[int] = Counter()
        pending = 0
        for index, cells in export_rows(plan, options, records, report):
            ws, converters = sheets[index]
            ws.append([convert(c) for convert, c in zip(converters, cells)])  # noqa: B905  # same length: one plan
            counts[index] += 1
            pending += 1
            if pending >= FLUSH_ROWS:
                pending = 0
                yield None
        for index, (ws, converters) in enumerate(sheets):
            _filter(ws, len(converters), counts[index])
        _close_sheet(sheets[0][0])
        yield None
        for ws, _ in sheets[1:]:
            yield from _copy_sheet(zf, ws)
        report_kinds: list[CellKind] = ["text", "text", "text", "integer"]
        rs = _open_sheet(wb, REPORT_SHEET, ["table", "column", "step", "count"], report_kinds, rtl=False)
        rows = report.rows()
        for t, c, s, n in rows:
            rs.append([t, c, s, n])
        _filter(rs, len(report_kinds), len(rows))
        yield from _copy_sheet(zf, rs)
        wb.properties.modified = datetime.now(UTC).replace(tzinfo=None)  # as openpyxl's own save sets it
        _SheetsAlreadyWritten(wb, zf).write_data()
    finally:
        _remove_spools(wb.worksheets)
    yield summarise(plan, counts, report)


def iter_xlsx(
    schemas: Sequence[FormSchema],
    records: Iterable[ExportRecord],
    options: ExportOptions,
    on_done: Callable[[ExportSummary], None] | None = None,
) -> Iterator[bytes]:
    """Return an iterator of the XLSX workbook's bytes chunks; options are checked now, records read lazily.

    ``plan_tables`` runs before this returns, so a bad option raises ``ExportOptionError`` here (before
    an HTTP response starts); ``on_done`` receives the summary after the last chunk.
    """
    plan_tables(schemas, options)

    def chunks() -> Iterator[bytes]:
        sink = ChunkSink()
        summary: ExportSummary | None = None
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
            for step in _workbook_parts(zf, schemas, records, options):
                summary = step if step is not None else summary
                if data := sink.drain():
                    yield data
        if data := sink.drain():
            yield data
        if on_done is not None and summary is not None:
            on_done(summary)

    return chunks()


def write_xlsx(
    schemas: Sequence[FormSchema], records: Iterable[ExportRecord], options: ExportOptions, out: BinaryIO | IO[bytes]
) -> ExportSummary:
    """Write the tables of ``records`` as a typed XLSX workbook to ``out`` (``schemas`` oldest first).

    ``out`` need not be seekable; the workbook is written as ``iter_xlsx`` streams it.
    """
    done: list[ExportSummary] = []
    for chunk in iter_xlsx(schemas, records, options, on_done=done.append):
        out.write(chunk)
    return done[0]
