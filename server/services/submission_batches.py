"""Many new submissions in a few statements: the happy path of a JSON push batch.

``ingest_submissions_bulk`` takes the submissions of one push batch, decides every item in memory
(pure: header, form routing, parse, ``sync.submissions.decide_submission``) and stores all the plain
creations, the first version of an instance id nobody stored or replaced yet, with a handful of
multi-row statements: chain locks (PostgreSQL), one read of stored relatives, one blob presence
read, then multi-row INSERTs of submissions, versions, attachments and audit events inside one
SAVEPOINT. Everything else (duplicates, id conflicts, edits, entities, unknown or closed forms,
unparseable data) gets ``None`` and goes through ``server.services.submissions.ingest_submission``
one by one, so those outcomes are decided by exactly the same code as before. The outcome of a bulk
item equals what ``ingest_submission`` says for it (``created``, or ``awaiting_attachments`` with
the same ``missing`` list).

Concurrency: the same per-instance edit-chain advisory locks as the one-by-one path
(``q.chain_lock_key``), taken in one statement in sorted order; with the locks held, the read of
stored relatives is final, and the version INSERT keeps ``ON CONFLICT DO NOTHING`` as a belt: a
conflict there rolls the bulk SAVEPOINT back and every item takes the one-by-one path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert, select, text, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from forms.errors import SubmissionError
from forms.record import SubmissionRecord
from forms.schema import FormSchema
from forms.submission import SubmissionHeader, parse_submission, read_submission_header
from server.auth import Principal
from server.db import pipeline
from server.db.base import utcnow
from server.db.models import AuditEvent
from server.db.models.submissions import INSTANCE_ID_LENGTH, Submission, SubmissionAttachment, SubmissionVersion
from server.db.queries import submissions as q
from server.services.outbox import created_payload, record_event
from server.services.submissions import IngestResult, _schema
from sync.outcomes import AwaitingAttachments, Created
from sync.submissions import (
    AttachmentRef,
    FormInfo,
    FormState,
    IncomingSubmission,
    SubmissionOutcome,
    content_hash_xml,
    decide_submission,
)

log = logging.getLogger("fieldsync.submissions")

_SUBMISSIONS = cast(Table, Submission.__table__)
_VERSIONS = cast(Table, SubmissionVersion.__table__)
_ATTACHMENTS = cast(Table, SubmissionAttachment.__table__)
_AUDIT = cast(Table, AuditEvent.__table__)


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One submission of a batch: its XML and the attachments the client declared for it.

    ``form_id``/``form_version``/``instance_id``, when the client stated them next to the XML (push
    items do), save a separate header parse: they route the item, and the parsed XML must agree
    with them, else the item goes one by one.
    """

    xml: bytes
    declared: Sequence[AttachmentRef] = ()
    form_id: str | None = None
    form_version: str | None = None
    instance_id: str | None = None


@dataclass(slots=True)
class _Candidate:
    index: int
    header: SubmissionHeader
    instance_id: str
    xml: bytes
    xml_sha: str
    declared: tuple[AttachmentRef, ...]
    form_pk: int = 0
    version_pk: int = 0
    schema: FormSchema | None = None
    form_info: FormInfo | None = None
    record: SubmissionRecord | None = None
    outcome: SubmissionOutcome | None = None
    rows: list[dict[str, Any]] | None = None


def _candidate(index: int, item: BulkItem) -> _Candidate | None:
    """A new-instance candidate, or ``None`` when the one-by-one path must decide (pure)."""
    if item.form_id and item.form_version is not None and item.instance_id:
        header = SubmissionHeader(item.form_id, item.form_version, item.instance_id, None, False, "")
    else:
        try:
            header = read_submission_header(item.xml)
        except SubmissionError:
            return None
    instance_id = header.instance_id
    if instance_id is None or header.deprecated_id is not None or header.encrypted:
        return None
    if len(instance_id) > INSTANCE_ID_LENGTH:
        return None
    return _Candidate(index, header, instance_id, item.xml, content_hash_xml(item.xml), tuple(item.declared))


