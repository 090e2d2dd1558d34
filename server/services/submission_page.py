"""What a person reads about one submission, and the map of a form's submissions.

``submission_page`` gathers, in one transaction, every answer of the current version with its label in
the chosen language (groups as sections, repeats as nested tables, files with whether they arrived),
each edit as the list of answers it changed, the reviews and comments with who made them, and the
submission's audit trail. ``submission_points`` reads the geopoints of the submissions a table filter
keeps, for the map. Comments are review entries that leave the state as it was (ODK Central keeps
them apart; here one history says who set which state and why): ``comment_on_submission`` adds one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from exports.region_map import parse_geopoint
from forms.schema import Field, FormSchema
from forms.submission import flatten_values, strip_repeat_indices
from server.auth import Principal
from server.db.models.submissions import SubmissionReview, SubmissionVersion
from server.db.transaction import transaction
from server.errors import ApiError
from server.services import audit_log, overview
from server.services import submission_table as table
from server.services import submissions as svc

# The parts of a record every edit changes by definition: not worth a line in a diff.
DIFF_SKIPPED = frozenset({"meta/instanceID", "meta/deprecatedID"})
HIDDEN_CONTROLS = frozenset({"note"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
MAP_LIMIT = 5000
AUDIT_LIMIT = 200


@dataclass(frozen=True, slots=True)
class FileCell:
    """A file an answer names: whether it arrived, and whether it is a picture to show inline."""

    name: str
    present: bool
    image: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: the question's path and label, its text (choice labels or values), its file if any."""

    path: str
    label: str
    text: str | None
    file: FileCell | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """A group of questions, shown as a section."""

    path: str
    label: str
    items: list[Node]


@dataclass(frozen=True, slots=True)
class Repeat:
    """A repeat as a table: one column per question (a nested repeat is a nested table), one row per entry."""

    path: str
    label: str
    columns: list[str]
    rows: list[list[Answer | Repeat]]


Node = Answer | Group | Repeat


