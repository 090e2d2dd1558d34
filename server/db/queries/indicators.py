"""Queries of the dashboard area: indicator definitions (every version) and figures in one GROUP BY.

A form's figures are read in one statement over the current version of each live submission: the
submission's row gives the review state and the arrival date, the version's JSON record the values.
Conditions compile to SQL with the meaning ``exports.indicators`` gives them (a missing value equals
nothing; a number is what ``NUMBER`` matches), and the statement groups by the breakdown field, the
month and (for a distinct count) the counted value, so the few group rows fold into every figure the
page shows: overall, by region, by month or quarter, and both, from one scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, String, and_, case, cast, func, literal, null, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from exports.indicators import (
    NUMBER_OPS,
    SQL_NUMBER_PATTERN,
    Cell,
    Condition,
    Figures,
    IndicatorDefinition,
    Period,
    period_key,
)
from server.db.models.indicators import IndicatorDefinitionRow
from server.db.models.submissions import Submission, SubmissionVersion


def latest_definitions(session: Session, project_id: int | None) -> list[IndicatorDefinitionRow]:
    """The version in force of each indicator of a project, or of every project when ``project_id`` is
    None (removed ones included, definition NULL)."""
    d = IndicatorDefinitionRow
    newest = select(d.project_id, d.name, func.max(d.version).label("version")).group_by(d.project_id, d.name)
    if project_id is not None:
        newest = newest.where(d.project_id == project_id)
    latest = newest.subquery()
    return list(
        session.scalars(
            select(d)
            .join(
                latest,
                and_(d.project_id == latest.c.project_id, d.name == latest.c.name, d.version == latest.c.version),
            )
            .order_by(d.project_id, d.name)
        )
    )


def definition_history(session: Session, project_id: int, name: str) -> list[IndicatorDefinitionRow]:
    """Every saved version of one indicator, newest first."""
    return list(
        session.scalars(
            select(IndicatorDefinitionRow)
            .where(IndicatorDefinitionRow.project_id == project_id, IndicatorDefinitionRow.name == name)
            .order_by(IndicatorDefinitionRow.version.desc())
        )
    )


def _value(path: str) -> ColumnElement[Any]:
    """A field of the current version's record, as text (NULL when absent or empty, as in exports.indicators)."""
    return func.nullif(SubmissionVersion.record[tuple(path.split("/"))].as_string(), "", type_=String)


def _number(expr: ColumnElement[Any], dialect: str, number_type: Any = Float) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return case((expr.op("~")(SQL_NUMBER_PATTERN), cast(expr, number_type)), else_=None)
    return func.fieldsync_number(expr, type_=Float)


def condition_sql(condition: Condition, dialect: str, value: ColumnElement[Any] | None = None) -> ColumnElement[bool]:
    """``condition`` as a SQL boolean (false, never NULL, where the value is missing and must not match).

    ``value`` is the field's text when it was already read (a column of a subquery); else it is read here.
    """
    if value is None:
        value = _value(condition.field)
    op = condition.op
    if op in NUMBER_OPS:
        number = _number(value, dialect)
        target = float(condition.value)  # type: ignore[arg-type]
        compared = {"gt": number > target, "ge": number >= target, "lt": number < target, "le": number <= target}[op]
        return and_(number.is_not(None), compared)
    if op == "eq":
        return and_(value.is_not(None), value == condition.value)
    if op == "ne":
        return or_(value.is_(None), value != condition.value)
    if op == "in":
        return and_(value.is_not(None), value.in_(list(condition.value)))
    if op == "not_in":
        return or_(value.is_(None), value.not_in(list(condition.value)))
    spaced = literal(" ", String) + value + literal(" ", String)
    return and_(value.is_not(None), spaced.contains(f" {condition.value} ", autoescape=True))


def _month(definition: IndicatorDefinition, dialect: str) -> ColumnElement[Any]:
    if definition.date_field:
        return func.substr(_value(definition.date_field), 1, 7)
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", Submission.created_at), "YYYY-MM")
    return func.substr(cast(Submission.created_at, String), 1, 7)


def counted_rows(
    form_pk: int,
    definition: IndicatorDefinition,
    dialect: str,
    paths: Sequence[str],
    *,
    month: bool,
    submission_ids: Sequence[int] | None = None,
) -> Any:
    """The innermost level: one row per submission the definition counts, each field in ``paths`` read
    once (columns ``f0``, ``f1``...), the month in ``m`` when asked and the submission's id in ``sid``.

    ``submission_ids`` limits it to those submissions (a rollup's refresh).
    """
    s, sv = Submission, SubmissionVersion
    read = [_value(p).label(f"f{i}") for i, p in enumerate(paths)]
    month_expr = _month(definition, dialect) if month else literal(None, String)
    stmt = (
        select(s.id.label("sid"), *read, month_expr.label("m"))
        .select_from(s)
        .join(sv, and_(sv.project_id == s.project_id, sv.form_id == s.form_id, sv.instance_id == s.current_instance_id))
        .where(
            s.form_id == form_pk,
            s.deleted_at.is_(None),
            s.review_state.in_(list(definition.review_states)),
            sv.encrypted.is_(False),
            *(condition_sql(c, dialect) for c in definition.filters),
        )
    )
    if submission_ids is not None:
        stmt = stmt.where(s.id.in_(list(submission_ids)))
    return stmt.offset(0).subquery("rows")


