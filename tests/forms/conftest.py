"""Helpers for the forms tests: inline XLSForms (markdown via pyxform, or real .xlsx via openpyxl)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

from openpyxl import Workbook
from pyxform.xls2xform import convert

from forms.schema import FormSchema
from forms.xform import parse_xform


def md_xform(md: str) -> bytes:
    """Convert a markdown XLSForm (pyxform's test format) to XForm bytes."""
    result = convert(textwrap.dedent(md).encode("utf-8"), file_type=".md")
    return result.xform.encode("utf-8")


def md_schema(md: str) -> FormSchema:
    """Convert a markdown XLSForm and parse the XForm into a FormSchema."""
    result = convert(textwrap.dedent(md).encode("utf-8"), file_type=".md")
    itemsets = result.itemsets.encode("utf-8") if result.itemsets else None
    return parse_xform(result.xform.encode("utf-8"), itemsets)


def xlsx_bytes(sheets: Mapping[str, Sequence[Sequence[str]]]) -> bytes:
    """Build an .xlsx workbook in memory: sheet name -> rows (the first row is the header)."""
    workbook = Workbook()
    default = workbook.active
    assert default is not None
    workbook.remove(default)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


SIMPLE_SURVEY: list[list[str]] = [
    ["type", "name", "label"],
    ["text", "coop_name", "Cooperative name"],
    ["integer", "members", "Members"],
]
SIMPLE_SETTINGS: list[list[str]] = [["form_id", "version"], ["coop_simple", "2024050101"]]
