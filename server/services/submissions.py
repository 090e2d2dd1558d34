"""Submission use cases: ingest one submission (OpenRosa POST or JSON push item), read and review them.

The decisions (created, duplicate, edit, id conflict, closed or unknown form, missing files) are made by
``sync.submissions.decide_submission``; this module loads what the decision needs, applies it to the
store and reports the ``sync.outcomes`` value. Uniqueness of ``(project, form, instance_id)`` is the
database's job (``INSERT ... ON CONFLICT DO NOTHING``); a per-chain advisory lock on PostgreSQL keeps
edit chains consistent when their versions arrive concurrently (SQLite has a single writer).

Attachments: a version gets one row per file name its XML references; the bytes arrive with the
same POST, a later identical POST (``*isIncomplete*`` splits), a JSON push blob upload
(``attach_uploaded_blob``), or are carried over by file name from another version of the chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.orm import Session

from forms.errors import SubmissionError
from forms.record import SubmissionRecord
from forms.schema import FormSchema
from forms.schema_json import schema_from_json
from forms.submission import SubmissionHeader, parse_submission, read_submission_header
from server.auth import Principal
from server.blobstore import BlobStore
from server.blobstore import blob_store as blob_store_for
from server.db.base import utcnow
from server.db.models.submissions import (
    INSTANCE_ID_LENGTH,
    REVIEW_STATES,
    RefusedSubmission,
    Submission,
    SubmissionAttachment,
    SubmissionReview,
    SubmissionVersion,
)
from server.db.queries import audit
from server.db.queries import forms as fq
from server.db.queries import submissions as q
from server.db.queries.blobs import grant_blob
from server.db.queries.forms import DeviceTokenRow
from server.db.transaction import transaction
from server.db.upsert import insert_ignore
from server.errors import ApiError, not_found
from server.services import relays
from server.services.entities import apply_entity_changes
from server.services.outbox import created_payload, record_event
from server.store import get_store
from sync.entities import RelayedBase
from sync.outcomes import (
    FORM_NOT_ASSIGNED,
    ID_CONFLICT,
    SUBMISSION_DELETED,
    UNKNOWN_FORM,
    UNPARSEABLE_ITEM,
    AwaitingAttachments,
    Created,
    Duplicate,
    Quarantined,
    Rejected,
    Updated,
)
from sync.submissions import (
    AttachmentRef,
    FormInfo,
    FormState,
    IncomingSubmission,
    StoredSubmission,
    SubmissionOutcome,
    content_hash_xml,
    decide_submission,
    version_chain,
)
from sync.submissions import SubmissionVersion as ChainVersion

__all__ = [
    "AttachmentRef",
    "FileUpload",
    "IngestResult",
    "RoutedSubmission",
    "SubmissionDetail",
    "add_submission_file",
    "attach_uploaded_blob",
    "cached_schema",
    "delete_submission",
    "device_and_form_target",
    "get_attachment",
    "get_submission",
    "ingest_submission",
    "restore_submission",
    "review_submission",
    "submit_over_api",
]


@dataclass(frozen=True, slots=True)
class FileUpload:
    """A file delivered with a submission, already hashed and staged, not yet in the blob store.

    Exactly one of ``path`` (a staged file the service moves into the blob store when the file is
    kept) and ``data`` (the bytes in memory) is set.
    """

    name: str
    sha256: str
    size: int
    content_type: str = "application/octet-stream"
    path: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class RoutedSubmission:
    """A submission routed before its use case ran: its XML's header, instance id and hash, and its form target.

    ``device_and_form_target`` reads it; ``ingest_submission`` takes it back instead of reading the
    XML's header and hashing it a second time (profiled: 5 % of an OpenRosa POST's CPU went to the
    header read, done twice).
    """

    xml: bytes
    header: SubmissionHeader
    instance_id: str
    xml_sha256: str
    target: q.RoutedTarget


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingesting one submission did: the ``sync.outcomes`` value and where it was stored.

    ``missing_attachments`` are file names (OpenRosa) or the declared sha256 (JSON push) still absent.
    """

    outcome: SubmissionOutcome
    instance_id: str | None = None
    submission_id: int | None = None
    version_id: int | None = None
    form_id: str | None = None  # the XForm id of the submission's root
    form_version: str | None = None
    missing_attachments: tuple[str, ...] = ()


# (form_version pk, XForm sha256) -> schema: a version never changes, so every worker may keep it; the
# hash guards against a primary key reused after a rollback (SQLite reuses the highest freed id).
_SCHEMAS: dict[tuple[int, str | None], FormSchema] = {}


def _schema(session: Session, version_pk: int, xform_sha256: str | None) -> FormSchema | None:
    schema = _SCHEMAS.get((version_pk, xform_sha256))
    if schema is None:
        data = q.get_schema_json(session, version_pk)
        if data is None:
            return None
        schema = _SCHEMAS[(version_pk, xform_sha256)] = schema_from_json(data)
    return schema


def cached_schema(session: Session, version_pk: int, xform_sha256: str | None) -> FormSchema | None:
    """Return the parsed schema of a form version, from this worker's cache when it holds it."""
    return _schema(session, version_pk, xform_sha256)


def blob_store() -> BlobStore:
    """Return the app's blob store (the configured folder or bucket)."""
    return blob_store_for(get_store().storage_dir)


