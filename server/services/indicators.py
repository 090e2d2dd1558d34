"""Use cases of the dashboard: a project's indicator definitions (versioned) and their live figures.

A definition is checked against its source before it is saved (the form or entity list exists, every
field it reads exists in some version of the form, none is inside a repeat), so a figure never fails
for a reason the manager could have been told when saving. Saving the same definition again is a
no-op; any change is a new version and the old ones stay readable.

Figures are live: an edit, a deletion or a review change shows in the next read. On SQLite, and on
PostgreSQL until a definition's rollup is built, a read computes them from the store as it is (one
GROUP BY, ``server.db.queries.indicators``). On PostgreSQL ``keep_rollups`` (the scheduler's job) builds
a rollup per form indicator in force, and each read first brings its rollup up to date from the change
log a trigger writes (``server.db.queries.indicator_rollups``), then folds its sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from exports.indicators import (
    PERIODS,
    FieldNote,
    Figures,
    IndicatorDefinition,
    IndicatorError,
    IndicatorRow,
    Period,
    check_against_form,
    compute,
    parse_definition,
)
from forms.schema import FormSchema
from server.db.base import utcnow
from server.db.models.indicators import IndicatorDefinitionRow
from server.db.queries import audit
from server.db.queries import entities as entity_q
from server.db.queries import exports as export_q
from server.db.queries import indicator_rollups as rollups
from server.db.queries import indicators as q
from server.db.transaction import transaction
from server.errors import ApiError, bad_request, conflict, not_found
from server.services import submission_table as table_svc

# Stored (exports.indicators) names and spellings -> the JSON API's (camelCase, Central's review states).
WIRE_KEYS = {"review_states": "reviewStates", "date_field": "dateField"}
WIRE_SOURCES = {"form": "form", "entity_list": "entityList"}
WIRE_STATES: dict[str, str | None] = {"received": None, "has_issues": "hasIssues", "approved": "approved"}
STORED_KEYS = {wire: stored for stored, wire in WIRE_KEYS.items()}
STORED_SOURCES = {wire: stored for stored, wire in WIRE_SOURCES.items()}
STORED_STATES = {wire: stored for stored, wire in WIRE_STATES.items()}


def definition_to_wire(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored definition as the API shows it: camelCase keys, source ``entityList``, Central's review states."""
    wire: dict[str, Any] = {}
    for key, value in stored.items():
        if key == "source" and isinstance(value, Mapping):
            value = {WIRE_SOURCES.get(kind, kind): name for kind, name in value.items()}
        elif key == "review_states" and isinstance(value, list):
            value = [WIRE_STATES.get(state, state) for state in value]
        wire[WIRE_KEYS.get(key, key)] = value
    return wire


def definition_from_wire(wire: Mapping[str, Any]) -> dict[str, Any]:
    """A definition sent to the API in the stored format :func:`exports.indicators.parse_definition` reads.

    Keys may be the wire's (``reviewStates``) or the attribute names the body was loaded into.
    """
    stored: dict[str, Any] = {}
    for key, value in wire.items():
        name = STORED_KEYS.get(key, key)
        if name == "source" and isinstance(value, Mapping):
            value = {STORED_SOURCES.get(kind, kind): source for kind, source in value.items()}
        elif name == "review_states" and isinstance(value, list):
            value = [STORED_STATES.get(state, state) for state in value]
        elif name in ("date_field", "target") and value is None:
            continue  # absent, as the stored format writes it
        stored[name] = value
    return stored


def wire_field(path: str) -> str:
    """The wire name of a definition part the core named (``review_states`` -> ``reviewStates``)."""
    for stored, wire in WIRE_KEYS.items():
        if path == stored or path.startswith((stored + ".", stored + "[")):
            return wire + path[len(stored) :]
    return path


@dataclass(frozen=True)
class SavedIndicator:
    """An indicator as stored: its definition in force, version and who saved it when."""

    name: str
    version: int
    definition: IndicatorDefinition
    created_by: str
    created_at: datetime
    notes: tuple[FieldNote, ...] = ()
    row_id: int | None = None  # the stored version's row (a rollup belongs to it)


@dataclass(frozen=True)
class FigureCell:
    """One figure of a breakdown or a series: its keys, label and the parts it is made of."""

    key: str | None
    label: str | None
    period: str | None
    value: float | None
    rows: int
    matched: int


