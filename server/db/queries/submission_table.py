"""Queries of the submissions table: one keyset page of a form's submissions, filtered and sorted, and its count.

A page is ``WHERE <filters> AND (sort key, id) beyond the cursor ORDER BY sort key, id LIMIT n``: the
cost of page 1,000 is the cost of page 1 (never ``OFFSET``). Sorted by received time, the scan walks
``ix_submissions_form_listing`` (project, form, received time, id) forwards or backwards and stops
after ``n`` matches. Field filters and field sorts read the current version's JSON record: an
expression index per field cannot be made ahead of time for every form's fields, so a select_one
filter is, on PostgreSQL, a containment (``record @> {"region": "x"}``) that one GIN index on the
versions' records answers for every field; on SQLite (and for select_multiple answers, whose choices
are words of one string) the filter reads the JSON of the rows the listing index yields
(docs/benchmarks.md, "submission_table", has the figures).

Every function takes the session first and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String, and_, func, literal, or_, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.db.models.forms import Form, FormVersion
from server.db.models.submissions import Submission, SubmissionTableColumns, SubmissionVersion

SortDirection = Literal["asc", "desc"]


@dataclass(frozen=True, slots=True)
class FieldFilter:
    """Keep rows whose field ``path`` holds one of ``values`` (``multiple``: a select_multiple's answer holds one)."""

    path: str
    values: tuple[str, ...]
    multiple: bool = False


@dataclass(frozen=True, slots=True)
class TableFilters:
    """What a table page keeps; every filter given must hold (values within one filter are alternatives)."""

    since: datetime | None = None
    until: datetime | None = None
    review_states: tuple[str, ...] = ()
    submitter_id: int | None = None
    device_token_id: int | None = None
    device_id: str | None = None
    form_versions: tuple[str, ...] = ()
    fields: tuple[FieldFilter, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class TableSort:
    """The order of a table: by received time (``path`` None) or by a field's text value, then by id."""

    path: str | None = None
    direction: SortDirection = "asc"


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of a table page: the submission's columns and its current version's."""

    id: int
    instance_id: str
    current_instance_id: str
    review_state: str
    edits: int
    submitter_id: int | None
    device_token_id: int | None
    attachments_expected: int
    attachments_present: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    deleted_by: str | None
    form_version: str
    instance_name: str | None
    encrypted: bool
    device_id: str | None
    record: dict[str, Any] = field(repr=False)
    sort_value: Any = None


_COLUMNS = (
    Submission.id,
    Submission.instance_id,
    Submission.current_instance_id,
    Submission.review_state,
    Submission.edits,
    Submission.submitter_id,
    Submission.device_token_id,
    Submission.attachments_expected,
    Submission.attachments_present,
    Submission.created_at,
    Submission.updated_at,
    Submission.deleted_at,
    Submission.deleted_by,
    SubmissionVersion.form_version,
    SubmissionVersion.instance_name,
    SubmissionVersion.encrypted,
    SubmissionVersion.device_id,
    SubmissionVersion.record,
)


def field_text(path: str) -> Any:
    """The text of field ``path`` (``a/b/c``) of the current version's record, ``''`` when absent.

    ``''`` rather than NULL: a keyset comparison with NULL is never true, so absent answers would
    drop out of a page walk. Answers are stored as text, so no cast is needed.
    """
    value = SubmissionVersion.record[tuple(path.split("/"))].as_string()
    return func.coalesce(value, literal("", String))


def _nested(path: str, value: str) -> dict[str, Any]:
    node: Any = value
    for part in reversed(path.split("/")):
        node = {part: node}
    result: dict[str, Any] = node
    return result


def _field_condition(item: FieldFilter, dialect: str) -> Any:
    text = field_text(item.path)
    if not item.multiple and dialect == "postgresql":
        # Containment is what the GIN index ix_submission_versions_record answers, for any field.
        record = type_coerce(SubmissionVersion.record, postgresql.JSONB)
        return or_(*(record.contains(_nested(item.path, value)) for value in item.values))
    if not item.multiple:
        return text.in_(item.values)
    spaced = literal(" ", String) + text + literal(" ", String)
    # autoescape: choice names often hold "_", a LIKE wildcard.
    return or_(*(spaced.contains(f" {value} ", autoescape=True) for value in item.values))


def _filtered(project_id: int, form_pk: int, filters: TableFilters, dialect: str) -> Any:
    stmt = (
        select(*_COLUMNS)
        .join(
            SubmissionVersion,
            and_(
                SubmissionVersion.project_id == Submission.project_id,
                SubmissionVersion.form_id == Submission.form_id,
                SubmissionVersion.instance_id == Submission.current_instance_id,
            ),
        )
        .where(
            Submission.project_id == project_id,
            Submission.form_id == form_pk,
            Submission.deleted_at.is_not(None) if filters.deleted else Submission.deleted_at.is_(None),
        )
    )
    if filters.since is not None:
        stmt = stmt.where(Submission.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Submission.created_at < filters.until)
    if filters.review_states:
        stmt = stmt.where(Submission.review_state.in_(filters.review_states))
    if filters.submitter_id is not None:
        stmt = stmt.where(Submission.submitter_id == filters.submitter_id)
    if filters.device_token_id is not None:
        stmt = stmt.where(Submission.device_token_id == filters.device_token_id)
    if filters.device_id is not None:
        stmt = stmt.where(SubmissionVersion.device_id == filters.device_id)
    if filters.form_versions:
        stmt = stmt.where(SubmissionVersion.form_version.in_(filters.form_versions))
    for item in filters.fields:
        stmt = stmt.where(_field_condition(item, dialect))
    return stmt


def _sort_key(sort: TableSort) -> Any:
    return Submission.created_at if sort.path is None else field_text(sort.path)


def page_statement(
    project_id: int,
    form_pk: int,
    filters: TableFilters,
    sort: TableSort,
    after: tuple[Any, int] | None,
    limit: int,
    dialect: str,
) -> Any:
    """Build the SELECT of one page for a dialect (public for the benchmark, which times the same SQL raw)."""
    key = _sort_key(sort)
    stmt = _filtered(project_id, form_pk, filters, dialect).add_columns(key.label("sort_value"))
    if sort.direction == "asc":
        stmt = stmt.order_by(key.asc(), Submission.id.asc())
    else:
        stmt = stmt.order_by(key.desc(), Submission.id.desc())
    if after is not None:
        value, last_id = after
        # Spelled as OR rather than a row comparison: SQLite and PostgreSQL plan both forms alike here,
        # and the leading ``key >= value`` bound lets the listing index start at the cursor.
        if sort.direction == "asc":
            stmt = stmt.where(key >= value, or_(key > value, Submission.id > last_id))
        else:
            stmt = stmt.where(key <= value, or_(key < value, Submission.id < last_id))
    return stmt.limit(limit)


def table_page(
    session: Session,
    project_id: int,
    form_pk: int,
    filters: TableFilters,
    sort: TableSort,
    *,
    after: tuple[Any, int] | None = None,
    limit: int = 100,
) -> list[TableRow]:
    """Return up to ``limit`` rows after the cursor ``(sort value, id)``, in the table's order."""
    dialect = session.get_bind().dialect.name
    rows = session.execute(page_statement(project_id, form_pk, filters, sort, after, limit, dialect)).all()
    return [TableRow(*row) for row in rows]


def count_rows(session: Session, project_id: int, form_pk: int, filters: TableFilters, cap: int | None) -> int:
    """Count the matching rows, stopping at ``cap + 1`` (a result above ``cap`` is "more than cap"; None: all)."""
    dialect = session.get_bind().dialect.name
    matching = _filtered(project_id, form_pk, filters, dialect).with_only_columns(Submission.id)
    capped = (matching.limit(cap + 1) if cap is not None else matching).subquery()
    return int(session.scalar(select(func.count()).select_from(capped)) or 0)


def get_columns(session: Session, user_id: int, form_pk: int) -> SubmissionTableColumns | None:
    """Return a user's saved columns for a form."""
    return session.scalars(
        select(SubmissionTableColumns).where(
            SubmissionTableColumns.user_id == user_id, SubmissionTableColumns.form_id == form_pk
        )
    ).first()


def save_columns(
    session: Session, user_id: int, form_pk: int, paths: Sequence[str], language: str | None, display: str, at: datetime
) -> None:
    """Write a user's columns for a form in one ``INSERT ... ON CONFLICT DO UPDATE`` (two tabs saving race-free)."""
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    values = {"paths": list(paths), "language": language, "display": display, "updated_at": at}
    stmt = module.insert(SubmissionTableColumns).values(user_id=user_id, form_id=form_pk, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["user_id", "form_id"], set_=values))


def form_for_table(session: Session, project_id: int, xml_form_id: str) -> tuple[int, int | None, str | None] | None:
    """Return a form's pk and its published version's pk and XForm sha256 (the key of the schema cache)."""
    row = session.execute(
        select(Form.id, FormVersion.id, FormVersion.xform_sha256)
        .outerjoin(FormVersion, FormVersion.id == Form.current_version_id)
        .where(Form.project_id == project_id, Form.xml_form_id == xml_form_id)
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None