@dataclass(frozen=True, slots=True)
class _Who:
    submitter_id: int | None
    device_token_id: int | None
    device_id: str | None
    user_agent: str | None
    source: str
    actor: str
    assigned_only: bool = False  # an app user: only the forms assigned to it are accepted


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value else None


def ingest_submission(
    session: Session,
    *,
    project_id: int,
    xml: bytes,
    files: Mapping[str, FileUpload],
    principal: Principal,
    device_id: str | None,
    source: Literal["openrosa", "push", "api"],
    declared_attachments: Sequence[AttachmentRef] = (),
    nested: bool = False,
    user_agent: str | None = None,
    routed: q.RoutedTarget | RoutedSubmission | None = None,
    relayed_bases: Mapping[str, RelayedBase] | None = None,
) -> IngestResult:
    """Store one submission (or add its files) and return its outcome; own transaction, or a SAVEPOINT if ``nested``.

    Nothing is written for a rejected or quarantined item except an id conflict's refused payload
    (kept for review); the push door keeps quarantined payloads itself. ``files`` are keyed by the
    file name the XML references; files the XML does not reference are ignored. ``routed`` is the
    form target this transaction already read (``device_and_form_target``); it is used when it
    serves this submission's routing, else the target is read again. ``relayed_bases`` (an office
    relay's push) are the contexts the office gave the submission's entity ops.
    """
    if isinstance(routed, RoutedSubmission) and routed.xml == xml:
        header, instance_id, xml_sha, target = routed.header, routed.instance_id, routed.xml_sha256, routed.target
    else:
        routing = _routing(xml)
        if isinstance(routing, IngestResult):
            return routing
        header, instance_id, xml_sha = routing
        target = routed if isinstance(routed, q.RoutedTarget) else None
    who = _Who(
        principal.id if principal.kind == "user" else None,
        principal.id if principal.kind == "device" else None,
        _clip(device_id, 255),
        _clip(user_agent, 500),
        source,
        principal.actor,
        principal.kind == "device" and principal.form_access == "assigned",
    )
    ingest = _Ingest(session, project_id, header, instance_id, xml, xml_sha, files, declared_attachments, who, target)
    ingest.relayed_bases = relayed_bases
    if nested:
        with session.begin_nested():
            return ingest.run()
    with transaction(session):
        return ingest.run()


def device_and_form_target(
    session: Session, token_hash: str, project_id: int, xml: bytes
) -> tuple[DeviceTokenRow, RoutedSubmission] | None:
    """Read an access token and the form target of a submission in one query, taking its chain locks.

    ``None`` when no token has this hash or the XML names no routing (the caller then authenticates
    the usual way, and ``ingest_submission`` reports what is wrong with the XML). The read opens the
    transaction that ``ingest_submission`` continues.
    """
    routing = _routing(xml)
    if isinstance(routing, IngestResult):
        return None
    header, instance_id, xml_sha = routing
    found = q.get_token_and_form_target(
        session, token_hash, project_id, header.form_id, header.version, _chain_ids(header, instance_id)
    )
    if found is None:
        return None
    row, target = found
    return row, RoutedSubmission(xml, header, instance_id, xml_sha, target)


def _routing(xml: bytes) -> tuple[SubmissionHeader, str, str] | IngestResult:
    """The header, instance id and XML hash of a submission; the rejection when it cannot be routed."""
    try:
        header = read_submission_header(xml)
    except SubmissionError as exc:
        return IngestResult(Rejected(UNPARSEABLE_ITEM, f"{exc.code}: {exc.message}"))
    xml_sha = content_hash_xml(xml)
    if header.instance_id is None:
        if header.encrypted:
            return IngestResult(
                Rejected(UNPARSEABLE_ITEM, "no_instance_id: an encrypted submission needs meta/instanceID"),
                form_id=header.form_id,
                form_version=header.version,
            )
        # Submissions from before meta/instanceID existed: the content names itself (retries stay idempotent).
        header = dataclasses.replace(header, instance_id=f"sha256:{xml_sha}")
    instance_id = header.instance_id
    assert instance_id is not None
    if len(instance_id) > INSTANCE_ID_LENGTH or len(header.deprecated_id or "") > INSTANCE_ID_LENGTH:
        return IngestResult(
            Rejected(
                UNPARSEABLE_ITEM, f"instance_id_too_long: instance ids have at most {INSTANCE_ID_LENGTH} characters"
            ),
            instance_id=instance_id[:INSTANCE_ID_LENGTH],
            form_id=header.form_id,
            form_version=header.version,
        )
    return header, instance_id, xml_sha


def _chain_ids(header: SubmissionHeader, instance_id: str) -> list[str]:
    """The instance ids whose edit chain a submission joins: its own and the one it replaces."""
    return [instance_id] + ([header.deprecated_id] if header.deprecated_id else [])


