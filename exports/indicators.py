"""A programme's indicators: their definitions, checked against a form, and the reference computation.

An indicator is defined by the programme, not coded: a name in fr/ar/en, a source (a form, or an
entity list such as the cooperatives), a measure, optional filters, breakdowns (a select field such as
the region, and time by month or quarter), an optional target and which review states count. The
definition is plain JSON (stored versioned by the server); :func:`parse_definition` turns it into a
frozen :class:`IndicatorDefinition` or raises :class:`IndicatorError` naming the bad part.

Measures:
- ``count``: how many rows;
- ``distinct``: how many distinct non-empty values of a field;
- ``share``: the share of rows matching ``where`` (a list of conditions, all must hold), in [0, 1];
- ``sum`` / ``mean``: of a number field (values that are not numbers are left out, and counted).

Conditions compare a field's value as text (``eq``, ``ne``, ``in``, ``not_in``), as a number (``gt``,
``ge``, ``lt``, ``le``; a value that is not a number never matches) or as a select_multiple answer
(``contains``: one of its space-separated choices). A missing (or empty) value equals nothing: ``eq``/``in``/
``contains`` are false for it, ``ne``/``not_in`` true.

The server computes the same figures in SQL for speed; :func:`compute` is the reference in plain
Python over rows, used for entity lists and by the tests that hold SQL to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from forms.schema import FormSchema

MeasureKind = Literal["count", "distinct", "share", "sum", "mean"]
Period = Literal["month", "quarter"]
MEASURES: tuple[MeasureKind, ...] = ("count", "distinct", "share", "sum", "mean")
PERIODS: tuple[Period, ...] = ("month", "quarter")
TEXT_OPS = ("eq", "ne", "in", "not_in", "contains")
NUMBER_OPS = ("gt", "ge", "lt", "le")
OPERATORS = TEXT_OPS + NUMBER_OPS
# Review states that may count; a rejected submission never counts, whatever the definition says.
COUNTABLE_STATES = ("received", "has_issues", "approved")
LANGUAGES = ("fr", "ar", "en")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# What counts as a number in a field: the XML decimal/integer lexical space, without exponents.
NUMBER = re.compile(r"^\s*-?(\d+(\.\d*)?|\.\d+)\s*$")
SQL_NUMBER_PATTERN = r"^\s*-?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$"  # the same, in POSIX regex syntax

Source = Literal["form", "entity_list"]


class IndicatorError(ValueError):
    """A definition that cannot be used: ``code`` is stable, ``field`` names the bad part."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Condition:
    """``field op value``: ``value`` is a string, a number or (``in``/``not_in``) a tuple of strings."""

    field: str
    op: str
    value: str | float | tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of the condition."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "op": self.op, "value": value}


