"""Cleaning of one exported value, and the ``CleaningReport`` that counts every change.

Each function is pure: it takes the raw submitted text and the field, returns the cleaned text, the
steps that changed it and, when the value does not fit its type or choices, an issue. A value that does
not fit is kept exactly as sent (after Unicode/whitespace normalisation) and the issue goes to the row's
``_issues`` column: never dropped, never coerced silently.

Steps (the ``step`` column of cleaning_report.csv):
- ``nfc``: Unicode normalised to NFC (phones send NFD Arabic/French from some keyboards).
- ``whitespace``: leading/trailing whitespace trimmed, runs of spaces/tabs collapsed to one space
  (newlines inside free text are kept, spaces around them trimmed).
- ``number``: ``1,5`` → ``1.5``; thousands groups separated by spaces (``1 234``) joined; a leading ``+``
  and leading zeros dropped. Integers stay integers; ``1.234,5`` or ``1,250`` are ambiguous and flagged.
- ``date``: ``YYYY-M-D`` → ``YYYY-MM-DD``.
- ``time`` / ``datetime``: ISO 8601 with milliseconds, the device's offset kept (the local time of the
  interview is what an analyst reads), written ``±HH:MM`` (``+03`` → ``+03:00``); ``Z`` stays ``Z``.
- ``choices``: select_multiple/rank separators collapsed to one space.
- ``geopoint``: coordinates separated by exactly one space.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, time

from forms.schema import Field

ReportKey = tuple[str, str, str]  # (table file name, column header, step)


class CleaningReport:
    """Counts per (table, column, step) of changed values, issues, and rows excluded by reason."""

    def __init__(self) -> None:
        self.changes: Counter[ReportKey] = Counter()
        self.excluded: Counter[str] = Counter()
        self.records_read = 0

    def count(self, table: str, column: str, step: str) -> None:
        """Count one value of ``column`` in ``table`` changed (or flagged) by ``step``."""
        self.changes[(table, column, step)] += 1

    def exclude(self, reason: str) -> None:
        """Count one submission left out of the export for ``reason``."""
        self.excluded[reason] += 1

    def rows(self) -> list[tuple[str, str, str, int]]:
        """Return the report as sorted ``(table, column, step, count)`` rows; exclusions use column ``*``."""
        rows = [(t, c, s, n) for (t, c, s), n in sorted(self.changes.items())]
        rows += [("*", "*", f"excluded:{reason}", n) for reason, n in sorted(self.excluded.items())]
        return rows


@dataclass(frozen=True, slots=True)
class Cleaned:
    """The result of cleaning one value: the text to write, the steps applied, an issue if any."""

    value: str
    steps: tuple[str, ...] = ()
    issue: str | None = None


_HSPACE_RUN = re.compile(r"[ \t\u00a0\u2007\u202f]+")
# Anything normalise_text would change besides NFC: other spaces, double spaces, line separators other
# than "\n" (splitlines() splits on them), whitespace at either end or around a newline.
_MAY_NEED_SPACING = re.compile(r"[\t\u00a0\u2007\u202f\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]| {2}|^\s|\s$| \n|\n ")
_INT_RE = re.compile(r"^[+-]?\d+$")
_DEC_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")
_GROUPED_RE = re.compile(r"^[+-]?\d{1,3}([ \u00a0\u2007\u202f]\d{3})+([.,]\d+)?$")
# "1,250" is 1.25 in French and 1250 in English: never guessed. "0,125" and "1,5" are unambiguous.
_AMBIGUOUS_COMMA = re.compile(r"^[+-]?[1-9]\d{0,2},\d{3}$")
_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_OFFSET_RE = re.compile(r"([+-])(\d{2}):?(\d{2})?$")
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$")
_NUMBER_TYPES = frozenset({"int", "decimal"})


def normalise_text(raw: str) -> Cleaned:
    """NFC-normalise and trim/collapse horizontal whitespace, keeping newlines."""
    if not _MAY_NEED_SPACING.search(raw) and unicodedata.is_normalized("NFC", raw):
        return Cleaned(raw)  # the common case, checked cheaply: exports run over millions of values
    steps: list[str] = []
    text = unicodedata.normalize("NFC", raw)
    if text != raw:
        steps.append("nfc")
    lines = [_HSPACE_RUN.sub(" ", line).strip(" ") for line in text.strip().splitlines()]
    spaced = "\n".join(lines)
    if spaced != text:
        steps.append("whitespace")
    return Cleaned(spaced, tuple(steps))


def _canonical_int(text: str) -> str:
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    return "0" if digits == "0" else sign + digits


def clean_number(text: str, bind_type: str) -> Cleaned:
    """Bring an int/decimal to ``[-]digits[.digits]``; flag what cannot be read without guessing."""
    candidate = text
    if _GROUPED_RE.match(candidate):
        candidate = _HSPACE_RUN.sub("", candidate)
    if bind_type == "decimal" and _AMBIGUOUS_COMMA.match(candidate):
        return Cleaned(text, issue="ambiguous decimal comma (thousands separator or decimals?)")
    if bind_type == "decimal" and candidate.count(",") == 1 and "." not in candidate:
        candidate = candidate.replace(",", ".")
    if bind_type == "int":
        if not _INT_RE.match(candidate):
            return Cleaned(text, issue="not an integer")
        out = _canonical_int(candidate)
    else:
        if not _DEC_RE.match(candidate):
            return Cleaned(text, issue="not a decimal number")
        sign = "-" if candidate.startswith("-") else ""
        whole, _, frac = candidate.lstrip("+-").partition(".")
        out = _canonical_int(sign + (whole or "0"))
        if frac:  # "3." is just 3: an int stays an int
            out = ("-" if sign and out == "0" else "") + out + "." + frac
    return Cleaned(out, ("number",) if out != text else ())


def _offset(text: str | None) -> str:
    if not text:
        return ""
    if text == "Z":
        return "Z"
    m = _OFFSET_RE.match(text)
    assert m is not None  # guaranteed by the calling regexes
    return f"{m.group(1)}{m.group(2)}:{m.group(3) or '00'}"


def _clean_time_part(text: str) -> str | None:
    m = _TIME_RE.match(text)
    if not m:
        return None
    hh, mm, ss, frac, off = m.groups()
    frac3 = (frac or "").ljust(3, "0")[:3]
    try:
        time(int(hh), int(mm), int(ss or 0), int(frac3) * 1000)
    except ValueError:
        return None
    return f"{hh}:{mm}:{ss or '00'}.{frac3}{_offset(off)}"


def clean_temporal(text: str, bind_type: str) -> Cleaned:
    """Bring a date, time or dateTime to one ISO 8601 form, keeping its offset."""
    if bind_type == "date":
        m = _DATE_RE.match(text)
        if not m:
            return Cleaned(text, issue="not a date (YYYY-MM-DD)")
        try:
            out = date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
        except ValueError:
            return Cleaned(text, issue="not a valid calendar date")
        return Cleaned(out, ("date",) if out != text else ())
    if bind_type == "time":
        tout = _clean_time_part(text)
        if tout is None:
            return Cleaned(text, issue="not a time (HH:MM:SS)")
        return Cleaned(tout, ("time",) if tout != text else ())
    day, sep, clock = text.partition("T")
    if not sep:
        day, sep, clock = text.partition(" ")
    dm = _DATE_RE.match(day)
    tpart = _clean_time_part(clock) if sep else None
    if not dm or tpart is None:
        return Cleaned(text, issue="not a dateTime (ISO 8601)")
    try:
        dout = date(int(dm.group(1)), int(dm.group(2)), int(dm.group(3))).isoformat()
    except ValueError:
        return Cleaned(text, issue="not a valid calendar date")
    out = f"{dout}T{tpart}"
    return Cleaned(out, ("datetime",) if out != text else ())


def clean_geopoint(text: str) -> Cleaned:
    """Check ``lat lon [alt [acc]]`` and join the parts with one space."""
    parts = text.split()
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return Cleaned(text, issue="not a geopoint")
    if not 2 <= len(numbers) <= 4 or not (-90 <= numbers[0] <= 90 and -180 <= numbers[1] <= 180):
        return Cleaned(text, issue="not a geopoint")
    out = " ".join(parts)
    return Cleaned(out, ("geopoint",) if out != text else ())


def clean_choices(text: str, multiple: bool, allowed: Collection[str] | None) -> Cleaned:
    """Check choice names against the form's choices (``None``: list unknown, e.g. from a file)."""
    if not multiple:
        if allowed is not None and text not in allowed:
            return Cleaned(text, issue="not one of the form's choices")
        return Cleaned(text)
    names = text.split()
    out = " ".join(names)
    if allowed is not None:
        unknown = [n for n in names if n not in allowed]
        if unknown:
            return Cleaned(text, issue=f"not among the form's choices: {' '.join(unknown)}")
    return Cleaned(out, ("choices",) if out != text else ())


def clean_value(raw: str, field: Field, allowed: Collection[str] | None, clean: bool = True) -> Cleaned:
    """Clean one leaf value for ``field``; with ``clean`` off only flag problems, change nothing."""
    base = normalise_text(raw)
    text = base.value
    if text == "":
        return base if clean else Cleaned(raw)
    if field.bind_type in _NUMBER_TYPES:
        typed = clean_number(text, field.bind_type)
    elif field.bind_type in ("date", "time", "dateTime"):
        typed = clean_temporal(text, field.bind_type)
    elif field.bind_type == "geopoint":
        typed = clean_geopoint(text)
    elif field.control in ("select_one", "select_multiple", "rank") or field.bind_type == "odk:rank":
        typed = clean_choices(text, field.control != "select_one", allowed)
    else:
        return base if clean else Cleaned(raw)
    if not clean:
        # Flag only what breaks the type: spaces around free text are not an error.
        if typed.issue is None and typed.value != raw:
            return Cleaned(raw, issue=f"not in canonical form (cleaning gives {typed.value!r})")
        return Cleaned(raw, issue=typed.issue)
    if typed.issue is not None:
        return Cleaned(text, base.steps, typed.issue)
    return Cleaned(typed.value, base.steps + typed.steps)