class _Ingest:
    """One ingestion inside its transaction (a class only to share the many inputs between steps)."""

    def __init__(
        self,
        session: Session,
        project_id: int,
        header: SubmissionHeader,
        instance_id: str,
        xml: bytes,
        xml_sha: str,
        files: Mapping[str, FileUpload],
        declared: Sequence[AttachmentRef],
        who: _Who,
        routed: q.RoutedTarget | None = None,
    ) -> None:
        self.session = session
        self.project_id = project_id
        self.header = header
        self.instance_id = instance_id
        self.xml = xml
        self.xml_sha = xml_sha
        self.files = files
        self.declared = tuple(declared)
        self.who = who
        self.routed = routed
        self.form_pk = 0
        self._adopted: set[str] = set()
        # The one-statement path needs data-modifying CTEs (PostgreSQL); SQLite takes the general path.
        self.fast = session.get_bind().dialect.name == "postgresql"
        self.parsed: SubmissionRecord | None = None  # parsed once, kept if the general path follows
        self.relayed_bases: Mapping[str, RelayedBase] | None = None  # an office relay's entity contexts

    def result(
        self, outcome: SubmissionOutcome, submission_id: int | None = None, version_id: int | None = None
    ) -> IngestResult:
        missing = outcome.missing if isinstance(outcome, AwaitingAttachments) else ()
        return IngestResult(
            outcome, self.instance_id, submission_id, version_id, self.header.form_id, self.header.version, missing
        )

    def run(self) -> IngestResult:
        header, session = self.header, self.session
        deprecated_id = header.deprecated_id
        chain_ids = _chain_ids(header, self.instance_id)
        # Locks the edit chain of these ids on PostgreSQL: a new version, its predecessor and its
        # successors are then read and written by one writer at a time.
        routed = self.routed
        if routed is not None and routed.serves(self.project_id, header.form_id, header.version, chain_ids):
            target = routed.target
        else:
            target = q.get_form_target(session, self.project_id, header.form_id, header.version, chain_ids)
        if target is None:
            return self.result(Quarantined(UNKNOWN_FORM, f"form {header.form_id!r} is not known in this project"))
        self.form_pk = target.form_pk
        if self.who.assigned_only and not fq.app_user_has_form(session, self.who.device_token_id or 0, target.form_pk):
            return self.result(Rejected(FORM_NOT_ASSIGNED, f"form {header.form_id!r} is not one of this phone's forms"))
        if not self.declared and target.stores_identical(self.xml_sha):
            # An identical resend (Collect lost our answer): the routing read already holds all it needs.
            # Today's full path would decide the same Duplicate and write nothing; this skips parsing
            # the XML and reading its relatives. Files sent again are ignored: the version has them all.
            return self.result(Duplicate(), target.stored_submission_id, target.stored_version_id)
        form_info = FormInfo(
            header.form_id,
            cast(FormState, target.state),
            frozenset({header.version}) if target.version_pk is not None else frozenset(),
        )
        if deprecated_id is None and target.state != "closed" and target.version_pk is not None and self.fast:
            fresh = self.fresh_chain(target.version_pk, target.version_sha256, form_info)
            if fresh is not None:
                return fresh
        related = q.related_versions(session, self.project_id, target.form_pk, self.instance_id, deprecated_id)
        # Only an instance id already stored (a resend, an edit, a late original) can touch a deleted
        # submission: a new instance never gets here with relatives, so it pays nothing for this.
        if related and q.deleted_among(session, [r.submission_id for r in related]):
            return self.result(
                Rejected(SUBMISSION_DELETED, f"instance {self.instance_id} belongs to a deleted submission")
            )
        same = next((r for r in related if r.instance_id == self.instance_id), None)
        if same is not None:
            return self.again(same, form_info)
        if target.state == "closed" or target.version_pk is None:
            # Refused before anything is parsed or written (decide_submission says which way).
            incoming = IncomingSubmission(self.instance_id, header.form_id, header.version, self.xml_sha, deprecated_id)
            return self.result(decide_submission(incoming, None, form_info))
        record = self.parsed
        if record is None:
            try:
                record = parse_submission(
                    self.xml,
                    _schema(session, target.version_pk, target.version_sha256),
                    instance_id_fallback=self.instance_id,
                )
            except SubmissionError as exc:
                return self.result(Rejected(UNPARSEABLE_ITEM, f"{exc.code}: {exc.message}"))
        incoming, declared, present = self.incoming(record, header.form_id, header.version, deprecated_id)
        predecessor_known = any(r.instance_id == deprecated_id for r in related)
        outcome = decide_submission(
            incoming, None, form_info, present_blobs=present, predecessor_known=predecessor_known
        )
        accepted = outcome.accepted if isinstance(outcome, AwaitingAttachments) else outcome
        if not isinstance(accepted, Created | Updated):
            return self.result(outcome)
        stored = self.store_version(target.version_pk, record, related, declared, present)
        if stored is None:
            # Another writer stored this instance between our read and our insert: ours is a retry of it.
            again = q.related_versions(session, self.project_id, target.form_pk, self.instance_id, None)
            return self.again(next(r for r in again if r.instance_id == self.instance_id), form_info)
        submission_id, version_id, missing = stored
        record_event(
            session,
            self.project_id,
            "submission.updated" if deprecated_id else "submission.created",
            f"submission:{submission_id}",
            created_payload(submission_id, version_id, self.instance_id, header.version),
            form_id=header.form_id,
        )
        relays.enqueue_for_upstream(session, self.project_id, version_id)
        if record.entities:
            apply_entity_changes(
                session, self.project_id, record, version_id, self.who.actor, relayed=self.relayed_bases
            )
        audit.record(
            session,
            self.who.actor,
            "submission.update" if deprecated_id else "submission.create",
            self.project_id,
            f"submission:{submission_id}",
            self.audit_details(),
        )
        final: SubmissionOutcome = AwaitingAttachments(missing=missing, accepted=accepted) if missing else accepted
        return self.result(final, submission_id, version_id)

    def fresh_chain(self, version_pk: int, version_sha256: str | None, form_info: FormInfo) -> IngestResult | None:
        """The common case in one write statement: a first version of a new instance (PostgreSQL).

        ``None`` (nothing written) when the XML does not parse, the decision is not a plain creation,
        or the instance id turns out to be stored or replaced already: the general path then decides.
        """
        session, header, who = self.session, self.header, self.who
        try:
            record = parse_submission(
                self.xml, _schema(session, version_pk, version_sha256), instance_id_fallback=self.instance_id
            )
        except SubmissionError:
            return None
        self.parsed = record
        incoming, declared, present = self.incoming(record, header.form_id, header.version, None)
        outcome = decide_submission(incoming, None, form_info, present_blobs=present, predecessor_known=False)
        accepted = outcome.accepted if isinstance(outcome, AwaitingAttachments) else outcome
        if not isinstance(accepted, Created):
            return None
        rows = self.attachment_rows(record, declared, present)
        now = rows[0]["created_at"] if rows else utcnow()
        values = {
            "project_id": self.project_id,
            "form_id": self.form_pk,
            "submitter_id": who.submitter_id,
            "device_token_id": who.device_token_id,
            "attachments_expected": len(rows),
            "attachments_present": sum(1 for row in rows if row["blob_sha256"]),
            **self.version_values(version_pk, record, now),
            "xml_form_id": header.form_id,
        }
        # With entities the audit event follows theirs, as on the general path.
        event = (
            None
            if record.entities
            else {"actor": who.actor, "action": "submission.create", "details": self.audit_details()}
        )
        stored = q.insert_new_chain(session, values, event)
        if stored is None:
            return None
        submission_id, version_id = stored
        if rows:
            session.execute(insert(_ATTACHMENTS), [{**row, "version_id": version_id} for row in rows])
        if record.entities:
            apply_entity_changes(session, self.project_id, record, version_id, who.actor, relayed=self.relayed_bases)
            audit.record(
                session,
                who.actor,
                "submission.create",
                self.project_id,
                f"submission:{submission_id}",
                self.audit_details(),
            )
        missing = tuple(sorted(str(row["declared_sha256"] or row["name"]) for row in rows if not row["blob_sha256"]))
        final: SubmissionOutcome = AwaitingAttachments(missing=missing, accepted=accepted) if missing else accepted
        return self.result(final, submission_id, version_id)

    def audit_details(self) -> dict[str, Any]:
        """The details of a ``submission.create``/``submission.update`` audit event."""
        return {"form": self.header.form_id, "instance_id": self.instance_id, "source": self.who.source}

    def attachment_rows(
        self, record: SubmissionRecord, declared: Sequence[AttachmentRef], present: set[str]
    ) -> list[dict[str, Any]]:
        """Return the attachment rows of a new version, moving the delivered files into the blob store."""
        now = utcnow()
        expected = record.attachments
        files_by_name = {f.name: f for f in self.files.values() if f.name in expected}
        declared_by_name = {ref.name: ref.sha256 for ref in declared}
        rows = []
        for name in expected:
            upload = files_by_name.get(name)
            declared_sha = declared_by_name.get(name)
            sha = upload.sha256 if upload else (declared_sha if declared_sha in present else None)
            rows.append({"name": name, "blob_sha256": sha, "declared_sha256": declared_sha, "created_at": now})
        for upload in files_by_name.values():
            self.adopt(upload)
        return rows

    def version_values(self, version_pk: int, record: SubmissionRecord, now: datetime) -> dict[str, Any]:
        """Return the columns of a new ``submission_versions`` row (all but ``submission_id``)."""
        who = self.who
        return {
            "project_id": self.project_id,
            "form_id": self.form_pk,
            "form_version_id": version_pk,
            "instance_id": self.instance_id,
            "deprecated_id": record.deprecated_id,
            "form_version": self.header.version,
            "xml": self.xml,
            "xml_sha256": self.xml_sha,
            "record": dict(record.values),
            "instance_name": record.instance_name,
            "encrypted": record.encrypted,
            "source": who.source,
            "received_at": now,
            "submitter_id": who.submitter_id,
            "device_token_id": who.device_token_id,
            "device_id": who.device_id,
            "user_agent": who.user_agent,
        }

    def incoming(
        self, record: SubmissionRecord, form_id: str, version: str, deprecated_id: str | None
    ) -> tuple[IncomingSubmission, tuple[AttachmentRef, ...], set[str]]:
        """Describe a freshly parsed version for the pure decision: its files, declared blobs and those present."""
        expected = tuple(record.attachments)
        delivered = self.delivered_refs(expected)
        declared = tuple(ref for ref in self.declared if ref.name in expected)
        declared_shas = [ref.sha256 for ref in declared]
        present = {ref.sha256 for ref in delivered} | q.present_blobs(self.session, self.project_id, declared_shas)
        incoming = IncomingSubmission(
            self.instance_id,
            form_id,
            version,
            self.xml_sha,
            deprecated_id,
            expected_attachments=expected,
            attachments=(*delivered, *declared),
        )
        return incoming, declared, present

    def delivered_refs(self, expected: Sequence[str]) -> tuple[AttachmentRef, ...]:
        wanted = set(expected)
        return tuple(AttachmentRef(f.name, f.sha256, f.size) for f in self.files.values() if f.name in wanted)

    def adopt(self, upload: FileUpload) -> None:
        """Move a delivered file into the blob store (once per content)."""
        if upload.sha256 in self._adopted:
            return
        blobs = blob_store()
        if upload.path is not None and upload.path.exists():
            blobs.adopt_file(self.session, upload.path, upload.sha256, upload.size, upload.content_type)
        elif upload.data is not None:
            blobs.put_bytes(self.session, upload.data, upload.content_type)
        elif blobs.has_file(upload.sha256):
            # The staged file was already moved into place (same content under two names).
            blobs.record_present(self.session, upload.sha256, upload.size, upload.content_type)
        else:
            raise ApiError(500, "staged_file_lost", f"the staged file {upload.name!r} disappeared")
        # The project delivered these bytes (hashed by us on arrival): it may reference them from now on.
        grant_blob(self.session, self.project_id, upload.sha256)
        self._adopted.add(upload.sha256)

    def store_version(
        self,
        version_pk: int,
        record: SubmissionRecord,
        related: Sequence[q.RelatedVersion],
        declared: Sequence[AttachmentRef],
        present: set[str],
    ) -> tuple[int, int, tuple[str, ...]] | None:
        """Insert the version (and its submission when it starts a new chain); ``None`` if it already existed."""
        session, who = self.session, self.who
        rows = self.attachment_rows(record, declared, present)
        now = rows[0]["created_at"] if rows else utcnow()
        chain_ids = sorted({r.submission_id for r in related})
        new_chain = not chain_ids
        if new_chain:
            submission_id: int = session.execute(
                insert(Submission)
                .values(
                    project_id=self.project_id,
                    form_id=self.form_pk,
                    instance_id=self.instance_id,
                    current_instance_id=self.instance_id,
                    review_state="received",
                    edits=0,
                    submitter_id=who.submitter_id,
                    device_token_id=who.device_token_id,
                    attachments_expected=len(rows),
                    attachments_present=sum(1 for row in rows if row["blob_sha256"]),
                    created_at=now,
                    updated_at=now,
                )
                .returning(Submission.id)
            ).scalar_one()
        else:
            submission_id = chain_ids[0]
            q.lock_submissions(session, chain_ids)
            if len(chain_ids) > 1:
                _merge_chains(session, submission_id, chain_ids[1:])
        version_id: int | None = insert_ignore(
            session,
            cast(Any, SubmissionVersion.__table__),
            {"submission_id": submission_id, **self.version_values(version_pk, record, now)},
            ["project_id", "form_id", "instance_id"],
            returning="id",
        )
        if version_id is None:
            if new_chain:
                session.execute(delete(Submission).where(Submission.id == submission_id))
            return None
        if rows:
            session.execute(insert(_ATTACHMENTS), [{**row, "version_id": version_id} for row in rows])
        if new_chain:
            missing = tuple(
                sorted(str(row["declared_sha256"] or row["name"]) for row in rows if not row["blob_sha256"])
            )
            return submission_id, version_id, missing
        _carry_over_attachments(session, submission_id)
        _refresh_chain(session, submission_id)
        return submission_id, version_id, _missing_of(session, version_id)

    def again(self, same: q.RelatedVersion, form_info: FormInfo) -> IngestResult:
        """The instance id is stored: an identical retry (maybe with more files) or an id conflict."""
        session = self.session
        stored_rows = q.version_attachments(session, [same.id])
        expected = [name for _, name, _ in stored_rows]
        stored = StoredSubmission(
            self.instance_id,
            same.xml_sha256,
            tuple(AttachmentRef(name, sha) for _, name, sha in stored_rows if sha is not None),
        )
        delivered = self.delivered_refs(expected)
        declared = tuple(ref for ref in self.declared if ref.name in expected)
        present = {ref.sha256 for ref in stored.attachments} | {ref.sha256 for ref in delivered}
        present |= q.present_blobs(session, self.project_id, [ref.sha256 for ref in declared])
        incoming = IncomingSubmission(
            self.instance_id,
            self.header.form_id,
            self.header.version,
            self.xml_sha,
            self.header.deprecated_id,
            expected_attachments=tuple(expected),
            attachments=(*delivered, *declared),
        )
        outcome = decide_submission(incoming, stored, form_info, present_blobs=present)
        if isinstance(outcome, Rejected):
            if outcome.reason == ID_CONFLICT:
                self.keep_refused(outcome.reason)
            return self.result(outcome, same.submission_id, same.id)
        duplicate = outcome.accepted if isinstance(outcome, AwaitingAttachments) else outcome
        if not isinstance(duplicate, Duplicate):  # decide_submission never says otherwise for a stored id
            return self.result(outcome, same.submission_id, same.id)
        to_add = set(duplicate.attachments_to_add)
        changes: list[dict[str, Any]] = []
        for upload in self.files.values():
            if upload.name in to_add:
                self.adopt(upload)
                changes.append({"v": same.id, "n": upload.name, "sha": upload.sha256})
        for ref in declared:
            if ref.name in to_add and ref.sha256 in present and ref.name not in {c["n"] for c in changes}:
                changes.append({"v": same.id, "n": ref.name, "sha": ref.sha256})
        if declared:
            session.execute(
                update(_ATTACHMENTS)
                .where(
                    _ATTACHMENTS.c.version_id == same.id,
                    _ATTACHMENTS.c.name == _bind("n"),
                    _ATTACHMENTS.c.declared_sha256.is_(None),
                )
                .values(declared_sha256=_bind("sha")),
                [{"n": ref.name, "sha": ref.sha256} for ref in declared],
            )
        if not changes:
            return self.result(outcome, same.submission_id, same.id)
        session.execute(
            update(_ATTACHMENTS)
            .where(
                _ATTACHMENTS.c.version_id == _bind("v"),
                _ATTACHMENTS.c.name == _bind("n"),
                _ATTACHMENTS.c.blob_sha256.is_(None),
            )
            .values(blob_sha256=_bind("sha")),
            changes,
        )
        q.lock_submissions(session, [same.submission_id])
        _carry_over_attachments(session, same.submission_id)
        q.refresh_attachment_counts(session, same.submission_id)
        audit.record(
            session,
            self.who.actor,
            "submission.attachments",
            self.project_id,
            f"submission:{same.submission_id}",
            {"instance_id": self.instance_id, "added": sorted(c["n"] for c in changes)},
        )
        missing = _missing_of(session, same.id)
        final: SubmissionOutcome = AwaitingAttachments(missing=missing, accepted=duplicate) if missing else duplicate
        return self.result(final, same.submission_id, same.id)

    def keep_refused(self, reason: str) -> None:
        """Keep a refused payload for review, once per distinct content."""
        insert_ignore(
            self.session,
            cast(Any, RefusedSubmission.__table__),
            {
                "project_id": self.project_id,
                "form_id": self.form_pk,
                "instance_id": self.instance_id,
                "reason": reason,
                "xml": self.xml,
                "xml_sha256": self.xml_sha,
                "source": self.who.source,
                "received_at": utcnow(),
                "submitter_id": self.who.submitter_id,
                "device_token_id": self.who.device_token_id,
                "device_id": self.who.device_id,
            },
            ["project_id", "form_id", "instance_id", "xml_sha256"],
        )