@dataclass(frozen=True, slots=True)
class Change:
    """One answer an edit changed (``path`` with repeat indices, such as ``products/product[2]/name``)."""

    path: str
    label: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One version of the submission, with what it changed from the one before (none for the first)."""

    instance_id: str
    form_version: str
    received_at: datetime
    sent_by: str | None
    device_id: str | None
    changes: list[Change]
    files_missing: list[str]


@dataclass(frozen=True, slots=True)
class ReviewEntry:
    """A review or a comment: who, when, from which state to which, and what they wrote."""

    at: datetime
    actor: str
    actor_name: str | None
    from_state: str
    to_state: str
    comment: str | None


@dataclass(frozen=True, slots=True)
class SubmissionPage:
    """Everything the submission page shows."""

    detail: svc.SubmissionDetail
    schema: FormSchema | None
    language: str | None
    display: table.Display
    answers: list[Node]
    versions: list[VersionEntry]
    reviews: list[ReviewEntry]
    audit: list[audit_log.AuditEntry]
    sent_by: str | None
    files_missing: list[str] = field(default_factory=list)

    @property
    def comments(self) -> list[ReviewEntry]:
        """The reviews that carry words."""
        return [r for r in self.reviews if r.comment]


# ---------------------------------------------------------------------------------------------------
# Answers


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _shown(question: Field) -> bool:
    return question.control not in HIDDEN_CONTROLS


def _file(name: Any, files: Mapping[str, bool], question: Field) -> FileCell | None:
    if not isinstance(name, str) or not name:
        return None
    image = (question.media_type or "").startswith("image") or name.lower().endswith(IMAGE_SUFFIXES)
    return FileCell(name, files.get(name, False), image)


class _Answers:
    """Builds the answer tree of one record against the form's schema."""

    def __init__(self, schema: FormSchema, language: str | None, display: table.Display, files: Mapping[str, bool]):
        self.schema, self.language, self.display, self.files = schema, language, display, files

    def label(self, question: Field) -> str:
        return table.label_in(question.labels, self.language, self.schema, question.name)

    def answer(self, question: Field, value: Any) -> Answer:
        if question.bind_type == "binary":
            return Answer(question.path, self.label(question), value or None, _file(value, self.files, question))
        render = table.cell_renderer(self.schema, question, self.language, self.display)
        text = render(value)
        return Answer(question.path, self.label(question), text if text != "" else None)

    def children(self, parent: str, repeat: str | None) -> list[Field]:
        return [f for f in self.schema.fields if _parent(f.path) == parent and f.repeat == repeat]

    def nodes(self, parent: str, record: Mapping[str, Any]) -> list[Node]:
        out: list[Node] = []
        for item in self.children(parent, None):
            if item.kind == "group":
                inner = self.nodes(item.path, record)
                if inner:
                    out.append(Group(item.path, self.label(item), inner))
            elif item.kind == "repeat":
                out.append(self.repeat(item, table.value_at(record, item.path)))
            elif _shown(item):
                out.append(self.answer(item, table.value_at(record, item.path)))
        return out

    def repeat_columns(self, repeat: Field) -> list[Field]:
        return [
            f
            for f in self.schema.fields
            if f.repeat == repeat.path and (f.kind == "repeat" or (f.kind == "question" and _shown(f)))
        ]

    def repeat(self, repeat: Field, entries: Any) -> Repeat:
        columns = self.repeat_columns(repeat)
        rows: list[list[Answer | Repeat]] = []
        for entry in entries if isinstance(entries, list) else []:
            row: list[Answer | Repeat] = []
            for column in columns:
                value = (
                    table.value_at(entry, column.path[len(repeat.path) + 1 :]) if isinstance(entry, Mapping) else None
                )
                row.append(self.repeat(column, value) if column.kind == "repeat" else self.answer(column, value))
            rows.append(row)
        return Repeat(repeat.path, self.label(repeat), [self.label(c) for c in columns], rows)

    def text_of(self, flat_path: str, value: str | None) -> tuple[str, str | None]:
        question = self.schema.field_by_path(strip_repeat_indices(flat_path))
        if question is None:
            return flat_path, value
        if question.bind_type == "binary":
            return self.label(question), value
        return self.label(question), table.cell_renderer(self.schema, question, self.language, self.display)(value)