def row_measures(
    definition: IndicatorDefinition, dialect: str, column: dict[str, Any], number_type: Any = Float
) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any] | None]:
    """A counted row's match (share: 1 or 0), number (sum, mean: the field's number or NULL) and
    distinct value (distinct: the field's text), from the texts ``counted_rows`` read."""
    match: ColumnElement[Any] = literal(0)
    if definition.measure == "share":
        match = case((and_(*(condition_sql(c, dialect, column[c.field]) for c in definition.where)), 1), else_=0)
    number: ColumnElement[Any] = cast(null(), number_type)
    if definition.measure in ("sum", "mean") and definition.measure_field:
        number = _number(column[definition.measure_field], dialect, number_type)
    distinct = (
        column[definition.measure_field] if definition.measure == "distinct" and definition.measure_field else None
    )
    return match, number, distinct


def read_paths(definition: IndicatorDefinition, breakdowns: Sequence[str | None]) -> list[str]:
    """Every field a figure of ``definition`` reads, each once: breakdowns, the measure's, the share's."""
    read = (*breakdowns, definition.measure_field, *(c.field for c in definition.where))
    return [p for p in dict.fromkeys(read) if p]


def form_figures(
    session: Session,
    form_pk: int,
    definition: IndicatorDefinition,
    *,
    by: str | None = None,
    period: Period | None = None,
) -> Figures:
    """The figures of ``definition`` over a form's live submissions (current versions), in one statement.

    Three levels, each fenced by ``OFFSET 0`` so PostgreSQL does not fold them back together: the
    innermost reads each field the figure needs once per row (every read of a JSONB record decompresses
    it, and a folded statement read the measure's field four times), the middle one turns those texts into
    the row's match and number, the outer one groups.
    """
    dialect = session.get_bind().dialect.name
    paths = read_paths(definition, (by,))
    rows = counted_rows(form_pk, definition, dialect, paths, month=period is not None)
    column = {p: rows.c[f"f{i}"] for i, p in enumerate(paths)}
    match, number, distinct = row_measures(definition, dialect, column)
    values = (
        select(
            (column[by] if by else literal(None, String)).label("k"),
            rows.c.m.label("m"),
            (distinct if distinct is not None else literal(None, String)).label("d"),
            match.label("match"),
            number.label("number"),
        )
        .offset(0)
        .subquery("row_values")
    )
    v = values.c
    used = ((v.k, by is not None), (v.m, period is not None), (v.d, distinct is not None))
    keys = [col if on else literal(None, String) for col, on in used]
    stmt = select(*keys, func.count(), func.sum(v.match), func.sum(v.number), func.count(v.number))
    grouped = [col for col, on in used if on]
    if grouped:
        stmt = stmt.group_by(*grouped)
    return fold_groups(session.execute(stmt).all(), definition, by=by, period=period)


def fold_groups(
    groups: Sequence[Any], definition: IndicatorDefinition, *, by: str | None, period: Period | None
) -> Figures:
    """Fold GROUP BY rows (key, month, distinct value, n, matched, sum, numbers) into figures."""
    overall: dict[str, Any] = {"rows": 0, "matched": 0, "total": 0.0, "numbers": 0, "distinct": set()}
    cells: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for key, month, distinct, n, matched, total, numbers in groups:
        if not n:
            continue
        targets = [overall]
        if by or period:
            cell_key = (key if by else None, period_key(month, period) if period else None)
            targets.append(
                cells.setdefault(cell_key, {"rows": 0, "matched": 0, "total": 0.0, "numbers": 0, "distinct": set()})
            )
        for target in targets:
            target["rows"] += int(n)
            target["matched"] += int(matched or 0)
            target["total"] += float(total or 0.0)
            target["numbers"] += int(numbers or 0)
            if distinct not in (None, ""):
                target["distinct"].add(distinct)
    return Figures(_cell(overall), {k: _cell(v) for k, v in cells.items()})


def _cell(parts: dict[str, Any]) -> Cell:
    return Cell(parts["rows"], parts["matched"], parts["total"], parts["numbers"], frozenset(parts["distinct"]))