# Core tables for executemany statements (the ORM refuses bulk UPDATEs with extra WHERE criteria).
_ATTACHMENTS = cast(Any, SubmissionAttachment.__table__)


def _bind(name: str) -> Any:
    return bindparam(name)


def _merge_chains(session: Session, keep: int, others: Sequence[int]) -> None:
    """Fold submissions that turned out to be one edit chain into the oldest one."""
    session.execute(
        update(SubmissionVersion).where(SubmissionVersion.submission_id.in_(others)).values(submission_id=keep)
    )
    session.execute(
        update(SubmissionReview).where(SubmissionReview.submission_id.in_(others)).values(submission_id=keep)
    )
    session.execute(delete(Submission).where(Submission.id.in_(others)))


def _carry_over_attachments(session: Session, submission_id: int) -> None:
    """Give every version of a chain the files another version already has under the same name."""
    rows = q.chain_attachments(session, submission_id)
    by_name: dict[str, str] = {}
    for _, name, sha in sorted(rows, key=lambda r: r[0]):
        if sha is not None:
            by_name.setdefault(name, sha)
    fills = [{"v": vid, "n": name, "sha": by_name[name]} for vid, name, sha in rows if sha is None and name in by_name]
    if fills:
        session.execute(
            update(_ATTACHMENTS)
            .where(
                _ATTACHMENTS.c.version_id == _bind("v"),
                _ATTACHMENTS.c.name == _bind("n"),
                _ATTACHMENTS.c.blob_sha256.is_(None),
            )
            .values(blob_sha256=_bind("sha")),
            fills,
        )


