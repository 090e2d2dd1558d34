"""PostgreSQL: an indicator's figures kept as a rollup, brought up to date from a change log on read.

A rollup belongs to one saved version of a definition over one form. ``indicator_facts`` holds what
each counted submission gives it (breakdown keys, month, distinct value, match, number) and
``indicator_rollups`` their sums by keys, month and value: a figure folds a few hundred rollup rows
instead of reading a million records.

Every insert, deletion and figure-relevant update of a submission of a form with rollups is logged in
``indicator_changes`` by a trigger, one row per rollup, in the writer's transaction. A refresh (under a
per-rollup advisory lock) deletes the rows it can see and recomputes those submissions' facts,
subtracting what each gave and adding what it gives now. A writer's rows become visible when it
commits, so a change still uncommitted during a refresh stays for the next one, and none is read
twice; recomputing a submission that changed again meanwhile is harmless (its facts are replaced).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Numeric, String, Text, cast, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from exports.indicators import Figures, IndicatorDefinition, Period
from server.db.base import utcnow
from server.db.models.indicators import IndicatorChange, IndicatorFact, IndicatorRollup, IndicatorRollupState
from server.db.queries.indicators import counted_rows, fold_groups, read_paths, row_measures

# Past this many logged submissions, a refresh rebuilds the rollup in one pass instead (a bulk load).
REBUILD_ABOVE = 50_000
CHUNK = 5_000
FACT_COLUMNS = ("definition_id", "submission_id", "keys", "month", "value", "matched", "number")


def supported(session: Session) -> bool:
    """Rollups are kept on PostgreSQL only (the trigger and transaction ids are its own)."""
    return session.get_bind().dialect.name == "postgresql"


def states(session: Session) -> list[IndicatorRollupState]:
    return list(session.scalars(select(IndicatorRollupState)))


def ready_state(session: Session, definition_id: int, form_pk: int) -> IndicatorRollupState | None:
    """The rollup of this definition version over this form, if it is built (else None)."""
    found = session.get(IndicatorRollupState, definition_id, populate_existing=True)
    if found is None or found.built_at is None or found.form_id != form_pk:
        return None
    return found


def drop(session: Session, definition_id: int) -> None:
    """Forget a rollup (its facts and sums go with it)."""
    session.execute(delete(IndicatorRollupState).where(IndicatorRollupState.definition_id == definition_id))


def claim(session: Session, definition_id: int, form_pk: int) -> bool:
    """Start a rollup (built_at NULL: building); False if one exists. The trigger logs from its commit."""
    inserted = session.execute(
        pg_insert(IndicatorRollupState)
        .values(definition_id=definition_id, form_id=form_pk, built_at=None)
        .on_conflict_do_nothing()
        .returning(IndicatorRollupState.definition_id)
    ).first()
    return inserted is not None


def _advisory_key(*parts: Any) -> Any:
    """A bigint advisory-lock key hashed from text parts (SQL expressions or Python strings)."""
    text_: Any = literal("", String)
    for part in parts:
        text_ = text_ + (part if not isinstance(part, str) else literal(part, String))
    return func.hashtextextended(text_, 0)


def wait_for_writers(session: Session, form_pk: int) -> None:
    """Wait for every writer that may have checked for this form's rollup before it was committed.

    Each writer of a submission holds the form's advisory lock in shared mode until it commits; taking
    it once in exclusive mode (and letting go at once) waits for exactly those, not for other forms.
    """
    # The same key the trigger takes in shared mode (migration 0028).
    key = _advisory_key("fieldsync.indicators:", func.current_schema(), f":{form_pk}")
    session.execute(select(func.pg_advisory_lock(key)))
    session.execute(select(func.pg_advisory_unlock(key)))


def _lock(session: Session, definition_id: int) -> None:
    session.execute(select(func.pg_advisory_xact_lock(_advisory_key(f"fieldsync.indicator_rollup:{definition_id}"))))


def _facts(
    definition_id: int, form_pk: int, definition: IndicatorDefinition, submission_ids: Sequence[int] | None
) -> Any:
    """The facts of the counted submissions (all of the form's, or those of ``submission_ids``)."""
    paths = read_paths(definition, definition.breakdowns)
    rows = counted_rows(form_pk, definition, "postgresql", paths, month=True, submission_ids=submission_ids)
    column = {p: rows.c[f"f{i}"] for i, p in enumerate(paths)}
    match, number, distinct = row_measures(definition, "postgresql", column, Numeric())
    keys: Any = (
        cast(func.json_build_array(*(column[b] for b in definition.breakdowns)), Text)
        if definition.breakdowns
        else literal("[]", Text)
    )
    return select(
        literal(definition_id, BigInteger),
        rows.c.sid,
        keys,
        func.coalesce(rows.c.m, ""),
        func.coalesce(distinct, "") if distinct is not None else literal("", Text),
        match,
        number,
    )


def _add(session: Session, definition_id: int, changed: Any, sign: int) -> None:
    """Add (``sign`` 1) or subtract (-1) the facts a data-changing CTE returned to the rollup's sums."""
    c = changed.c
    grouped = select(
        literal(definition_id, BigInteger),
        c["keys"],
        c["month"],
        c["value"],
        sign * func.count(),
        sign * func.coalesce(func.sum(c["matched"]), 0),
        sign * func.coalesce(func.sum(c["number"]), 0),
        sign * func.count(c["number"]),
    ).group_by(c["keys"], c["month"], c["value"])
    stmt = pg_insert(IndicatorRollup).from_select(
        ["definition_id", "keys", "month", "value", "rows", "matched", "total", "numbers"], grouped
    )
    r = IndicatorRollup
    stmt = stmt.on_conflict_do_update(
        index_elements=[r.definition_id, r.keys, r.month, r.value],
        set_={
            "rows": r.rows + stmt.excluded.rows,
            "matched": r.matched + stmt.excluded.matched,
            "total": r.total + stmt.excluded.total,
            "numbers": r.numbers + stmt.excluded.numbers,
        },
    )
    session.execute(stmt)


def _returned() -> tuple[Any, ...]:
    f = IndicatorFact
    return (f.keys, f.month, f.value, f.matched, f.number)


def _insert_facts(
    session: Session,
    definition_id: int,
    form_pk: int,
    definition: IndicatorDefinition,
    submission_ids: Sequence[int] | None,
) -> None:
    inserted = (
        pg_insert(IndicatorFact)
        .from_select(list(FACT_COLUMNS), _facts(definition_id, form_pk, definition, submission_ids))
        .returning(*_returned())
        .cte("inserted")
    )
    _add(session, definition_id, inserted, 1)


def rebuild(session: Session, definition_id: int, form_pk: int, definition: IndicatorDefinition) -> None:
    """Compute the rollup from every submission of the form (a new rollup, or a refresh after a bulk load)."""
    _lock(session, definition_id)
    # Changes committed from here on are logged again and read by the next refresh.
    session.execute(delete(IndicatorChange).where(IndicatorChange.definition_id == definition_id))
    session.execute(delete(IndicatorFact).where(IndicatorFact.definition_id == definition_id))
    session.execute(delete(IndicatorRollup).where(IndicatorRollup.definition_id == definition_id))
    _insert_facts(session, definition_id, form_pk, definition, None)
    state = IndicatorRollupState
    session.execute(update(state).where(state.definition_id == definition_id).values(built_at=utcnow()))


def refresh(session: Session, definition_id: int, form_pk: int, definition: IndicatorDefinition) -> int | None:
    """Bring a built rollup up to date with the change log; return how many submissions were recomputed,
    or None when there is no built rollup (dropped or replaced meanwhile)."""
    _lock(session, definition_id)
    if ready_state(session, definition_id, form_pk) is None:
        return None
    c = IndicatorChange
    taken = session.scalars(delete(c).where(c.definition_id == definition_id).returning(c.submission_id))
    changed = sorted(set(taken))
    if len(changed) > REBUILD_ABOVE:
        rebuild(session, definition_id, form_pk, definition)
        return len(changed)
    f = IndicatorFact
    for start in range(0, len(changed), CHUNK):
        ids = changed[start : start + CHUNK]
        removed = (
            delete(f).where(f.definition_id == definition_id, f.submission_id.in_(ids)).returning(*_returned())
        ).cte("removed")
        _add(session, definition_id, removed, -1)
        _insert_facts(session, definition_id, form_pk, definition, ids)
    if changed:
        r = IndicatorRollup
        session.execute(delete(r).where(r.definition_id == definition_id, r.rows == 0))
    return len(changed)


def figures(
    session: Session, definition_id: int, definition: IndicatorDefinition, *, by: str | None, period: Period | None
) -> Figures:
    """The figures, folded from the rollup's sums exactly as from the live GROUP BY's rows."""
    r = IndicatorRollup
    index = definition.breakdowns.index(by) if by else None
    decoded: dict[str, list[Any]] = {}
    groups = []
    for keys, month, value, rows, matched, total, numbers in session.execute(
        select(r.keys, r.month, r.value, r.rows, r.matched, r.total, r.numbers).where(r.definition_id == definition_id)
    ):
        key = None
        if index is not None:
            if keys not in decoded:
                decoded[keys] = json.loads(keys)
            key = decoded[keys][index]
        groups.append((key, month or None, value or None, rows, matched, total, numbers))
    return fold_groups(groups, definition, by=by, period=period)