def _named_ids(item: BulkItem, found: _Candidate | None, parsed: set[str]) -> set[str]:
    """Every instance id an item not stored in bulk may store or touch (routing fields and XML header)."""
    ids = set(parsed)
    if item.instance_id:
        ids.add(item.instance_id)
    if found is not None:
        ids.add(found.instance_id)
    try:
        header = read_submission_header(item.xml)
    except SubmissionError:
        return ids  # refused without a write
    ids.update(i for i in (header.instance_id, header.deprecated_id) if i)
    return ids


def _lock_chains(session: Session, project_id: int, candidates: Sequence[_Candidate]) -> None:
    """Take every candidate's edit-chain lock in one statement, keys sorted (PostgreSQL only)."""
    q.lock_chains_in_order(session, (q.chain_lock_key(project_id, c.header.form_id, c.instance_id) for c in candidates))


_STORED_RELATIVES_PG = text(
    # One index probe per id, whatever the planner's statistics say: a LATERAL subquery with LIMIT is
    # a parameterised scan of the unique key (or of the partial deprecated_id index). An IN list
    # on a table never analysed was planned as a filter over every version of the form.
    "SELECT t.i FROM unnest(CAST(:ids AS varchar[])) AS t(i)"
    " CROSS JOIN LATERAL (SELECT 1 FROM submission_versions v WHERE v.project_id = :project_id"
    " AND v.form_id = :form_id AND v.instance_id = t.i LIMIT 1) AS stored"
    " UNION"
    " SELECT t.i FROM unnest(CAST(:ids AS varchar[])) AS t(i)"
    " CROSS JOIN LATERAL (SELECT 1 FROM submission_versions v WHERE v.project_id = :project_id"
    " AND v.form_id = :form_id AND v.deprecated_id = t.i LIMIT 1) AS replaced"
)


def _stored_relatives(session: Session, project_id: int, form_pk: int, instance_ids: Sequence[str]) -> set[str]:
    """The instance ids among ``instance_ids`` that are stored or replaced by a stored version."""
    if session.get_bind().dialect.name == "postgresql":
        params = {"ids": list(instance_ids), "project_id": project_id, "form_id": form_pk}
        return {row[0] for row in session.execute(_STORED_RELATIVES_PG, params)}
    same_form = (_VERSIONS.c.project_id == project_id, _VERSIONS.c.form_id == form_pk)
    stmt = union_all(
        select(_VERSIONS.c.instance_id.label("i")).where(*same_form, _VERSIONS.c.instance_id.in_(instance_ids)),
        select(_VERSIONS.c.deprecated_id.label("i")).where(*same_form, _VERSIONS.c.deprecated_id.in_(instance_ids)),
    )
    return {row[0] for row in session.execute(stmt)}


def _insert_ignore_versions(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_VERSIONS)
    return stmt.on_conflict_do_nothing(index_elements=["project_id", "form_id", "instance_id"]).returning(
        _VERSIONS.c.id, _VERSIONS.c.instance_id
    )


_DRAW_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('submissions', 'id')),"
    " nextval(pg_get_serial_sequence('submission_versions', 'id')) FROM generate_series(1, :n)"
)