def _refresh_chain(session: Session, submission_id: int) -> None:
    """Recompute a chain's root, current version, edit count and attachment counts."""
    versions = q.chain_versions(session, submission_id)
    chain = version_chain(ChainVersion(instance_id, deprecated_id) for _, instance_id, deprecated_id in versions)
    session.execute(
        update(Submission)
        .where(Submission.id == submission_id)
        .values(
            instance_id=chain.ordered[0],
            current_instance_id=chain.current,
            edits=len(versions) - 1,
            updated_at=utcnow(),
        )
    )
    q.refresh_attachment_counts(session, submission_id)


def _missing_of(session: Session, version_id: int) -> tuple[str, ...]:
    rows = q.missing_attachments(session, version_id)
    return tuple(sorted(declared or name for name, declared in rows))


def attach_uploaded_blob(session: Session, project_id: int, sha256: str) -> int:
    """Mark a freshly uploaded blob present wherever a pushed submission of the project declared it.

    Runs inside the caller's transaction; returns how many attachment rows it completed.
    """
    submission_ids = q.fill_declared_attachment(session, project_id, sha256)
    for submission_id in submission_ids:
        _carry_over_attachments(session, submission_id)
        q.refresh_attachment_counts(session, submission_id)
    return len(submission_ids)


# ---------------------------------------------------------------------------------------------------
# Reading and reviewing