@dataclass(frozen=True)
class IndicatorFigures:
    """What the dashboard shows for one indicator, and what the API answers."""

    indicator: SavedIndicator
    value: float | None
    rows: int
    matched: int
    progress: float | None  # value / target
    by: str | None
    period: str | None
    cells: tuple[FigureCell, ...]
    field_labels: Mapping[str, str] = field(default_factory=dict)  # the breakdowns' labels, for pages


def _indicator_error(exc: IndicatorError) -> ApiError:
    return bad_request(exc.code, exc.message, field=exc.field)


def _form_schemas(session: Session, project_id: int, xml_form_id: str) -> tuple[int, list[FormSchema]]:
    form = export_q.get_form(session, project_id, xml_form_id)
    if form is None:
        raise bad_request("unknown_form", f"The project has no form {xml_form_id!r}", field="source")
    return form.id, export_q.form_schemas(session, form)


def _check_source(session: Session, project_id: int, definition: IndicatorDefinition) -> tuple[FieldNote, ...]:
    """Raise a 400 naming the problem when the source or a field is unknown; return the version notes."""
    if definition.source == "entity_list":
        if entity_q.get_list(session, project_id, definition.source_name) is None:
            raise bad_request(
                "unknown_entity_list", f"The project has no entity list {definition.source_name!r}", field="source"
            )
        return ()
    _, schemas = _form_schemas(session, project_id, definition.source_name)
    try:
        return check_against_form(definition, schemas)
    except IndicatorError as exc:
        raise _indicator_error(exc) from None


def _saved(row: IndicatorDefinitionRow, notes: tuple[FieldNote, ...] = ()) -> SavedIndicator:
    assert row.definition is not None
    return SavedIndicator(
        row.name, row.version, parse_definition(row.name, row.definition), row.created_by, row.created_at, notes, row.id
    )


def list_indicators(session: Session, project_id: int) -> list[SavedIndicator]:
    """The indicators in force in a project, by name (removed ones left out)."""
    return [_saved(row) for row in q.latest_definitions(session, project_id) if row.definition is not None]


def get_indicator(session: Session, project_id: int, name: str) -> SavedIndicator:
    """The version in force of one indicator, with notes on form versions that lack a field; 404 if none."""
    history = q.definition_history(session, project_id, name)
    if not history or history[0].definition is None:
        raise not_found("Indicator", project_id=project_id, name=name)
    saved = _saved(history[0])
    try:
        notes = _check_source(session, project_id, saved.definition)
    except ApiError:
        notes = ()  # the form was removed since: the figures say so (an empty source)
    return _saved(history[0], notes)


def indicator_history(session: Session, project_id: int, name: str) -> list[IndicatorDefinitionRow]:
    """Every saved version of one indicator, newest first; 404 when it never existed."""
    history = q.definition_history(session, project_id, name)
    if not history:
        raise not_found("Indicator", project_id=project_id, name=name)
    return history


def save_indicator(
    session: Session, project_id: int, name: str, raw: Mapping[str, Any], actor: str
) -> tuple[SavedIndicator, bool]:
    """Save a definition as the next version of ``name``; return it and whether a version was added."""
    try:
        definition = parse_definition(name, raw)
    except IndicatorError as exc:
        raise _indicator_error(exc) from None
    with transaction(session):
        notes = _check_source(session, project_id, definition)
        history = q.definition_history(session, project_id, name)
        stored = definition.to_json()
        if history and history[0].definition == stored:
            return _saved(history[0], notes), False
        row = IndicatorDefinitionRow(
            project_id=project_id,
            name=name,
            version=(history[0].version + 1) if history else 1,
            definition=stored,
            created_by=actor,
            created_at=utcnow(),
        )
        session.add(row)
        audit.record(session, actor, "indicator.save", project_id, name, {"version": row.version})
        try:
            session.flush()
        except IntegrityError:
            # Another manager saved a version of this indicator at the same moment.
            raise conflict("indicator_changed", "The indicator was just saved by someone else; reload it") from None
    return _saved(row, notes), True


