"""The XLSX export: the CSV zip's tables as sheets of one workbook, written with openpyxl write-only.

openpyxl's write-only worksheets stream their rows to temporary files, so memory does not grow with the
number of submissions. Sheet names are the table names without ``.csv``, with characters Excel forbids
replaced, cut to 31 characters and made unique with ``~n``; the cleaning report is the last sheet.

Cells hold the same text as the CSVs. Text starting with ``=`` is forced to a string cell (no formula
is ever written); control characters that XML 1.0 cannot carry are replaced by U+FFFD.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from exports.cleaning import CleaningReport
from exports.options import ExportOptions
from exports.records import ExportRecord
from exports.rows import ExportSummary, export_rows, summarise
from exports.tables import plan_tables
from forms.schema import FormSchema

REPORT_SHEET = "cleaning_report"
MAX_SHEET_NAME = 31
_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def sheet_names(stems: Sequence[str]) -> list[str]:
    """Excel-safe, unique sheet names (≤ 31 characters) for the given table names, in order."""
    used: set[str] = {REPORT_SHEET.casefold()}
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


def _cell(ws: WriteOnlyWorksheet, text: str) -> WriteOnlyCell | str:
    text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", text)
    if not text.startswith("="):
        return text
    cell = WriteOnlyCell(ws, value=text)
    cell.data_type = "s"  # openpyxl would otherwise store "=..." as a formula
    return cell


def write_xlsx(
    schemas: Sequence[FormSchema], records: Iterable[ExportRecord], options: ExportOptions, out: BinaryIO
) -> ExportSummary:
    """Write the tables of ``records`` as an XLSX workbook to ``out`` (``schemas`` oldest first)."""
    plan = plan_tables(schemas, options)
    report = CleaningReport()
    wb = Workbook(write_only=True)
    sheets: list[WriteOnlyWorksheet] = []
    for table, name in zip(plan.tables, sheet_names([t.stem for t in plan.tables]), strict=True):
        ws = wb.create_sheet(title=name)
        ws.append([_cell(ws, h) for h in table.headers])
        sheets.append(ws)
    counts: Counter[int] = Counter()
    for index, cells in export_rows(plan, options, records, report):
        ws = sheets[index]
        ws.append([_cell(ws, c) for c in cells])
        counts[index] += 1
    rs = wb.create_sheet(title=REPORT_SHEET)
    rs.append(["table", "column", "step", "count"])
    for t, c, s, n in report.rows():
        rs.append([t, c, s, n])
    wb.save(out)
    return summarise(plan, counts, report)