@dataclass(frozen=True, slots=True)
class SubmissionDetail:
    """A submission with its versions in edit order (current last), their files, and its reviews."""

    submission: Submission
    xml_form_id: str
    versions: list[SubmissionVersion]
    attachments: dict[int, list[SubmissionAttachment]]
    reviews: list[SubmissionReview]

    @property
    def current(self) -> SubmissionVersion:
        """The current version."""
        return self.versions[-1]


def _form_pk(session: Session, project_id: int, xml_form_id: str) -> int:
    form_pk = q.get_form_pk(session, project_id, xml_form_id)
    if form_pk is None:
        raise not_found("form", form_id=xml_form_id)
    return form_pk


def get_submission(
    session: Session, project_id: int, xml_form_id: str, instance_id: str, *, deleted: bool = False
) -> SubmissionDetail:
    """Return the submission one of whose versions is ``instance_id`` (``404`` when none is).

    A deleted submission is ``404`` too unless ``deleted`` is set.
    """
    form_pk = _form_pk(session, project_id, xml_form_id)
    submission = q.find_submission(session, project_id, form_pk, instance_id)
    if submission is None or (submission.deleted_at is not None and not deleted):
        raise not_found("submission", instance_id=instance_id)
    versions = q.list_versions(session, submission.id)
    chain = version_chain(ChainVersion(v.instance_id, v.deprecated_id) for v in versions)
    by_id = {v.instance_id: v for v in versions}
    ordered = [by_id[i] for i in chain.ordered]
    attachments: dict[int, list[SubmissionAttachment]] = {v.id: [] for v in ordered}
    for attachment in q.list_attachments(session, [v.id for v in ordered]):
        attachments[attachment.version_id].append(attachment)
    return SubmissionDetail(submission, xml_form_id, ordered, attachments, q.list_reviews(session, submission.id))