@dataclass(frozen=True, slots=True)
class IndicatorDefinition:
    """One indicator of a project, as the programme defined it."""

    name: str
    titles: Mapping[str, str]
    source: Source
    source_name: str  # a form's id, or an entity list's name
    measure: MeasureKind
    measure_field: str | None = None  # for distinct, sum, mean
    where: tuple[Condition, ...] = ()  # for share
    filters: tuple[Condition, ...] = ()
    breakdowns: tuple[str, ...] = ()  # fields the figure may be broken down by
    target: float | None = None
    review_states: tuple[str, ...] = COUNTABLE_STATES
    date_field: str | None = None  # the field periods are read from; default: when the row arrived

    def fields(self) -> tuple[str, ...]:
        """Every field the definition reads, in order, once."""
        names: list[str] = []
        for name in (
            self.measure_field,
            *(c.field for c in self.where),
            *(c.field for c in self.filters),
            *self.breakdowns,
            self.date_field,
        ):
            if name and name not in names:
                names.append(name)
        return tuple(names)

    def title(self, language: str) -> str:
        """The name in ``language``, else in French, else the first one given."""
        return self.titles.get(language) or self.titles.get("fr") or next(iter(self.titles.values()), self.name)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form that :func:`parse_definition` reads back."""
        measure: dict[str, Any] = {"kind": self.measure}
        if self.measure_field:
            measure["field"] = self.measure_field
        if self.where:
            measure["where"] = [c.to_json() for c in self.where]
        out: dict[str, Any] = {
            "title": dict(self.titles),
            "source": {self.source: self.source_name},
            "measure": measure,
            "filters": [c.to_json() for c in self.filters],
            "breakdowns": list(self.breakdowns),
            "review_states": list(self.review_states),
        }
        if self.target is not None:
            out["target"] = self.target
        if self.date_field:
            out["date_field"] = self.date_field
        return out


def _fail(code: str, message: str, where: str) -> IndicatorError:
    return IndicatorError(code, message, where)


def _field_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise _fail("bad_field", "A field is named by its path in the form, e.g. 'region' or 'identite/sexe'", where)
    return value.strip().strip("/")


def _condition(raw: Any, where: str) -> Condition:
    if not isinstance(raw, Mapping) or set(raw) - {"field", "op", "value"} or "field" not in raw:
        raise _fail("bad_condition", "A condition is {field, op, value}", where)
    op = raw.get("op", "eq")
    if op not in OPERATORS:
        raise _fail("bad_operator", f"Unknown operator {op!r}; allowed: {', '.join(OPERATORS)}", f"{where}.op")
    value = raw.get("value")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or not all(isinstance(v, str | int | float) for v in value):
            raise _fail("bad_value", f"'{op}' takes a non-empty list of values", f"{where}.value")
        return Condition(_field_name(raw["field"], f"{where}.field"), op, tuple(_text(v) for v in value))
    if op in NUMBER_OPS:
        number = _number(value)
        if number is None:
            raise _fail("bad_value", f"'{op}' compares with a number", f"{where}.value")
        return Condition(_field_name(raw["field"], f"{where}.field"), op, number)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail("bad_value", f"'{op}' compares with one value (text or number)", f"{where}.value")
    return Condition(_field_name(raw["field"], f"{where}.field"), op, _text(value))


def _text(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and NUMBER.match(value):
        return float(value)
    return None


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 20:
        raise _fail("bad_condition", "Conditions are a list (at most 20)", where)
    return tuple(_condition(item, f"{where}[{i}]") for i, item in enumerate(raw))


def parse_definition(name: str, raw: Any) -> IndicatorDefinition:
    """Read an indicator's JSON definition; raise :class:`IndicatorError` naming what is wrong."""
    if not isinstance(name, str) or not NAME.match(name):
        raise _fail("bad_name", "An indicator's name is lower-case letters, digits and _ (e.g. women_share)", "name")
    if not isinstance(raw, Mapping):
        raise _fail("bad_definition", "A definition is a JSON object", "definition")
    known = {"title", "source", "measure", "filters", "breakdowns", "target", "review_states", "date_field"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail("unknown_key", f"Unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}", unknown[0])
    titles = raw.get("title")
    if (
        not isinstance(titles, Mapping)
        or not titles
        or not all(k in LANGUAGES and isinstance(v, str) and v.strip() and len(v) <= 200 for k, v in titles.items())
    ):
        raise _fail("bad_title", "The title is an object of names by language: fr, ar, en", "title")
    source = raw.get("source")
    if not isinstance(source, Mapping) or len(source) != 1 or next(iter(source)) not in ("form", "entity_list"):
        raise _fail("bad_source", 'The source is {"form": <form id>} or {"entity_list": <name>}', "source")
    source_kind, source_name = next(iter(source.items()))
    if not isinstance(source_name, str) or not source_name.strip():
        raise _fail("bad_source", "The source names a form id or an entity list", "source")
    measure = raw.get("measure")
    if not isinstance(measure, Mapping) or measure.get("kind") not in MEASURES:
        raise _fail("bad_measure", f"The measure is {{kind, ...}} with kind one of {', '.join(MEASURES)}", "measure")
    if set(measure) - {"kind", "field", "where"}:
        raise _fail("bad_measure", "A measure has only kind, field and where", "measure")
    kind: MeasureKind = measure["kind"]
    measure_field = None
    if kind in ("distinct", "sum", "mean"):
        measure_field = _field_name(measure.get("field"), "measure.field")
    elif "field" in measure:
        raise _fail("bad_measure", f"A {kind} measure has no field", "measure.field")
    where = _conditions(measure.get("where"), "measure.where")
    if kind == "share" and not where:
        raise _fail("bad_measure", "A share says which rows it counts: measure.where", "measure.where")
    if kind != "share" and where:
        raise _fail("bad_measure", "Only a share measure has 'where' (use filters)", "measure.where")
    breakdowns = raw.get("breakdowns") or []
    if not isinstance(breakdowns, list) or len(breakdowns) > 10:
        raise _fail("bad_breakdowns", "Breakdowns are a list of fields (at most 10)", "breakdowns")
    target = raw.get("target")
    if target is not None:
        target = _number(target)
        if target is None or target < 0 or (kind == "share" and target > 1):
            raise _fail("bad_target", "The target is a number (a share's is between 0 and 1)", "target")
    states = raw.get("review_states", list(COUNTABLE_STATES))
    if not isinstance(states, list) or not states or not all(s in COUNTABLE_STATES for s in states):
        raise _fail(
            "bad_review_states",
            f"review_states lists which of {', '.join(COUNTABLE_STATES)} count (rejected never counts)",
            "review_states",
        )
    date_field = raw.get("date_field")
    return IndicatorDefinition(
        name=name,
        titles={k: v.strip() for k, v in titles.items()},
        source=source_kind,
        source_name=source_name.strip(),
        measure=kind,
        measure_field=measure_field,
        where=where,
        filters=_conditions(raw.get("filters"), "filters"),
        breakdowns=tuple(dict.fromkeys(_field_name(b, f"breakdowns[{i}]") for i, b in enumerate(breakdowns))),
        target=target,
        review_states=tuple(s for s in COUNTABLE_STATES if s in states),
        date_field=_field_name(date_field, "date_field") if date_field is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# Checking a definition against a form's versions


@dataclass(frozen=True, slots=True)
class FieldNote:
    """A field the definition reads that some versions of the form lack (their rows have no value)."""

    field: str
    missing_from: tuple[str, ...]  # versions without the field
    in_current: bool


def check_against_form(definition: IndicatorDefinition, schemas: Sequence[FormSchema]) -> tuple[FieldNote, ...]:
    """Check the fields against every version (current last); raise when no version has one of them.

    A field inside a repeat is refused: an indicator counts submissions, one row each.
    """
    notes: list[FieldNote] = []
    for name in definition.fields():
        having = [s for s in schemas if s.field_by_path(name) is not None]
        if not having:
            raise _fail("unknown_field", f"No version of form {definition.source_name!r} has a field {name!r}", name)
        if any(s.field_by_path(name).repeat for s in having):  # type: ignore[union-attr]
            raise _fail("repeat_field", f"Field {name!r} is inside a repeat: an indicator counts submissions", name)
        missing = tuple(s.version for s in schemas if s.field_by_path(name) is None)
        if missing:
            notes.append(FieldNote(name, missing, schemas[-1].field_by_path(name) is not None))
    return tuple(notes)


# ---------------------------------------------------------------------------------------------
# The reference computation


@dataclass(frozen=True, slots=True)
class IndicatorRow:
    """One counted unit: a submission's current version (or an entity) with the values read."""

    values: Mapping[str, str | None]  # field path -> value as text (None when absent)
    at: datetime  # when it arrived (periods come from here unless the definition has a date_field)
    review_state: str = "received"


@dataclass(frozen=True, slots=True)
class Cell:
    """Additive parts of a figure: rows counted, rows matched (share), numbers summed, distinct values."""

    rows: int = 0
    matched: int = 0
    total: float = 0.0
    numbers: int = 0
    distinct: frozenset[str] = frozenset()

    def value(self, measure: MeasureKind) -> float | None:
        """The figure for ``measure`` (None where it is undefined: a share or mean of nothing)."""
        if measure == "count":
            return float(self.rows)
        if measure == "distinct":
            return float(len(self.distinct))
        if measure == "share":
            return self.matched / self.rows if self.rows else None
        if measure == "sum":
            return self.total
        return self.total / self.numbers if self.numbers else None


@dataclass(frozen=True, slots=True)
class Figures:
    """An indicator's figures: overall, and by (breakdown key, period key) when asked."""

    overall: Cell
    cells: Mapping[tuple[str | None, str | None], Cell] = field(default_factory=dict)


def _present(value: str | None) -> str | None:
    """An empty answer is no answer (the CSV export cannot tell them apart either)."""
    return None if value == "" else value


def matches(condition: Condition, value: str | None) -> bool:
    """Whether ``value`` (text, or None when absent or empty) meets ``condition``."""
    value = _present(value)
    op = condition.op
    if op in NUMBER_OPS:
        number = _number(value)
        target = float(condition.value)  # type: ignore[arg-type]
        if number is None:
            return False
        return {"gt": number > target, "ge": number >= target, "lt": number < target, "le": number <= target}[op]
    if op == "eq":
        return value is not None and value == condition.value
    if op == "ne":
        return value is None or value != condition.value
    if op == "in":
        return value is not None and value in condition.value  # type: ignore[operator]
    if op == "not_in":
        return value is None or value not in condition.value  # type: ignore[operator]
    return value is not None and str(condition.value) in value.split()  # contains


def period_key(at: datetime | str | None, period: Period) -> str | None:
    """``2026-03`` for a month, ``2026-Q1`` for a quarter, from a datetime or an ISO date text."""
    if at is None:
        return None
    text = at.isoformat() if isinstance(at, datetime) else at.strip()
    if not re.match(r"^\d{4}-\d{2}", text):
        return None
    year, month = text[:4], int(text[5:7])
    if not 1 <= month <= 12:
        return None
    return f"{year}-{month:02d}" if period == "month" else f"{year}-Q{(month + 2) // 3}"


def _add(cell: Cell, definition: IndicatorDefinition, row: IndicatorRow) -> Cell:
    value = _present(row.values.get(definition.measure_field)) if definition.measure_field else None
    number = _number(value) if definition.measure in ("sum", "mean") else None
    matched = definition.measure == "share" and all(matches(c, row.values.get(c.field)) for c in definition.where)
    distinct = cell.distinct
    if definition.measure == "distinct" and value is not None:
        distinct = distinct | {value}
    return Cell(
        rows=cell.rows + 1,
        matched=cell.matched + int(matched),
        total=cell.total + (number or 0.0),
        numbers=cell.numbers + int(number is not None),
        distinct=distinct,
    )


def counts(definition: IndicatorDefinition, row: IndicatorRow) -> bool:
    """Whether ``row`` counts: its review state is one the definition counts and every filter holds."""
    return row.review_state in definition.review_states and all(
        matches(c, row.values.get(c.field)) for c in definition.filters
    )


def compute(
    definition: IndicatorDefinition,
    rows: Iterable[IndicatorRow],
    *,
    by: str | None = None,
    period: Period | None = None,
) -> Figures:
    """The figures of ``definition`` over ``rows``, overall and by ``by`` and/or ``period``."""
    overall = Cell()
    cells: dict[tuple[str | None, str | None], Cell] = {}
    for row in rows:
        if not counts(definition, row):
            continue
        overall = _add(overall, definition, row)
        if by is None and period is None:
            continue
        when: datetime | str | None = row.at
        if definition.date_field:
            when = row.values.get(definition.date_field)
        key = (_present(row.values.get(by)) if by else None, period_key(when, period) if period else None)
        cells[key] = _add(cells.get(key, Cell()), definition, row)
    return Figures(overall, cells)