def remove_indicator(session: Session, project_id: int, name: str, actor: str) -> None:
    """Remove an indicator from the dashboard (its versions stay in the history); 404 if not in force."""
    with transaction(session):
        history = q.definition_history(session, project_id, name)
        if not history or history[0].definition is None:
            raise not_found("Indicator", project_id=project_id, name=name)
        session.add(
            IndicatorDefinitionRow(
                project_id=project_id,
                name=name,
                version=history[0].version + 1,
                definition=None,
                created_by=actor,
                created_at=utcnow(),
            )
        )
        audit.record(session, actor, "indicator.remove", project_id, name, {"version": history[0].version + 1})
        try:
            session.flush()
        except IntegrityError:
            raise conflict("indicator_changed", "The indicator was just saved by someone else; reload it") from None


def _entity_figures(
    session: Session, project_id: int, definition: IndicatorDefinition, by: str | None, period: Period | None
) -> Figures:
    """Entity lists are small (hundreds of cooperatives): computed by the reference code over their rows."""
    entity_list = entity_q.get_list(session, project_id, definition.source_name)
    if entity_list is None:
        return compute(definition, [])
    rows: list[IndicatorRow] = []
    after = ""
    while True:
        page = entity_q.entities_of_list(session, entity_list.id, limit=1000, after=after, deleted=False)
        rows.extend(IndicatorRow(dict(e.properties), e.updated_at) for e in page)
        if len(page) < 1000:
            break
        after = page[-1].entity_id
    return compute(definition, rows, by=by, period=period)


def _form_figures(
    session: Session, form_pk: int, saved: SavedIndicator, by: str | None, period: Period | None
) -> Figures:
    """From the rollup when one is built (PostgreSQL), brought up to date first; else the live GROUP BY."""
    row_id = saved.row_id
    if row_id is not None and rollups.supported(session) and rollups.ready_state(session, row_id, form_pk):
        with transaction(session):
            recomputed = rollups.refresh(session, row_id, form_pk, saved.definition)
        if recomputed is not None:  # else dropped or replaced meanwhile: computed from the submissions
            return rollups.figures(session, row_id, saved.definition, by=by, period=period)
    return q.form_figures(session, form_pk, saved.definition, by=by, period=period)


def _labels(schemas: list[FormSchema], path: str | None, language: str) -> dict[str, str]:
    """Choice labels of ``path`` in ``language`` (the newest version's label wins)."""
    labels: dict[str, str] = {}
    if not path:
        return labels
    for schema in schemas:
        field = schema.field_by_path(path)
        if field is None or field.choice_list is None or field.choice_list not in schema.choice_lists:
            continue
        for choice in schema.choice_lists[field.choice_list].choices:
            text = choice.labels.get(language) or choice.labels.get("") or next(iter(choice.labels.values()), "")
            if text:
                labels[choice.name] = text
    return labels


def _field_labels(schemas: list[FormSchema], paths: tuple[str, ...], language: str) -> dict[str, str]:
    """The label in ``language`` of each field in ``paths`` (the newest version that has it wins)."""
    labels: dict[str, str] = {}
    for schema in schemas:
        for path in paths:
            found = schema.field_by_path(path)
            if found is None:
                continue
            text = found.labels.get(language) or found.labels.get("") or next(iter(found.labels.values()), "")
            if text:
                labels[path] = text
    return labels