def get_attachment(
    session: Session, project_id: int, xml_form_id: str, instance_id: str, name: str
) -> SubmissionAttachment:
    """Return a present attachment of version ``instance_id`` (or of its chain's current version)."""
    detail = get_submission(session, project_id, xml_form_id, instance_id)
    version = next((v for v in detail.versions if v.instance_id == instance_id), detail.current)
    for candidate in (version, detail.current):
        for attachment in detail.attachments[candidate.id]:
            if attachment.name == name and attachment.blob_sha256 is not None:
                return attachment
    raise not_found("attachment", name=name)


def review_submission(
    session: Session,
    *,
    project_id: int,
    xml_form_id: str,
    instance_id: str,
    review_state: str | None,
    comment: str | None,
    principal: Principal,
    seen: int | None = None,
    request_key: str | None = None,
) -> SubmissionDetail:
    """Change a submission's review state and/or comment on it; every change is recorded and audited.

    ``seen`` is the number of reviews the sender's page showed: when a review this same person made
    since then says exactly the same (a form sent twice, a retried request), nothing is written again.
    ``request_key`` (an API request's ``Idempotency-Key``) names the review: the same key from the same
    person on this submission writes nothing again (the database's unique key decides, not a read).
    """
    if review_state is not None and review_state not in REVIEW_STATES:
        raise ApiError(400, "invalid_input", f"unknown review state {review_state!r}")
    with transaction(session):
        detail = get_submission(session, project_id, xml_form_id, instance_id)
        submission = detail.submission
        # The row lock orders two sends of one form: the second sees the first's review.
        q.deleted_among(session, [submission.id])
        if seen is not None and _already_reviewed(session, submission.id, seen, principal.actor, review_state, comment):
            return detail
        before = submission.review_state
        after = review_state or before
        written = insert_ignore(
            session,
            cast(Any, SubmissionReview.__table__),
            {
                "submission_id": submission.id,
                "from_state": before,
                "to_state": after,
                "comment": comment,
                "actor": principal.actor,
                "at": utcnow(),
                "request_key": request_key,
            },
            ["submission_id", "actor", "request_key"],
            returning="id",
        )
        if written is None:
            return detail  # this request was applied before: its review is already there
        submission.review_state = after
        submission.updated_at = utcnow()
        record_event(
            session,
            project_id,
            "submission.reviewed",
            f"submission:{submission.id}",
            {
                "submission_id": submission.id,
                "instance_id": submission.current_instance_id,
                "from": before,
                "to": after,
                "comment": comment,
                "actor": principal.actor,
            },
            form_id=xml_form_id,
        )
        audit.record(
            session,
            principal.actor,
            "submission.review",
            project_id,
            f"submission:{submission.id}",
            {"instance_id": submission.current_instance_id, "from": before, "to": after, "comment": comment},
        )
    return get_submission(session, project_id, xml_form_id, instance_id)


def _already_reviewed(
    session: Session, submission_id: int, seen: int, actor: str, review_state: str | None, comment: str | None
) -> bool:
    since = q.list_reviews(session, submission_id)[max(seen, 0) :]
    return any(
        r.actor == actor and r.comment == comment and (review_state is None or r.to_state == review_state)
        for r in since
    )


def delete_submission(
    session: Session, *, project_id: int, xml_form_id: str, instance_id: str, principal: Principal
) -> SubmissionDetail:
    """Soft-delete a submission (every version of its chain); audited. Deleting it again changes nothing."""
    _set_deleted(session, project_id, xml_form_id, instance_id, principal, deleted=True)
    return get_submission(session, project_id, xml_form_id, instance_id, deleted=True)


