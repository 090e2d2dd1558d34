"""Queries of the dashboard area: indicator definitions (every version) and figures in one GROUP BY.

A form's figures are read in one statement over the current version of each live submission: the
submission's row gives the review state and the arrival date, the version's JSON record the values.
Conditions compile to SQL with the meaning ``exports.indicators`` gives them (a missing value equals
nothing; a number is what ``NUMBER`` matches), and the statement groups by the breakdown field, the
month and (for a distinct count) the counted value, so the few group rows fold into every figure the
page shows: overall, by region, by month or quarter, and both, from one scan.

On PostgreSQL the values a definition reads from a version's record are kept in ``indicator_facts``
(``fact_figures``, ``fill_facts``): a version's record never changes, so its facts never go stale, and
the figures join the live submissions' current versions to their facts by instance id, reading no
record; versions without facts yet get them first. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, String, and_, case, cast, func, literal, null, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
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
from server.db.models.indicators import IndicatorDefinitionRow, IndicatorFact
from server.db.models.submissions import Submission, SubmissionVersion


def latest_definitions(session: Session, project_id: int) -> list[IndicatorDefinitionRow]:
    """The version in force of each indicator of a project (removed ones included, definition NULL)."""
    newest = (
        select(IndicatorDefinitionRow.name, func.max(IndicatorDefinitionRow.version).label("version"))
        .where(IndicatorDefinitionRow.project_id == project_id)
        .group_by(IndicatorDefinitionRow.name)
        .subquery()
    )
    return list(
        session.scalars(
            select(IndicatorDefinitionRow)
            .join(
                newest,
                and_(IndicatorDefinitionRow.name == newest.c.name, IndicatorDefinitionRow.version == newest.c.version),
            )
            .where(IndicatorDefinitionRow.project_id == project_id)
            .order_by(IndicatorDefinitionRow.name)
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


def _number(expr: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return case((expr.op("~")(SQL_NUMBER_PATTERN), cast(expr, Float)), else_=None)
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
    s, sv = Submission, SubmissionVersion
    paths = [p for p in dict.fromkeys((by, definition.measure_field, *(c.field for c in definition.where))) if p]
    read = [_value(p).label(f"f{i}") for i, p in enumerate(paths)]
    month_expr = _month(definition, dialect) if period else literal(None, String)
    rows = (
        select(*read, month_expr.label("m"))
        .select_from(s)
        .join(sv, and_(sv.project_id == s.project_id, sv.form_id == s.form_id, sv.instance_id == s.current_instance_id))
        .where(
            s.form_id == form_pk,
            s.deleted_at.is_(None),
            s.review_state.in_(list(definition.review_states)),
            sv.encrypted.is_(False),
            *(condition_sql(c, dialect) for c in definition.filters),
        )
        .offset(0)
        .subquery("rows")
    )
    column = {p: rows.c[f"f{i}"] for i, p in enumerate(paths)}
    match: ColumnElement[Any] = literal(0)
    if definition.measure == "share":
        match = case((and_(*(condition_sql(c, dialect, column[c.field]) for c in definition.where)), 1), else_=0)
    number: ColumnElement[Any] = cast(null(), Float)
    if definition.measure in ("sum", "mean") and definition.measure_field:
        number = _number(column[definition.measure_field], dialect)
    distinct = (
        column[definition.measure_field] if definition.measure == "distinct" and definition.measure_field else None
    )
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


def fill_facts(
    session: Session, form_pk: int, definition_id: int, definition: IndicatorDefinition, by: str | None
) -> int:
    """Write the facts of the counted current versions of a form that have none yet (PostgreSQL); their number.

    Each field is read once per version (``OFFSET 0`` keeps the reads from being folded into the
    expressions that use them). Rows go in the key's order with ``ON CONFLICT DO NOTHING``, so two readers
    filling the same facts at once neither fail nor deadlock.
    """
    dialect = session.get_bind().dialect.name
    s, sv, f = Submission, SubmissionVersion, IndicatorFact
    breakdown = by or ""
    paths = [
        p
        for p in dict.fromkeys(
            (
                by,
                definition.measure_field,
                definition.date_field,
                *(c.field for c in (*definition.where, *definition.filters)),
            )
        )
        if p
    ]
    read = [_value(p).label(f"f{i}") for i, p in enumerate(paths)]
    rows = (
        select(sv.id.label("version_id"), sv.instance_id.label("instance_id"), sv.encrypted.label("encrypted"), *read)
        .select_from(s)
        .join(sv, and_(sv.project_id == s.project_id, sv.form_id == s.form_id, sv.instance_id == s.current_instance_id))
        .outerjoin(
            f,
            and_(
                f.definition_id == definition_id,
                f.breakdown == breakdown,
                f.form_id == s.form_id,
                f.instance_id == s.current_instance_id,
            ),
        )
        .where(
            s.form_id == form_pk,
            s.deleted_at.is_(None),
            s.review_state.in_(list(definition.review_states)),
            f.instance_id.is_(None),
        )
        .offset(0)
        .subquery("rows")
    )
    column = {p: rows.c[f"f{i}"] for i, p in enumerate(paths)}
    passes = and_(
        rows.c.encrypted.is_(False), *(condition_sql(c, dialect, column[c.field]) for c in definition.filters)
    )
    match: ColumnElement[Any] = literal(0)
    if definition.measure == "share":
        match = case((and_(*(condition_sql(c, dialect, column[c.field]) for c in definition.where)), 1), else_=0)
    number: ColumnElement[Any] = cast(null(), Float)
    if definition.measure in ("sum", "mean") and definition.measure_field:
        number = _number(column[definition.measure_field], dialect)
    distinct: ColumnElement[Any] = literal(None, String)
    if definition.measure == "distinct" and definition.measure_field:
        distinct = column[definition.measure_field]
    month: ColumnElement[Any] = literal(None, String)
    if definition.date_field:
        month = func.substr(column[definition.date_field], 1, 7)
    values = select(
        literal(definition_id),
        literal(breakdown, String),
        literal(form_pk),
        rows.c.instance_id,
        rows.c.version_id,
        passes,
        column[by] if by else literal(None, String),
        month,
        distinct,
        match,
        number,
    ).order_by(rows.c.instance_id)
    names = ["definition_id", "breakdown", "form_id", "instance_id", "version_id", "passes", "k", "m", "d", "match"]
    stmt = pg_insert(f).from_select([*names, "number"], values).on_conflict_do_nothing()
    return session.execute(stmt).rowcount or 0


def fact_figures(
    session: Session,
    form_pk: int,
    definition_id: int,
    definition: IndicatorDefinition,
    *,
    by: str | None = None,
    period: Period | None = None,
) -> Figures | None:
    """The figures of ``definition`` from the facts of the live submissions' current versions (PostgreSQL).

    None when a counted version has no facts yet (``fill_facts`` writes them): the join is an outer one,
    so a missing fact is seen in the same statement rather than left out of a figure.
    """
    s, f = Submission, IndicatorFact
    month: ColumnElement[Any] = literal(None, String)
    if period:
        month = f.m if definition.date_field else func.to_char(func.timezone("UTC", s.created_at), "YYYY-MM")
    used = ((f.k, by is not None), (month, period is not None), (f.d, definition.measure == "distinct"))
    keys = [col if on else literal(None, String) for col, on in used]
    stmt = (
        select(
            *keys,
            func.count(),
            func.sum(f.match),
            func.sum(f.number),
            func.count(f.number),
            func.count() - func.count(f.instance_id),
        )
        .select_from(s)
        .outerjoin(
            f,
            and_(
                f.definition_id == definition_id,
                f.breakdown == (by or ""),
                f.form_id == s.form_id,
                f.instance_id == s.current_instance_id,
            ),
        )
        .where(
            s.form_id == form_pk,
            s.deleted_at.is_(None),
            s.review_state.in_(list(definition.review_states)),
            or_(f.passes.is_(True), f.instance_id.is_(None)),
        )
    )
    grouped = [col for col, on in used if on]
    if grouped:
        stmt = stmt.group_by(*grouped)
    groups = session.execute(stmt).all()
    if any(row[-1] for row in groups):
        return None
    return fold_groups([row[:-1] for row in groups], definition, by=by, period=period)


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