def _draw_ids(session: Session, count: int) -> list[tuple[int, int]] | None:
    """``count`` fresh (submission id, version id) pairs in one round trip (PostgreSQL; ``None`` elsewhere)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return [(int(a), int(b)) for a, b in session.execute(_DRAW_IDS, {"n": count})]


class _BulkConflict(Exception):
    """A version INSERT hit a stored instance id after all: the batch takes the one-by-one path."""


def ingest_submissions_bulk(
    session: Session,
    *,
    project_id: int,
    items: Sequence[BulkItem],
    principal: Principal,
    device_id: str | None,
    source: str = "push",
) -> list[IngestResult | None]:
    """Store every plain new submission of ``items`` in a few statements; ``None`` for the others.

    Runs inside the caller's transaction, in one SAVEPOINT. A ``None`` item was not touched: the
    caller passes it to ``ingest_submission`` (in item order, after this call). If anything goes
    wrong here the SAVEPOINT is rolled back and every item is ``None`` (one bad item never blocks
    the others: the one-by-one path isolates it).
    """
    try:
        with session.begin_nested():
            return _ingest_bulk(session, project_id, items, principal, device_id, source)
    except OperationalError:
        raise  # lock trouble: the caller retries the whole batch
    except Exception:
        log.exception("bulk ingest of %s submissions failed; they go one by one", len(items))
        return [None] * len(items)


# Items are parsed and written a chunk at a time: on PostgreSQL a chunk's rows are sent down the
# pipeline unanswered, and the server writes them while Python parses the next chunk.
CHUNK_ITEMS = 50


def _ingest_bulk(
    session: Session,
    project_id: int,
    items: Sequence[BulkItem],
    principal: Principal,
    device_id: str | None,
    source: str,
) -> list[IngestResult | None]:
    results: list[IngestResult | None] = [None] * len(items)
    found = [_candidate(index, item) for index, item in enumerate(items)]
    if not any(found):
        return results

    # Route every candidate by its routing fields (reads only, no lock yet).
    targets: dict[tuple[str, str], tuple[q.FormTarget, FormInfo, FormSchema | None] | None] = {}
    routed: list[_Candidate] = []
    for c in found:
        if c is None:
            continue
        form_id, version = c.header.form_id, c.header.version
        if (form_id, version) not in targets:
            target = q.get_form_target(session, project_id, form_id, version)
            ok = target is not None and target.state != "closed" and target.version_pk is not None
            # The schema is read now: no other statement may run while the writes are pipelined.
            targets[(form_id, version)] = (
                (
                    target,
                    FormInfo(form_id, cast(FormState, target.state), frozenset({version})),
                    _schema(session, cast(int, target.version_pk), target.version_sha256),
                )
                if ok and target is not None
                else None
            )
        routed_to = targets[(form_id, version)]
        if routed_to is not None:
            target, c.form_info, c.schema = routed_to
            c.form_pk, c.version_pk = target.form_pk, cast(int, target.version_pk)
            routed.append(c)
    if not routed:
        return results

    # Every routed chain is locked up front, before anything is parsed, so the reads below are final
    # and the writes can follow the parsing chunk by chunk. A chain locked here whose item turns out
    # not to be a plain creation is simply locked again by the one-by-one path (the locks are reentrant).
    _lock_chains(session, project_id, routed)
    stored: set[tuple[int, str]] = set()
    by_form: dict[int, list[str]] = {}
    for c in routed:
        by_form.setdefault(c.form_pk, []).append(c.instance_id)
    for form_pk, instance_ids in by_form.items():
        stored.update((form_pk, i) for i in _stored_relatives(session, project_id, form_pk, instance_ids))
    present = q.present_blobs(session, project_id, (ref.sha256 for c in routed for ref in c.declared))
    writer = _ChainWriter(session, project_id, principal, device_id, source, len(routed))

    # Bulk items are stored before the others; that reorders nothing that matters only if no
    # EARLIER item of the batch names the same instance id (a copy, an edit of it, or XML whose
    # routing fields say otherwise): such a candidate goes one by one, in item order.
    named_before: set[str] = set()
    routed_at = {c.index: c for c in routed}
    with writer.pipelined():
        for start in range(0, len(items), CHUNK_ITEMS):
            chunk: list[_Candidate] = []
            for index in range(start, min(start + CHUNK_ITEMS, len(items))):
                c = routed_at.get(index)
                parsed_ids = _parse(c) if c is not None else set()
                if c is None or c.record is None or c.instance_id in named_before:
                    named_before |= _named_ids(items[index], found[index], parsed_ids)
                    continue
                named_before.add(c.instance_id)
                # With the chain locks held the read of stored ids is final: those go one by one.
                if (c.form_pk, c.instance_id) not in stored and _decide(c, present, writer.now):
                    chunk.append(c)
            writer.write(chunk)
    for c, (submission_id, version_id) in writer.stored():
        assert c.rows is not None and c.outcome is not None
        missing = tuple(sorted(str(r["declared_sha256"] or r["name"]) for r in c.rows if not r["blob_sha256"]))
        # As the one-by-one path: the missing list comes from the stored rows.
        accepted = c.outcome.accepted if isinstance(c.outcome, AwaitingAttachments) else c.outcome
        assert isinstance(accepted, Created)  # only plain creations are stored in bulk
        final: SubmissionOutcome = AwaitingAttachments(missing=missing, accepted=accepted) if missing else accepted
        results[c.index] = IngestResult(
            final, c.instance_id, submission_id, version_id, c.header.form_id, c.header.version, missing
        )
    return results


def _parse(c: _Candidate) -> set[str]:
    """Parse a routed candidate; keep its record when it is a plain new submission. The ids its XML names."""
    try:
        record = parse_submission(c.xml, c.schema)
    except SubmissionError:
        return set()
    named = {record.instance_id, record.deprecated_id or record.instance_id}
    if record.entities or record.deprecated_id is not None or record.encrypted:
        return named
    if (record.form_id, record.version, record.instance_id) != (c.header.form_id, c.header.version, c.instance_id):
        return named  # the XML says otherwise than the item's routing fields: one by one
    c.record = record
    return named


def _decide(c: _Candidate, present: set[str], now: Any) -> bool:
    """Decide a candidate as ``ingest_submission`` would; prepare its attachment rows if it is a plain creation."""
    assert c.record is not None and c.form_info is not None
    expected = set(c.record.attachments)
    c.declared = tuple(ref for ref in c.declared if ref.name in expected)
    incoming = IncomingSubmission(
        c.instance_id,
        c.header.form_id,
        c.header.version,
        c.xml_sha,
        None,
        expected_attachments=tuple(c.record.attachments),
        attachments=c.declared,
    )
    outcome = decide_submission(incoming, None, c.form_info, present_blobs=present, predecessor_known=False)
    accepted = outcome.accepted if isinstance(outcome, AwaitingAttachments) else outcome
    if not isinstance(accepted, Created):
        return False
    declared_by_name = {ref.name: ref.sha256 for ref in c.declared}
    c.rows = []
    for name in c.record.attachments:
        declared_sha = declared_by_name.get(name)
        sha = declared_sha if declared_sha in present else None
        c.rows.append({"name": name, "blob_sha256": sha, "declared_sha256": declared_sha, "created_at": now})
    c.outcome = outcome
    return True


class _ChainWriter:
    """Writes accepted candidates: on PostgreSQL chunk by chunk down one pipeline, elsewhere all at the end.

    The chunk loop runs inside ``pipelined()``; ``stored()`` then gives each written candidate with its
    ``(submission id, version id)``, after the attachment rows are written too.
    """

    def __init__(
        self, session: Session, project_id: int, principal: Principal, device_id: str | None, source: str, most: int
    ) -> None:
        self.session, self.project_id, self.principal, self.source = session, project_id, principal, source
        self.device = device_id[:255] if device_id else None
        self.now = utcnow()
        # Ids for every candidate that might be written, drawn in one round trip (PostgreSQL).
        self.ids = _draw_ids(session, most)
        self.submitter_id = principal.id if principal.kind == "user" else None
        self.device_token_id = principal.id if principal.kind == "device" else None
        self.written: list[tuple[_Candidate, tuple[int, int]]] = []
        self.pending: list[_Candidate] = []

    def pipelined(self) -> AbstractContextManager[None]:
        """The block the chunk loop runs in: one open pipeline on PostgreSQL, nothing elsewhere.

        Its end waits for every chunk; a stored instance id (impossible with the chain locks held)
        fails the unique key there: the caller's SAVEPOINT rolls back and every item goes one by one.
        """
        return pipeline.pipelined(self.session) if self.ids is not None else nullcontext()

    def write(self, chunk: Sequence[_Candidate]) -> None:
        """Send ``chunk`` down the pipeline (PostgreSQL), or keep it for ``stored()``."""
        if not chunk:
            return
        if self.ids is None:
            self.pending.extend(chunk)
            return
        ids = self.ids[len(self.written) : len(self.written) + len(chunk)]
        rows = [
            {**self._values(c), "submission_id": submission_id, "version_id": version_id}
            for c, (submission_id, version_id) in zip(chunk, ids, strict=True)
        ]
        # Sent down the pipeline; the server writes this chunk while the next one is parsed.
        q.insert_new_chains(self.session, rows)
        self.written.extend(zip(chunk, ids, strict=True))

    def stored(self) -> list[tuple[_Candidate, tuple[int, int]]]:
        """Write what is left (SQLite: everything; then the attachment rows); return each candidate with its ids."""
        if self.pending:
            self._write_plain(self.pending)
        attachment_rows = [
            {**row, "version_id": version_id} for c, (_, version_id) in self.written for row in c.rows or ()
        ]
        if attachment_rows:
            self.session.execute(insert(_ATTACHMENTS), attachment_rows)
        return self.written

    def _values(self, c: _Candidate) -> dict[str, Any]:
        """Every value of a new chain, by the parameter names of ``q.insert_new_chains`` (ids aside)."""
        assert c.rows is not None and c.record is not None
        return {
            "project_id": self.project_id,
            "form_id": c.form_pk,
            "form_version_id": c.version_pk,
            "instance_id": c.instance_id,
            "form_version": c.header.version,
            "xml": c.xml,
            "xml_sha256": c.xml_sha,
            "record": c.record.values,
            "instance_name": c.record.instance_name,
            "source": self.source,
            "received_at": self.now,
            "submitter_id": self.submitter_id,
            "device_token_id": self.device_token_id,
            "device_id": self.device,
            "attachments_expected": len(c.rows),
            "attachments_present": sum(1 for r in c.rows if r["blob_sha256"]),
            "actor": self.principal.actor,
            "details": {"form": c.header.form_id, "instance_id": c.instance_id, "source": self.source},
            "xml_form_id": c.header.form_id,
        }

    def _write_plain(self, items: Sequence[_Candidate]) -> None:
        """SQLite: the same rows as the PostgreSQL statement writes, in three multi-row INSERTs."""
        values = [self._values(c) for c in items]
        submission_ids = [
            int(row[0])
            for row in self.session.execute(
                insert(_SUBMISSIONS).returning(_SUBMISSIONS.c.id, sort_by_parameter_order=True),
                [_submission_row(v) for v in values],
            )
        ]
        versions = [_version_row(v, s) for v, s in zip(values, submission_ids, strict=True)]
        inserted = self.session.execute(_insert_ignore_versions(self.session), versions).all()
        version_ids = {str(instance_id): int(version_id) for version_id, instance_id in inserted}
        if len(version_ids) != len(items):
            raise _BulkConflict(f"{len(items) - len(version_ids)} instance ids were stored concurrently")
        self.session.execute(insert(_AUDIT), [_audit_row(v, s) for v, s in zip(values, submission_ids, strict=True)])
        for c, s in zip(items, submission_ids, strict=True):
            record_event(
                self.session,
                self.project_id,
                "submission.created",
                f"submission:{s}",
                created_payload(s, version_ids[c.instance_id], c.instance_id, c.header.version),
                form_id=c.header.form_id,
            )
        self.written.extend((c, (s, version_ids[c.instance_id])) for c, s in zip(items, submission_ids, strict=True))


# How the values of a chain fill its rows: what ``q.insert_new_chains``'s statement does in SQL.
def _submission_row(values: dict[str, Any]) -> dict[str, Any]:
    return {
        **{name: values[name] for name in q.PLAIN_SUBMISSION_PARAMS},
        "current_instance_id": values["instance_id"],
        "review_state": "received",
        "edits": 0,
        "created_at": values["received_at"],
        "updated_at": values["received_at"],
    }


def _version_row(values: dict[str, Any], submission_id: int) -> dict[str, Any]:
    return {
        **{name: values[name] for name in q.PLAIN_VERSION_PARAMS},
        "submission_id": submission_id,
        "deprecated_id": None,
        "encrypted": False,
        "user_agent": None,
    }


def _audit_row(values: dict[str, Any], submission_id: int) -> dict[str, Any]:
    return {
        "at": values["received_at"],
        "actor": values["actor"],
        "action": "submission.create",
        "project_id": values["project_id"],
        "subject": f"submission:{submission_id}",
        "details": values["details"],
    }
