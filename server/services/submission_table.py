"""The submissions table of a form: filtered, sorted keyset pages with chosen columns, and each user's saved columns.

Doors (the JSON API, the console) parse their parameters into a ``TableQuery`` and call
``submissions_table``; the columns a user chose are kept by ``set_table_columns``. Field paths are
checked against the form's published schema: filters take select_one/select_multiple fields, sorts and
columns take any question outside a repeat. Cells show the stored value or, with ``display="labels"``,
the choice label in the chosen language (the form's default language, else the stored value, when the
label is missing).

The cursor is opaque: base64 of ``{"sort": [path, direction], "key": sort value, "id": last id}``.
A cursor carries its sort so a cursor of another order is refused instead of skipping rows; the
plain ``[received time, id]`` cursors of earlier releases still read as received-time ascending.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from forms.schema import Field, FormSchema
from server.auth import Principal
from server.db.base import utcnow
from server.db.queries import submission_table as q
from server.db.queries.submission_table import FieldFilter, TableFilters, TableRow, TableSort
from server.db.transaction import transaction
from server.errors import ApiError, not_found
from server.services.submissions import cached_schema

Display = Literal["labels", "values"]
DISPLAYS: tuple[Display, ...] = ("labels", "values")
SORT_KEYS = ("submitted_at", "field")
DIRECTIONS = ("asc", "desc")
SELECT_CONTROLS = ("select_one", "select_multiple")
# Counting stops here: an exact count of 10,000 rows costs a few ms, of 100,000 a scan of the form.
COUNT_CAP = 10_000
# A whole list (no ``limit``: ODK Central's unpaged answer) is read in keyset batches of this many rows, each
# in its own short transaction, so the answer streams with the memory of one batch however long the list.
STREAM_BATCH = 1000
MAX_COLUMNS = 100

MESSAGES = {
    "invalid_cursor": "The cursor is not one this server issued",
    "cursor_sort": "The cursor belongs to another sort order: start again without a cursor",
    "unknown_path": "The form has no question {path!r} outside a repeat",
    "not_select": "Only select_one and select_multiple questions can be filtered on; {path!r} is a {control}",
    "no_sort_field": "sort=field needs sort_field, the path of the question to sort by",
    "unknown_language": "The form has no language {language!r}; it has: {languages}",
    "not_a_user": "Only a signed-in user has saved columns",
}


@dataclass(frozen=True, slots=True)
class TableQuery:
    """What a caller asks of the table (every filter optional; paths are the form's question paths)."""

    cursor: str | None = None
    limit: int = 100
    since: datetime | None = None
    until: datetime | None = None
    review_states: tuple[str, ...] = ()
    submitter_id: int | None = None
    device_token_id: int | None = None
    device_id: str | None = None
    form_versions: tuple[str, ...] = ()
    field_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sort: str = "submitted_at"
    sort_field: str | None = None
    order: str = "asc"
    columns: tuple[str, ...] | None = None  # None: the caller's saved columns (none saved: no columns)
    language: str | None = None
    display: Display | None = None
    count: bool = False
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Column:
    """A column of the table: the question's path and its label in the chosen language."""

    path: str
    label: str


@dataclass(frozen=True, slots=True)
class TablePage:
    """One page: rows with their cells (one per column), the next cursor, and the count when asked."""

    rows: list[TableRow]
    cells: list[list[str | None]]
    columns: list[Column]
    language: str | None
    display: Display
    next_cursor: str | None
    count: int | None = None
    count_capped: bool = False  # True: more than ``count`` rows match (the count stopped at COUNT_CAP)


@dataclass(frozen=True, slots=True)
class TableStream:
    """Every matching row, batch by batch: ``count`` is exact, taken with the first batch."""

    count: int
    pages: Iterator[TablePage]


@dataclass(frozen=True, slots=True)
class ColumnChoice:
    """A user's columns for a form (empty ``paths`` when nothing is saved)."""

    paths: list[str]
    language: str | None
    display: Display
    saved: bool


def _bad(code: str, key: str, **details: Any) -> ApiError:
    return ApiError(400, code, MESSAGES[key].format(**details), details)


# ---------------------------------------------------------------------------------------------------
# Cursor


def encode_cursor(sort: TableSort, row: TableRow) -> str:
    """Return the cursor of the page after ``row`` in ``sort`` order."""
    key = row.sort_value
    if isinstance(key, datetime):
        key = _aware(key).isoformat()
    raw = json.dumps({"sort": [sort.path, sort.direction], "key": key, "id": row.id}, ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def decode_cursor(text: str, sort: TableSort) -> tuple[Any, int]:
    """Return ``(sort value, id)`` of a cursor issued for ``sort`` (``400`` otherwise)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if isinstance(data, list):  # an earlier release's cursor: received time ascending
            data = {"sort": [None, "asc"], "key": data[0], "id": data[1]}
        path, direction = data["sort"]
        key, last_id = data["key"], data["id"]
        if not isinstance(last_id, int) or not isinstance(key, str):
            raise TypeError
        if (path, direction) != (sort.path, sort.direction):
            raise _bad("invalid_cursor", "cursor_sort")
        return (_aware(datetime.fromisoformat(key)) if path is None else key), last_id
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise _bad("invalid_cursor", "invalid_cursor") from None


# ---------------------------------------------------------------------------------------------------
# Fields of the schema


def _question(schema: FormSchema | None, path: str) -> Field:
    found = schema.field_by_path(path) if schema is not None else None
    if found is None or found.kind != "question" or found.repeat is not None:
        raise _bad("invalid_field", "unknown_path", path=path)
    return found


def form_language(schema: FormSchema | None, language: str | None) -> str | None:
    """``language`` if the form has it (else ``400``); the form's default language when ``None``."""
    languages = schema.languages if schema is not None else ()
    if language is None:
        return schema.default_language if schema is not None else None
    if language not in languages:
        raise _bad("invalid_language", "unknown_language", language=language, languages=", ".join(languages) or "none")
    return language


def label_in(labels: Mapping[str, str], language: str | None, schema: FormSchema | None, fallback: str) -> str:
    """A label in ``language``, else the form's default language, else any label, else ``fallback``."""
    for key in (language, schema.default_language if schema else None, ""):
        if key is not None and labels.get(key):
            return labels[key]
    return next((text for text in labels.values() if text), fallback)


def value_at(record: Mapping[str, Any], path: str) -> Any:
    """The answer at ``path`` (``a/b/c``) of a record, ``None`` when absent."""
    node: Any = record
    for part in path.split("/"):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def cell_renderer(schema: FormSchema | None, question: Field, language: str | None, display: Display) -> Any:
    """A function turning a stored answer of ``question`` into its cell text (choice labels or values)."""
    choices = schema.choice_lists.get(question.choice_list) if schema and question.choice_list else None
    if display == "values" or choices is None or question.control not in SELECT_CONTROLS:
        return lambda value: value if value is None or isinstance(value, str) else json.dumps(value)
    labels = {c.name: label_in(c.labels, language, schema, c.name) for c in choices.choices}
    if question.control == "select_one":
        return lambda value: labels.get(value, value) if isinstance(value, str) else value
    return lambda value: ", ".join(labels.get(v, v) for v in value.split()) if isinstance(value, str) else value


# ---------------------------------------------------------------------------------------------------
# Use cases


def _form(session: Session, project_id: int, xml_form_id: str) -> tuple[int, FormSchema | None]:
    found = q.form_for_table(session, project_id, xml_form_id)
    if found is None:
        raise not_found("form", form_id=xml_form_id)
    form_pk, version_pk, sha = found
    return form_pk, (cached_schema(session, version_pk, sha) if version_pk is not None else None)


def table_schema(session: Session, project_id: int, xml_form_id: str) -> FormSchema | None:
    """The published schema a form's table reads (``404`` for no such form; ``None`` before publishing)."""
    with transaction(session):
        return _form(session, project_id, xml_form_id)[1]


def _filters(schema: FormSchema | None, query: TableQuery) -> TableFilters:
    fields = []
    for path, values in sorted(query.field_values.items()):
        question = _question(schema, path)
        if question.control not in SELECT_CONTROLS:
            raise _bad("invalid_field", "not_select", path=path, control=question.control)
        fields.append(FieldFilter(path, tuple(values), multiple=question.control == "select_multiple"))
    return TableFilters(
        since=query.since,
        until=query.until,
        review_states=query.review_states,
        submitter_id=query.submitter_id,
        device_token_id=query.device_token_id,
        device_id=query.device_id,
        form_versions=query.form_versions,
        fields=tuple(fields),
        deleted=query.deleted,
    )


def _sort(schema: FormSchema | None, query: TableQuery) -> TableSort:
    direction: q.SortDirection = "desc" if query.order == "desc" else "asc"
    if query.sort != "field":
        return TableSort(None, direction)
    if not query.sort_field:
        raise _bad("invalid_sort", "no_sort_field")
    return TableSort(_question(schema, query.sort_field).path, direction)


def submissions_table(
    session: Session,
    project_id: int,
    xml_form_id: str,
    query: TableQuery,
    principal: Principal | None = None,
    *,
    exact_count: bool = False,
) -> TablePage:
    """Return one page of a form's submissions table (current versions only) for ``query``."""
    cap = None if exact_count else COUNT_CAP
    with transaction(session):
        form_pk, schema = _form(session, project_id, xml_form_id)
        filters, sort = _filters(schema, query), _sort(schema, query)
        after = decode_cursor(query.cursor, sort) if query.cursor else None
        saved = _saved(session, principal, form_pk) if query.columns is None else None
        paths = query.columns if query.columns is not None else tuple(saved.paths if saved else ())
        language = form_language(schema, query.language or (saved.language if saved else None))
        display: Display = query.display or (saved.display if saved else "labels")
        questions = [_question(schema, path) for path in dict.fromkeys(paths)]
        rows = q.table_page(session, project_id, form_pk, filters, sort, after=after, limit=query.limit + 1)
        count = q.count_rows(session, project_id, form_pk, filters, cap) if query.count or exact_count else None
    page = rows[: query.limit]
    renderers = [cell_renderer(schema, question, language, display) for question in questions]
    cells = [
        [render(value_at(row.record, f.path)) for render, f in zip(renderers, questions, strict=True)] for row in page
    ]
    return TablePage(
        rows=page,
        cells=cells,
        columns=[Column(f.path, label_in(f.labels, language, schema, f.name)) for f in questions],
        language=language,
        display=display,
        next_cursor=encode_cursor(sort, page[-1]) if len(rows) > query.limit else None,
        count=min(count, cap) if count is not None and cap is not None else count,
        count_capped=count is not None and cap is not None and count > cap,
    )


def stream_submissions_table(
    session: Session, project_id: int, xml_form_id: str, query: TableQuery, principal: Principal | None = None
) -> TableStream:
    """Every row ``query`` keeps (its cursor and limit ignored), read in keyset batches of ``STREAM_BATCH``.

    The first batch and the exact count are read now, so an unknown form or a bad filter is refused
    before an answer starts; each later batch is its own short transaction (no long-held snapshot or lock).
    A submission that arrives while the rows stream may or may not be among them.
    """
    batch = replace(query, cursor=None, limit=STREAM_BATCH, count=False)
    first = submissions_table(session, project_id, xml_form_id, batch, principal, exact_count=True)

    def pages() -> Iterator[TablePage]:
        page = first
        yield page
        while page.next_cursor is not None:
            following = replace(batch, cursor=page.next_cursor)
            page = submissions_table(session, project_id, xml_form_id, following, principal)
            yield page

    assert first.count is not None
    return TableStream(first.count, pages())


def _saved(session: Session, principal: Principal | None, form_pk: int) -> ColumnChoice | None:
    if principal is None or principal.kind != "user":
        return None
    row = q.get_columns(session, principal.id, form_pk)
    if row is None:
        return None
    display: Display = "values" if row.display == "values" else "labels"
    return ColumnChoice(list(row.paths), row.language, display, saved=True)


def get_table_columns(session: Session, project_id: int, xml_form_id: str, principal: Principal) -> ColumnChoice:
    """Return the caller's saved columns for a form (none saved: no columns, labels, the default language)."""
    with transaction(session):
        form_pk, schema = _form(session, project_id, xml_form_id)
        saved = _saved(session, principal, form_pk)
    return saved or ColumnChoice([], form_language(schema, None), "labels", saved=False)


def set_table_columns(
    session: Session,
    project_id: int,
    xml_form_id: str,
    principal: Principal,
    paths: Sequence[str],
    language: str | None,
    display: Display,
) -> ColumnChoice:
    """Save the caller's columns for a form (every path a question of the published form outside repeats)."""
    if principal.kind != "user":
        raise ApiError(403, "forbidden", MESSAGES["not_a_user"])
    with transaction(session):
        form_pk, schema = _form(session, project_id, xml_form_id)
        unique = list(dict.fromkeys(paths))
        for path in unique:
            _question(schema, path)
        chosen = form_language(schema, language) if language is not None else None
        q.save_columns(session, principal.id, form_pk, unique, chosen, display, utcnow())
    return ColumnChoice(unique, chosen, display, saved=True)