def indicator_figures(
    session: Session,
    project_id: int,
    name: str,
    *,
    by: str | None = None,
    period: str | None = None,
    language: str = "fr",
) -> IndicatorFigures:
    """The live figures of one indicator, overall and broken down by ``by`` and/or ``period``."""
    saved = get_indicator(session, project_id, name)
    definition = saved.definition
    if by is not None and by not in definition.breakdowns:
        allowed = ", ".join(definition.breakdowns) or "none"
        raise bad_request("bad_breakdown", f"'by' is one of the indicator's breakdowns: {allowed}", field="by")
    if period is not None and period not in PERIODS:
        raise bad_request("bad_period", f"'period' is one of: {', '.join(PERIODS)}", field="period")
    chosen = cast(Period | None, period)
    schemas: list[FormSchema] = []
    if definition.source == "form":
        form = export_q.get_form(session, project_id, definition.source_name)
        if form is None:
            figures = compute(definition, [])
        else:
            schemas = export_q.form_schemas(session, form)
            figures = _form_figures(session, form.id, saved, by, chosen)
    else:
        figures = _entity_figures(session, project_id, definition, by, chosen)
    labels = _labels(schemas, by, language)
    cells = tuple(
        FigureCell(
            key,
            labels.get(key) if key is not None else None,
            when,
            cell.value(definition.measure),
            cell.rows,
            cell.matched,
        )
        for (key, when), cell in sorted(figures.cells.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
    )
    value = figures.overall.value(definition.measure)
    progress = value / definition.target if value is not None and definition.target else None
    return IndicatorFigures(
        saved,
        value,
        figures.overall.rows,
        figures.overall.matched,
        progress,
        by,
        period,
        cells,
        _field_labels(schemas, definition.breakdowns, language),
    )


def dashboard_figures(session: Session, project_id: int, *, period: str, language: str) -> list[IndicatorFigures]:
    """Every indicator in force with its figures over time (the dashboard's cards)."""
    return [
        indicator_figures(session, project_id, saved.name, period=period, language=language)
        for saved in list_indicators(session, project_id)
    ]


def drill_down(session: Session, project_id: int, definition: IndicatorDefinition, by: str) -> dict[str, str] | None:
    """The submissions-table query that lists the rows behind one cell of ``by`` (its value added by the
    caller as ``filter.<by>``): the indicator's review states and its filters, when the table can say them.

    ``None`` when it cannot: an entity list's figure, a breakdown or filter on a question the table does
    not filter by (not a top-level select), or a filter other than "equals one value".
    """
    if definition.source != "form":
        return None
    with transaction(session):
        form = export_q.get_form(session, project_id, definition.source_name)
        schemas = export_q.form_schemas(session, form) if form is not None else []
    if not schemas:
        return None
    schema = schemas[-1]

    def filterable(path: str) -> bool:
        found = schema.field_by_path(path)
        return (
            found is not None
            and found.kind == "question"
            and found.repeat is None
            and found.control in table_svc.SELECT_CONTROLS
        )

    query = {"review_state": ",".join(definition.review_states)}
    for condition in definition.filters:
        if condition.op != "eq" or not isinstance(condition.value, str) or not filterable(condition.field):
            return None
        query[f"filter.{condition.field}"] = condition.value
    return query if filterable(by) else None


@dataclass(frozen=True)
class RollupRound:
    """What one round of ``keep_rollups`` did: rollups built, refreshed (submissions recomputed), dropped."""

    built: int = 0
    refreshed: int = 0
    recomputed: int = 0
    dropped: int = 0


def keep_rollups(sessions: sessionmaker[Session]) -> RollupRound:
    """Build the rollup of every form indicator in force, refresh the built ones, drop the others.

    PostgreSQL only (nothing to do on SQLite, where every read computes its figures). Run by the
    scheduler and ``fieldsync indicators-refresh``; a read refreshes its rollup itself, so this only
    keeps that work small, and builds new ones outside any request. Any number may run at once: a
    rollup is claimed by one, and refreshes of one rollup wait for each other.
    """
    built = refreshed = recomputed = dropped = 0
    with sessions() as session:
        if not rollups.supported(session):
            return RollupRound()
        wanted: dict[int, tuple[int, IndicatorDefinition]] = {}
        for row in q.latest_definitions(session, None):
            if row.definition is None:
                continue
            definition = parse_definition(row.name, row.definition)
            if definition.source != "form":
                continue
            form = export_q.get_form(session, row.project_id, definition.source_name)
            if form is not None:
                wanted[row.id] = (form.id, definition)
        existing = {state.definition_id: state.form_id for state in rollups.states(session)}
        session.rollback()
        for definition_id, form_pk in existing.items():
            if wanted.get(definition_id, (None,))[0] != form_pk:
                with transaction(session):
                    rollups.drop(session, definition_id)
                dropped += 1
        for definition_id, (form_pk, definition) in wanted.items():
            if existing.get(definition_id) == form_pk and rollups.ready_state(session, definition_id, form_pk):
                with transaction(session):
                    recomputed += rollups.refresh(session, definition_id, form_pk, definition) or 0
                refreshed += 1
                continue
            if existing.get(definition_id) != form_pk:
                with transaction(session):
                    if not rollups.claim(session, definition_id, form_pk):
                        continue  # another process claimed it
            # Also before finishing a build left half done (its builder crashed, maybe before its wait):
            # writers that checked for the rollup before its state row was committed may still be in flight.
            rollups.wait_for_writers(session, form_pk)
            with transaction(session):
                rollups.rebuild(session, definition_id, form_pk, definition)
            built += 1
    return RollupRound(built, refreshed, recomputed, dropped)
