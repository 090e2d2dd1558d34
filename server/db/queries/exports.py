"""Queries of the exports area: a form's schemas, its submissions as export records, presets, schedules, runs.

``iter_export_records`` is the hot path of every export: it reads only the parsed record and the
metadata columns, ``PAGE_SIZE`` rows at a time (PostgreSQL: one server-side cursor read with psycopg's
plain tuples, no SQLAlchemy rows; SQLite: keyset-paginated pages of core rows), so memory stays flat
whatever the number of submissions. The record is read as JSON text (PostgreSQL: its bytes) and decoded
with orjson (several times faster than the driver's ``json.loads``, which otherwise costs more than the query).
Queries never commit; on SQLite the read transaction is ended between pages because SQLite
transactions hold the single write lock (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, Text, and_, bindparam, cast, delete, or_, select, update
from sqlalchemy.orm import Session, aliased

from exports import ExportOptions, ExportRecord
from exports.parts import SplitRecords
from forms.schema import FormSchema
from server.db.models import AccessToken, User
from server.db.models.exports import ExportPreset, ExportRun, ExportSchedule
from server.db.models.forms import Form, FormVersion
from server.db.models.submissions import Submission, SubmissionAttachment, SubmissionVersion
from server.db.upsert import insert_ignore

PAGE_SIZE = 1000

# Our stored review states → the names ODK Central (and the export options) use.
REVIEW_STATE_NAMES = {"received": "received", "has_issues": "hasIssues", "approved": "approved", "rejected": "rejected"}
_STORED_STATE = {v: k for k, v in REVIEW_STATE_NAMES.items()}


def get_form(session: Session, project_id: int, xml_form_id: str) -> Form | None:
    """Return the form ``xml_form_id`` of a project, or None."""
    return session.scalars(
        select(Form).where(Form.project_id == project_id, Form.xml_form_id == xml_form_id)
    ).one_or_none()


def form_schemas(session: Session, form: Form) -> list[FormSchema]:
    """All versions' schemas of ``form``, oldest first, the current (published) version last.

    Published versions only, unless the form has none (then its drafts), so columns are the union of
    every version a submission can have been sent with.
    """
    rows = session.execute(
        select(FormVersion.id, FormVersion.status, FormVersion.schema_json)
        .where(FormVersion.form_id == form.id)
        .order_by(FormVersion.id)
    ).all()
    published = [r for r in rows if r.status == "published"] or list(rows)
    published.sort(key=lambda r: (r.id == form.current_version_id, r.id))
    return [FormSchema.from_json(r.schema_json) for r in published]


def _record_query(form_id: int, options: ExportOptions, record_as_text: bool = True) -> Any:
    submitter = aliased(User)
    device = aliased(AccessToken)
    sv, s = SubmissionVersion, Submission
    stmt = (
        select(
            s.id.label("sid"),
            sv.id.label("vid"),
            sv.instance_id,
            sv.form_version,
            (cast(sv.record, Text) if record_as_text else sv.record).label("record_json"),
            sv.device_id,
            s.created_at,
            s.current_instance_id,
            s.review_state,
            s.edits,
            s.attachments_present,
            s.attachments_expected,
            s.deleted_at,
            submitter.username,
            device.name.label("device_name"),
            s.submitter_id,
            s.updated_at,
        )
        .join(s, s.id == sv.submission_id)
        .outerjoin(submitter, submitter.id == sv.submitter_id)
        .outerjoin(device, device.id == sv.device_token_id)
        .where(sv.form_id == form_id, sv.encrypted.is_(False))
    )
    # Explicit filters go to the database (an index does the work); the implicit exclusions (superseded
    # edits, deleted, rejected) stay in the pure core, which counts them in cleaning_report.csv.
    if options.since is not None:
        stmt = stmt.where(s.created_at >= options.since)
    if options.until is not None:
        stmt = stmt.where(s.created_at < options.until)
    if options.versions:
        stmt = stmt.where(sv.form_version.in_(sorted(options.versions)))
    if options.review_states:
        stored = sorted(_STORED_STATE[n] for n in options.review_states if n in _STORED_STATE)
        stmt = stmt.where(s.review_state.in_(stored))
    # Superseded versions are always read (they are few) so the report can count what it leaves out.
    return stmt


def _page(
    session: Session, base: Any, after: tuple[int, int] | None, page_size: int, descending: bool = False
) -> Sequence[Any]:
    sv, s = SubmissionVersion, Submission
    stmt = base
    if after is not None and descending:
        sub = sv.submission_id
        stmt = stmt.where(
            sub <= after[0], s.id <= after[0], or_(sub < after[0], and_(sub == after[0], sv.id < after[1]))
        )
        return session.execute(stmt.order_by(sv.submission_id.desc(), sv.id.desc()).limit(page_size)).all()
    if descending:
        return session.execute(stmt.order_by(sv.submission_id.desc(), sv.id.desc()).limit(page_size)).all()
    if after is not None:
        # Plain lower bounds on both joined ids let each index scan start at the page; with only
        # the OR, every page re-read both tables from the first row (quadratic in submissions).
        sub = sv.submission_id
        stmt = stmt.where(
            sub >= after[0], s.id >= after[0], or_(sub > after[0], and_(sub == after[0], sv.id > after[1]))
        )
    # One plain round trip per page (a server-side cursor would add DECLARE/FETCH/CLOSE to each).
    return session.execute(stmt.order_by(sv.submission_id, sv.id).limit(page_size)).all()


def _records(rows: Sequence[Any], submitters: frozenset[str]) -> Iterator[ExportRecord]:
    # Rows unpacked by position (in _record_query's column order): attribute access by name costs
    # more than the rest of this loop. Datetimes are in UTC: UTCDateTime converts SQLAlchemy's, and
    # _pg_records reads psycopg's with the transaction's time zone set to UTC.
    for (
        _sid,
        _vid,
        instance_id,
        form_version,
        record_json,
        device_id,
        created_at,
        current_instance_id,
        review_state,
        edits,
        attachments_present,
        attachments_expected,
        deleted_at,
        username,
        device_name,
        submitter_id,
        updated_at,
    ) in rows:
        submitter = username or device_name or ""
        if submitters and submitter not in submitters:
            continue  # not in SQL: the name comes from two tables; the core would drop it anyway
        values = orjson.loads(record_json) if record_json else None
        yield ExportRecord(
            instance_id,
            form_version or "",
            created_at,
            values or {},
            submitter,
            device_id or "",
            REVIEW_STATE_NAMES.get(review_state, review_state),
            attachments_present,
            attachments_expected,
            edits,
            deleted_at is not None,  # every version of a deleted submission
            instance_id == current_instance_id,
            submitter_id,
            updated_at,
        )


def iter_export_records(
    session: Session, form_id: int, options: ExportOptions, page_size: int = PAGE_SIZE, descending: bool = False
) -> Iterator[ExportRecord]:
    """Yield every stored version of the form's submissions as ``ExportRecord``, by submission then version.

    ``descending`` reads the newest submission first (the OData feed's ``$orderby=... desc``).
    """
    if session.get_bind().dialect.name != "sqlite":
        yield from _pg_records(session, form_id, options, page_size, descending)
        return
    base = _record_query(form_id, options)
    after: tuple[int, int] | None = None
    while True:
        rows = _page(session, base, after, page_size, descending)
        session.rollback()  # release SQLite's write lock between pages: ingestion keeps going
        yield from _records(rows, options.submitters)
        if len(rows) < page_size:
            return
        after = (rows[-1].sid, rows[-1].vid)


class _JsonBytes(Loader):
    """Loads a ``jsonb`` cell as the UTF-8 bytes PostgreSQL sends, for orjson to decode.

    psycopg's own loader would decode the text twice over (to ``str``, then ``json.loads``); orjson reads
    the bytes as they are, with no ``str`` made in between.
    """

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def _pg_records(
    session: Session, form_id: int, options: ExportOptions, fetch: int, descending: bool
) -> Iterator[ExportRecord]:
    """PostgreSQL: one server-side cursor over the whole query, read through psycopg without SQLAlchemy rows.

    One query (not a keyset page per ``fetch`` rows, each planned and started again) read in batches of
    ``fetch`` rows; the next batch is fetched on a helper thread while this one is turned into records,
    so the database's work (joins, JSONB to text) and the wait for it overlap ours. The connection is
    used by one thread at a time: this generator touches it only after the helper's fetch is done.
    """
    sv = SubmissionVersion
    stmt = _record_query(form_id, options, record_as_text=False)
    order = (sv.submission_id.desc(), sv.id.desc()) if descending else (sv.submission_id, sv.id)
    compiled = stmt.order_by(*order).compile(
        dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
    )
    conn = session.connection().connection.driver_connection
    assert conn is not None, "a checked-out connection has its psycopg connection"
    try:
        # Timestamps read in UTC itself: psycopg then makes them with ``datetime.UTC`` (half the cost of a
        # ``ZoneInfo``, 'Etc/UTC' included, measured) and none needs converting. Undone by the rollback below;
        # the query compares timestamps with aware values only, which no time zone changes.
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        yield from _streamed_records(conn, str(compiled), compiled.params, fetch, options.submitters)
    finally:
        # Reading is over (or the reader stopped early, as an OData page does once it has its rows, the
        # helper's fetch then finished): end the read transaction now rather than when the response is closed.
        session.rollback()


def _streamed_records(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any], fetch: int, submitters: frozenset[str]
) -> Iterator[ExportRecord]:
    """The records of ``query`` through a server-side cursor, each batch fetched while the last is decoded."""
    with (
        conn.cursor(name="fieldsync_export") as cur,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-read") as pool,
    ):
        cur.adapters.register_loader("jsonb", _JsonBytes)
        cur.execute(query, params)
        future: Future[list[Any]] | None = pool.submit(cur.fetchmany, fetch)
        while future is not None:
            rows = future.result()
            future = pool.submit(cur.fetchmany, fetch) if len(rows) == fetch else None
            yield from _records(rows, submitters)


# Submissions per part of a CSV zip export read by helper processes (``SnapshotParts``): ~1 MB of CSV.
PART_SUBMISSIONS = 4000


def part_size(submissions: int, processes: int, most: int = PART_SUBMISSIONS) -> int:
    """Submissions per part: at most ``most``, in a number of parts that ``processes`` divides.

    Each helper takes every ``processes``-th part, so equal parts in a multiple of ``processes`` give
    every helper the same share (10,000 submissions on 2 helpers: 4 parts of 2,500, not 4,000 + 4,000 +
    2,000, which left one helper with 6,000).
    """
    if submissions <= most:
        return max(submissions, 1)  # one part: read in this process
    rounds = -(-submissions // (most * processes))
    return -(-submissions // (rounds * processes))


HELPER_APPLICATION_NAME = "fieldsync export helper"
_SnapshotPart = tuple[int, int | None]  # submission ids from (inclusive) .. to (exclusive; None: to the end)


class SnapshotParts(SplitRecords[_SnapshotPart]):
    """A form's export records (PostgreSQL), readable in parts of submissions by helper processes in one snapshot.

    ``split`` starts a REPEATABLE READ, READ ONLY transaction on the session's connection, exports its
    snapshot (``pg_export_snapshot``) and cuts the form's submissions, by id, into parts of
    ``PART_SUBMISSIONS``. Each helper opens its own connection with the session's settings, imports the
    snapshot (``SET TRANSACTION SNAPSHOT``, as ``pg_dump --jobs`` does) and reads its parts with the
    export's own query bounded by submission id: every part sees the store at the same instant, as the
    one query of a small export does, and the versions of a submission are never split. ``close``
    ends the exporting transaction once every helper has imported the snapshot. A session already inside a
    transaction (a test's, or a scheduled run's) is read by iterating, in this process, like a store
    other than PostgreSQL.
    """

    def __init__(
        self,
        session: Session,
        form_id: int,
        options: ExportOptions,
        processes: int,
        part_submissions: int | None = None,
    ) -> None:
        self.session = session
        self.form_id = form_id
        self.options = options
        self.processes = processes
        self.part_submissions = part_submissions  # None: PART_SUBMISSIONS
        self._parts: list[_SnapshotPart] | None = None  # None: not split yet
        self._closed = False
        self._snapshot: str | None = None
        self._statements: tuple[str, str, dict[str, Any]] | None = None
        self._reader: Any = None  # the helper's own psycopg connection
        self._connect: tuple[Any, Any] | None = None  # its psycopg.connect arguments

    def __iter__(self) -> Iterator[ExportRecord]:
        # One query on the session's connection: after split, in its transaction and so in its snapshot.
        yield from iter_export_records(self.session, self.form_id, self.options)

    def split(self) -> list[_SnapshotPart]:
        if self._parts is not None:
            return self._parts
        self._parts = []
        bind = self.session.get_bind()
        if bind.dialect.name != "postgresql":
            return self._parts
        driver = self.session.connection().connection.driver_connection
        assert driver is not None, "a checked-out connection has its psycopg connection"
        if driver.info.transaction_status != TransactionStatus.IDLE:
            return self._parts
        driver.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        found = driver.execute("SELECT count(*) FROM submissions WHERE form_id = %s", (self.form_id,)).fetchone()
        submissions = int(found[0]) if found else 0
        most = self.part_submissions or PART_SUBMISSIONS
        if submissions <= most:
            return self._parts  # one part: iterating reads it here, in this transaction
        self._snapshot = str(driver.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        starts = [
            int(row[0])
            for row in driver.execute(
                "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM submissions"
                " WHERE form_id = %s) AS numbered WHERE n %% %s = 1 ORDER BY id",
                (self.form_id, part_size(submissions, self.processes, most)),
            )
        ]
        self._parts = [(start, starts[i + 1] if i + 1 < len(starts) else None) for i, start in enumerate(starts)]
        self._statements = self._part_statements()
        # How the helpers connect, worked out here: a helper touches nothing of the session's.
        engine = bind if isinstance(bind, Engine) else bind.engine
        self._connect = engine.dialect.create_connect_args(engine.url)
        return self._parts

    def _part_statements(self) -> tuple[str, str, dict[str, Any]]:
        """The export's query for a bounded part and for the last part (SQL with %(name)s, and its parameters)."""
        sv, s = SubmissionVersion, Submission
        base = _record_query(self.form_id, self.options, record_as_text=False)
        lower = base.where(sv.submission_id >= bindparam("part_from"), s.id >= bindparam("part_from"))
        bounded = lower.where(sv.submission_id < bindparam("part_to"), s.id < bindparam("part_to"))
        dialect = self.session.get_bind().dialect
        compiled = [
            stmt.order_by(sv.submission_id, sv.id).compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
            for stmt in (bounded, lower)
        ]
        params = {k: v for k, v in compiled[0].params.items() if k not in ("part_from", "part_to")}
        return str(compiled[0]), str(compiled[1]), params

    def _query(self, part: _SnapshotPart) -> tuple[str, dict[str, Any]]:
        assert self._statements is not None, "split() comes first"
        bounded, last, params = self._statements
        start, stop = part
        if stop is None:
            return last, {**params, "part_from": start}
        return bounded, {**params, "part_from": start, "part_to": stop}

    def read(self, part: _SnapshotPart) -> Iterator[ExportRecord]:
        if self._reader is None:
            assert self._connect is not None, "split() comes first"
            args, kwargs = self._connect
            # Named for pg_stat_activity: a DBA sees what the extra connections of a large export are.
            reader = psycopg.connect(*args, **{**kwargs, "application_name": HELPER_APPLICATION_NAME})
            reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot)))
            reader.execute("SET LOCAL TIME ZONE 'UTC'")  # as _pg_records reads timestamps
            self._reader = reader
        query, params = self._query(part)
        yield from _streamed_records(self._reader, query, params, PAGE_SIZE, self.options.submitters)

    def finish(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def close(self) -> None:
        if self._snapshot is not None and not self._closed:
            self._closed = True
            # The end of the exporting transaction. The helpers imported its snapshot with their first
            # part: they keep it, while this connection is no longer idle in a transaction for the rest.
            self.session.rollback()


def instance_records(session: Session, form_id: int, instance_id: str) -> list[ExportRecord]:
    """The stored versions of the submission whose current instanceID is ``instance_id`` (the OData entity)."""
    stmt = _record_query(form_id, ExportOptions()).where(Submission.current_instance_id == instance_id)
    rows = session.execute(stmt.order_by(SubmissionVersion.id)).all()
    return list(_records(rows, frozenset()))


def present_files(session: Session, form_id: int, instance_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(file name, blob sha256) of every present file of these versions of the form, in version order."""
    found: list[tuple[str, str]] = []
    for start in range(0, len(instance_ids), 500):
        chunk = instance_ids[start : start + 500]
        rows = session.execute(
            select(SubmissionAttachment.name, SubmissionAttachment.blob_sha256)
            .join(SubmissionVersion, SubmissionVersion.id == SubmissionAttachment.version_id)
            .where(
                SubmissionVersion.form_id == form_id,
                SubmissionVersion.instance_id.in_(chunk),
                SubmissionAttachment.blob_sha256.is_not(None),
            )
            .order_by(SubmissionVersion.id, SubmissionAttachment.name)
        ).all()
        found.extend((name, sha) for name, sha in rows)
    return found


# --- presets ---------------------------------------------------------------------------------------


def list_presets(session: Session, form_id: int) -> Sequence[ExportPreset]:
    """The form's presets by name."""
    return session.scalars(
        select(ExportPreset).where(ExportPreset.form_id == form_id).order_by(ExportPreset.name)
    ).all()


def get_preset(session: Session, form_id: int, name: str) -> ExportPreset | None:
    """The form's preset ``name``, or None."""
    return session.scalars(
        select(ExportPreset).where(ExportPreset.form_id == form_id, ExportPreset.name == name)
    ).one_or_none()


def insert_preset(
    session: Session, form_id: int, name: str, options: dict[str, Any], actor: str, now: datetime
) -> int | None:
    """Insert a preset; None when the form already has one of that name (the constraint decides)."""
    values = {"form_id": form_id, "name": name, "options": options, "created_by": actor, "created_at": now}
    new_id: int | None = insert_ignore(session, ExportPreset.__table__, values, ["form_id", "name"], returning="id")
    return new_id


def delete_preset(session: Session, form_id: int, name: str) -> bool:
    """Delete a preset; tell whether it existed."""
    result = session.execute(delete(ExportPreset).where(ExportPreset.form_id == form_id, ExportPreset.name == name))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- schedules and runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DueSchedule:
    """A schedule whose next run is due, as seen by one scheduler at one instant."""

    id: int
    form_id: int
    project_id: int
    xml_form_id: str
    cron: str
    preset: str | None
    folder: str
    keep: int
    format: str
    next_run_at: datetime


def list_schedules(session: Session, form_id: int) -> Sequence[ExportSchedule]:
    """The form's schedules, oldest first."""
    return session.scalars(
        select(ExportSchedule).where(ExportSchedule.form_id == form_id).order_by(ExportSchedule.id)
    ).all()


def get_schedule(session: Session, form_id: int, schedule_id: int) -> ExportSchedule | None:
    """The form's schedule ``schedule_id``, or None."""
    return session.scalars(
        select(ExportSchedule).where(ExportSchedule.form_id == form_id, ExportSchedule.id == schedule_id)
    ).one_or_none()


def last_runs(session: Session, schedule_ids: Sequence[int], limit: int = 5) -> dict[int, list[ExportRun]]:
    """The newest runs of each schedule (at most ``limit`` each), newest first."""
    out: dict[int, list[ExportRun]] = {i: [] for i in schedule_ids}
    if not schedule_ids:
        return out
    runs = session.scalars(
        select(ExportRun).where(ExportRun.schedule_id.in_(schedule_ids)).order_by(ExportRun.scheduled_for.desc())
    ).all()
    for run in runs:
        if len(out[run.schedule_id]) < limit:
            out[run.schedule_id].append(run)
    return out


def due_schedules(session: Session, now: datetime) -> list[DueSchedule]:
    """Enabled schedules whose ``next_run_at`` is not after ``now``."""
    rows = session.execute(
        select(
            ExportSchedule.id,
            ExportSchedule.form_id,
            Form.project_id,
            Form.xml_form_id,
            ExportSchedule.cron,
            ExportSchedule.preset,
            ExportSchedule.folder,
            ExportSchedule.keep,
            ExportSchedule.format,
            ExportSchedule.next_run_at,
        )
        .join(Form, Form.id == ExportSchedule.form_id)
        .where(ExportSchedule.enabled.is_(True), ExportSchedule.next_run_at <= now)
        .order_by(ExportSchedule.id)
    ).all()
    return [DueSchedule(*r) for r in rows]


def claim_run(session: Session, schedule_id: int, scheduled_for: datetime, worker: str, now: datetime) -> int | None:
    """Claim the run of a schedule due at ``scheduled_for``; None when another scheduler already has it."""
    values = {
        "schedule_id": schedule_id,
        "scheduled_for": scheduled_for,
        "status": "running",
        "claimed_by": worker,
        "started_at": now,
    }
    run_id: int | None = insert_ignore(
        session, ExportRun.__table__, values, ["schedule_id", "scheduled_for"], returning="id"
    )
    return run_id


def advance_schedule(session: Session, schedule_id: int, seen: datetime, following: datetime) -> bool:
    """Compare-and-set ``next_run_at`` from ``seen`` to ``following``; tell whether this call moved it."""
    result = session.execute(
        update(ExportSchedule)
        .where(ExportSchedule.id == schedule_id, ExportSchedule.next_run_at == seen)
        .values(next_run_at=following)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_run(
    session: Session,
    run_id: int,
    status: str,
    now: datetime,
    file_name: str | None = None,
    records: int | None = None,
    error: str | None = None,
) -> None:
    """Record the outcome of a claimed run."""
    session.execute(
        update(ExportRun)
        .where(ExportRun.id == run_id)
        .values(status=status, finished_at=now, file_name=file_name, records=records, error=error)
    )