def _changes(answers: _Answers | None, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    old, new = flatten_values(before), flatten_values(after)
    changes = []
    for path in list(dict.fromkeys([*old, *new])):
        if path in DIFF_SKIPPED or old.get(path) == new.get(path):
            continue
        if answers is None:
            changes.append(Change(path, path, old.get(path), new.get(path)))
            continue
        label, was = answers.text_of(path, old.get(path))
        _, now = answers.text_of(path, new.get(path))
        changes.append(Change(path, label, was, now))
    return changes


@dataclass(frozen=True, slots=True)
class TableChoices:
    """What a table's filter form offers: questions to sort by or show, select questions with their choices."""

    language: str | None
    questions: list[tuple[str, str]]
    selects: list[tuple[str, str, list[tuple[str, str]]]]


def table_choices(schema: FormSchema | None, language: str | None) -> TableChoices:
    """The questions (path, label) outside repeats and the select ones' choices, in ``language`` if the form
    has it (else its default language: the table itself says the language is unknown)."""
    try:
        language = table.form_language(schema, language)
    except ApiError:
        language = table.form_language(schema, None)
    questions: list[tuple[str, str]] = []
    selects: list[tuple[str, str, list[tuple[str, str]]]] = []
    if schema is None:
        return TableChoices(language, questions, selects)
    for question in schema.fields:
        if question.kind != "question" or question.repeat is not None or question.control in HIDDEN_CONTROLS:
            continue
        label = table.label_in(question.labels, language, schema, question.name)
        questions.append((question.path, label))
        choices = schema.choice_lists.get(question.choice_list) if question.choice_list else None
        if question.control in table.SELECT_CONTROLS and choices is not None and choices.choices:
            options = [(c.name, table.label_in(c.labels, language, schema, c.name)) for c in choices.choices]
            selects.append((question.path, label, options))
    return TableChoices(language, questions, selects)


DEFAULT_COLUMNS = 6
NOT_DEFAULT_CONTROLS = frozenset({"metadata", "note", "calculate"})


def default_columns(schema: FormSchema | None) -> tuple[str, ...]:
    """The columns a table shows before its user chooses any: the form's first questions a person answered."""
    if schema is None:
        return ()
    found = [
        f.path
        for f in schema.fields
        if f.kind == "question"
        and f.repeat is None
        and f.control not in NOT_DEFAULT_CONTROLS
        and f.bind_type not in ("binary", "geopoint")
    ]
    return tuple(found[:DEFAULT_COLUMNS])


def answer_runs(items: Sequence[Node]) -> list[list[Answer] | Group | Repeat]:
    """The nodes with consecutive answers gathered (a page shows each run as one list of questions)."""
    out: list[list[Answer] | Group | Repeat] = []
    for item in items:
        if isinstance(item, Answer):
            if out and isinstance(out[-1], list):
                out[-1].append(item)
            else:
                out.append([item])
        else:
            out.append(item)
    return out


# ---------------------------------------------------------------------------------------------------
# Use cases


def _present(attachments: Sequence[Any]) -> dict[str, bool]:
    return {a.name: a.blob_sha256 is not None for a in attachments}


def _versions(detail: svc.SubmissionDetail, answers: _Answers | None, names: Mapping[str, str]) -> list[VersionEntry]:
    out = []
    previous: SubmissionVersion | None = None
    for version in detail.versions:
        sender = f"user:{version.submitter_id}" if version.submitter_id else None
        if version.device_token_id:
            sender = f"device:{version.device_token_id}"
        out.append(
            VersionEntry(
                instance_id=version.instance_id,
                form_version=version.form_version,
                received_at=version.received_at,
                sent_by=names.get(sender or "", sender),
                device_id=version.device_id,
                changes=_changes(answers, previous.record, version.record) if previous is not None else [],
                files_missing=sorted(n for n, ok in _present(detail.attachments[version.id]).items() if not ok),
            )
        )
        previous = version
    return out


def _reviews(reviews: Sequence[SubmissionReview], names: Mapping[str, str]) -> list[ReviewEntry]:
    return [ReviewEntry(r.at, r.actor, names.get(r.actor), r.from_state, r.to_state, r.comment) for r in reviews]


def submission_page(
    session: Session,
    project_id: int,
    xml_form_id: str,
    instance_id: str,
    *,
    language: str | None = None,
    display: table.Display = "labels",
) -> SubmissionPage:
    """Read one submission for its page (``404`` when no version is ``instance_id``; ``400`` for a language
    the form does not have)."""
    schema = table.table_schema(session, project_id, xml_form_id)
    chosen = table.form_language(schema, language)
    with transaction(session):
        detail = svc.get_submission(session, project_id, xml_form_id, instance_id)
        current = detail.current
        files = _present(detail.attachments[current.id])
        answers = _Answers(schema, chosen, display, files) if schema is not None else None
        refs = {r.actor for r in detail.reviews}
        refs |= {f"user:{v.submitter_id}" for v in detail.versions if v.submitter_id}
        refs |= {f"device:{v.device_token_id}" for v in detail.versions if v.device_token_id}
        names = overview.names_of(session, refs)
        versions = _versions(detail, answers, names)
    trail = audit_log.read_audit_log(
        session, project_id, limit=AUDIT_LIMIT, subject=f"submission:{detail.submission.id}"
    )
    return SubmissionPage(
        detail=detail,
        schema=schema,
        language=chosen,
        display=display,
        answers=answers.nodes("", current.record) if answers is not None else [],
        versions=versions,
        reviews=_reviews(detail.reviews, names),
        audit=trail,
        sent_by=versions[0].sent_by if versions else None,
        files_missing=sorted(name for name, ok in files.items() if not ok),
    )


def comment_on_submission(
    session: Session,
    project_id: int,
    xml_form_id: str,
    instance_id: str,
    body: str,
    principal: Principal,
    request_key: str | None = None,
) -> ReviewEntry:
    """Add a comment to a submission (its review state unchanged); audited like a review.

    With ``request_key`` a retried request answers the comment it wrote the first time.
    """
    detail = svc.review_submission(
        session,
        project_id=project_id,
        xml_form_id=xml_form_id,
        instance_id=instance_id,
        review_state=None,
        comment=body,
        principal=principal,
        request_key=request_key,
    )
    mine = [r for r in detail.reviews if request_key is not None and r.request_key == request_key]
    with transaction(session):
        names = overview.names_of(session, {principal.actor})
    return _reviews(mine or detail.reviews[-1:], names)[0]


def list_comments(session: Session, project_id: int, xml_form_id: str, instance_id: str) -> list[ReviewEntry]:
    """A submission's comments, oldest first, with who wrote them and the state they set."""
    with transaction(session):
        detail = svc.get_submission(session, project_id, xml_form_id, instance_id)
        names = overview.names_of(session, {r.actor for r in detail.reviews})
    return [r for r in _reviews(detail.reviews, names) if r.comment]


# ---------------------------------------------------------------------------------------------------
# The map


@dataclass(frozen=True, slots=True)
class Located:
    """A submission with a point: its instance id, its name, (longitude, latitude)."""

    instance_id: str
    name: str | None
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class PointsPage:
    """The points of the submissions a filter keeps, for one geopoint question."""

    geopoints: list[table.Column]
    path: str | None
    points: list[Located]
    without_point: int
    truncated: bool  # more than MAP_LIMIT submissions matched: the first MAP_LIMIT are drawn


def geopoint_questions(schema: FormSchema | None) -> list[Field]:
    """The form's geopoint questions outside repeats (the ones a table row has one value of)."""
    if schema is None:
        return []
    return [f for f in schema.fields if f.kind == "question" and f.bind_type == "geopoint" and f.repeat is None]


def submission_points(
    session: Session,
    project_id: int,
    xml_form_id: str,
    query: table.TableQuery,
    path: str | None = None,
    principal: Principal | None = None,
) -> PointsPage:
    """The geopoints (question ``path``, else the form's first) of the submissions ``query`` keeps."""
    with transaction(session):
        schema = table.table_schema(session, project_id, xml_form_id)
    questions = geopoint_questions(schema)
    language = table.form_language(schema, query.language)
    columns = [table.Column(q.path, table.label_in(q.labels, language, schema, q.name)) for q in questions]
    chosen = path or (questions[0].path if questions else None)
    if chosen is None:
        return PointsPage(columns, None, [], 0, truncated=False)
    located: list[Located] = []
    without, cursor = 0, None
    while True:
        step = replace(query, cursor=cursor, limit=min(1000, MAP_LIMIT - len(located) - without),
                       columns=(chosen,), display="values", count=False)  # fmt: skip
        page = table.submissions_table(session, project_id, xml_form_id, step, principal)
        for row, (cell,) in zip(page.rows, page.cells, strict=True):
            point = parse_geopoint(cell)
            if point is None:
                without += 1
            else:
                located.append(Located(row.current_instance_id, row.instance_name, point[0], point[1]))
        cursor = page.next_cursor
        if cursor is None or len(located) + without >= MAP_LIMIT:
            break
    return PointsPage(columns, chosen, located, without, truncated=cursor is not None)