def restore_submission(
    session: Session, *, project_id: int, xml_form_id: str, instance_id: str, principal: Principal
) -> SubmissionDetail:
    """Bring a soft-deleted submission back; audited. Restoring a live submission changes nothing."""
    _set_deleted(session, project_id, xml_form_id, instance_id, principal, deleted=False)
    return get_submission(session, project_id, xml_form_id, instance_id)


def _set_deleted(
    session: Session, project_id: int, xml_form_id: str, instance_id: str, principal: Principal, *, deleted: bool
) -> None:
    with transaction(session):
        submission = get_submission(session, project_id, xml_form_id, instance_id, deleted=True).submission
        # The row lock orders this against an ingestion of the same chain (see q.deleted_among).
        if bool(q.deleted_among(session, [submission.id])) == deleted:
            return  # already so: nothing written, nothing audited
        session.refresh(submission)
        submission.deleted_at = utcnow() if deleted else None
        submission.deleted_by = principal.actor if deleted else None
        record_event(
            session,
            project_id,
            "submission.deleted" if deleted else "submission.restored",
            f"submission:{submission.id}",
            {"submission_id": submission.id, "instance_id": submission.current_instance_id, "actor": principal.actor},
            form_id=xml_form_id,
        )
        audit.record(
            session,
            principal.actor,
            "submission.delete" if deleted else "submission.restore",
            project_id,
            f"submission:{submission.id}",
            {"form": xml_form_id, "instance_id": submission.instance_id},
        )


# ---------------------------------------------------------------------------------------------------
# ODK Central's REST doors: create, edit, add a file


def submit_over_api(
    session: Session,
    *,
    project_id: int,
    xml_form_id: str,
    xml: bytes,
    files: Mapping[str, FileUpload],
    principal: Principal,
    device_id: str | None = None,
    user_agent: str | None = None,
    edit_of: str | None = None,
) -> IngestResult:
    """Store a submission sent to ``.../forms/{xml_form_id}/submissions`` (or, with ``edit_of``, an edit of it).

    The XML must belong to the form of the URL (``400`` otherwise). An edit must name, as its
    ``deprecatedID``, the current version of the submission ``edit_of`` (``409 stale_edit`` when another
    edit came first: the chain is locked while this is checked, so two edits of one version cannot both
    pass). The ingestion then decides as for any other door, inside this one transaction.
    """
    try:
        header = read_submission_header(xml)
    except SubmissionError as exc:
        raise ApiError(400, "unparseable_item", f"The submission cannot be read: {exc.code}: {exc.message}") from None
    if header.form_id != xml_form_id:
        raise ApiError(
            400,
            "invalid_form_id",
            f"The submission is for the form {header.form_id!r}, not {xml_form_id!r}",
            {"form_id": header.form_id, "expected": xml_form_id},
        )
    with transaction(session):
        if edit_of is not None:
            detail = get_submission(session, project_id, xml_form_id, edit_of)
            q.deleted_among(session, [detail.submission.id])  # the row lock: one edit of a version at a time
            current = detail.submission.current_instance_id
            if header.deprecated_id is None:
                raise ApiError(
                    400, "no_deprecated_id", "An edit names the version it replaces in meta/deprecatedID", {}
                )
            if header.deprecated_id not in {v.instance_id for v in detail.versions}:
                raise ApiError(
                    404,
                    "unknown_deprecated_id",
                    f"{header.deprecated_id!r} is not a version of the submission {edit_of!r}",
                    {"deprecated_id": header.deprecated_id},
                )
            if header.deprecated_id != current and header.instance_id not in {v.instance_id for v in detail.versions}:
                raise ApiError(
                    409,
                    "stale_edit",
                    f"The edit replaces {header.deprecated_id!r}, but the current version is {current!r}: "
                    "read the submission again and edit its current version",
                    {"deprecated_id": header.deprecated_id, "current_instance_id": current},
                )
        return ingest_submission(
            session,
            project_id=project_id,
            xml=xml,
            files=files,
            principal=principal,
            device_id=device_id,
            source="api",
            user_agent=user_agent,
            nested=True,
        )


def add_submission_file(
    session: Session,
    *,
    project_id: int,
    xml_form_id: str,
    instance_id: str,
    upload: FileUpload,
    principal: Principal,
) -> IngestResult | None:
    """Give the current version of a submission one of the files its XML names (Central's attachment upload).

    ``404`` for a name the XML does not reference; sending the same bytes again changes nothing
    (``None``); other bytes for a file already present are ``409`` (a stored file is never replaced).
    The file joins as a resend of the version's XML with that file would (same checks, same audit).
    """
    with transaction(session):
        detail = get_submission(session, project_id, xml_form_id, instance_id)
        current = detail.current
        stored = next((a for a in detail.attachments[current.id] if a.name == upload.name), None)
        if stored is None:
            raise not_found("attachment", name=upload.name)
        if stored.blob_sha256 == upload.sha256:
            return None
        if stored.blob_sha256 is not None:
            raise ApiError(
                409,
                "attachment_present",
                f"The file {upload.name!r} of this submission is already stored with other content",
                {"name": upload.name},
            )
        return ingest_submission(
            session,
            project_id=project_id,
            xml=current.xml,
            files={upload.name: upload},
            principal=principal,
            device_id=current.device_id,
            source="api",
            nested=True,
        )
