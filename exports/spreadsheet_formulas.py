"""Neutralising spreadsheet formulas in CSV cells ("CSV injection", OWASP).

Excel, LibreOffice and Google Sheets run a CSV cell that starts with ``=``, ``+``, ``-`` or ``@`` as a
formula (``=cmd|' /C calc'!A0``, ``+HYPERLINK(...)``, ``@SUM(...)``, ``-2+3``); a leading tab or carriage
return is skipped by some of them, so ``\\t=1+1`` is live too. A respondent (or anyone holding a device
key) chooses what a text answer says, and an analyst opens the export on an office machine: such a cell
is written with a leading apostrophe, as OWASP recommends, which every spreadsheet shows as text and
which a reader of the raw CSV recognises. Leading spaces or line breaks before a trigger are treated as
a trigger too (some importers trim them).

Which cells: decided by the column's type in the ``FormSchema``, not by the look of the value. A cell of
a numeric column (an ``int`` or ``decimal`` field, a geopoint part, a 0/1 choice flag) that is a plain
number, such as ``-2.5`` or ``-9.5981``, stays a number: escaping it would turn a longitude or a loss
into text and break every sum, and cleaning has already brought a valid value to a canonical number.
An unsplit geopoint, geotrace or geoshape made only of numbers (``-1.29 36.79 0 5``) stays as sent too:
with no name in it, no function can run. A numeric cell that is *not* of that shape (a value the
cleaning kept as sent and flagged) is escaped.
Every text-like cell (text, selects, dates kept as sent, labels, metadata, ``_issues``, headers) is
escaped whenever it starts with a trigger, whatever follows: a text column then always holds text, and
``-5`` typed into a free-text answer reads back as the text the person wrote.

XLSX needs none of this (its cells are typed strings, never formulas) and GeoJSON is not opened by
spreadsheets, so only the CSV writer calls ``neutralise_row``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from itertools import compress
from operator import itemgetter, methodcaller

from exports.tables import TablePlan
from forms.schema import Field

# The first character of every cell that may need a look (a frozenset: ``"" in "..."`` would be True).
_FIRST = frozenset("=+-@\t\r \n")
_TRIGGERS = ("=", "+", "-", "@")
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_PLAIN_NUMBER = re.compile(_NUMBER)
# A geopoint, geotrace or geoshape in one column: numbers separated by spaces (points by ";").
_GEO_NUMBERS = re.compile(rf"{_NUMBER}(?:\s*;?\s*{_NUMBER})*\s*;?")
_NUMERIC_BINDS = frozenset({"int", "decimal"})
_GEO_BINDS = frozenset({"geopoint", "geotrace", "geoshape"})
STEP = "formula_escaped"  # the cleaning report's step name
# Exports run over millions of cells: find the few that start with one of _FIRST in C (map + compress),
# not with a Python loop over every cell (which cost a fifth of a CSV export's time).
_STARTS_RISKY = methodcaller("startswith", tuple(_FIRST))
_FIRST_CHAR = itemgetter(slice(0, 1))  # "" for an empty cell
_ANY_FIRST = re.compile("[" + re.escape("".join(sorted(_FIRST))) + "]")


def is_formula_like(cell: str) -> bool:
    """Tell whether a spreadsheet could read ``cell`` as a formula."""
    if cell[:1] in ("\t", "\r"):
        return True
    return cell.lstrip(" \t\r\n").startswith(_TRIGGERS)


def neutralise(cell: str) -> str:
    """Return ``cell`` with a leading apostrophe when a spreadsheet could read it as a formula."""
    return "'" + cell if cell[:1] in _FIRST and is_formula_like(cell) else cell


def numeric_columns(table: TablePlan, fields: Mapping[str, Field]) -> dict[int, re.Pattern[str]]:
    """The table's columns whose cells are numbers by the form's types, each with the shape its numbers take."""
    out: dict[int, re.Pattern[str]] = {}
    for i, col in enumerate(table.columns):
        bind = fields[col.path].bind_type if col.kind in ("value", "geo_part") else ""
        if col.kind in ("geo_part", "choice_flag") or (col.kind == "value" and bind in _NUMERIC_BINDS):
            out[i] = _PLAIN_NUMBER
        elif col.kind == "value" and bind in _GEO_BINDS:
            out[i] = _GEO_NUMBERS
    return out


def neutralise_row(cells: list[str], numeric: Mapping[int, re.Pattern[str]], escaped: Counter[int]) -> None:
    """Escape, in place, every cell of a row a spreadsheet could run; count them by column index."""
    for i in compress(range(len(cells)), map(_STARTS_RISKY, cells)):
        cell = cells[i]
        shape = numeric.get(i)
        if shape is not None and shape.fullmatch(cell):
            continue
        if is_formula_like(cell):
            cells[i] = "'" + cell
            escaped[i] += 1


def neutralise_column(cells: list[str], shape: re.Pattern[str] | None) -> int:
    """Escape, in place, every cell of one column a spreadsheet could run; return how many were escaped.

    ``shape`` is the column's number shape (``numeric_columns``), None for a text column. The same rule
    as ``neutralise_row``, column by column: the first characters of a whole column are joined and
    searched once, so a column with no trigger (most of them) costs no Python step per cell.
    """
    if not _ANY_FIRST.search("".join(map(_FIRST_CHAR, cells))):
        return 0
    escaped = 0
    for i in compress(range(len(cells)), map(_FIRST.__contains__, map(_FIRST_CHAR, cells))):
        cell = cells[i]
        if shape is not None and shape.fullmatch(cell):
            continue
        if is_formula_like(cell):
            cells[i] = "'" + cell
            escaped += 1
    return escaped
