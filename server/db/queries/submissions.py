"""Queries of the submissions area: routing a submission to its form, its stored relatives, listing, reading.

Every function takes the session first and never commits. Ingestion reads through lean column
selects (no ORM identity map) so one submission costs a handful of round trips.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    null,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from server.db import pipeline
from server.db.advisory import STORE_SALT, STORE_SALT_SQL
from server.db.models.accounts import AccessToken
from server.db.models.audit import AuditEvent
from server.db.models.forms import Form, FormVersion
from server.db.models.submissions import (
    Submission,
    SubmissionAttachment,
    SubmissionReview,
    SubmissionVersion,
)
from server.db.queries.forms import TOKEN_COLUMNS, DeviceTokenRow
from server.db.queries.outbox import event_insert, kind_pattern


@dataclass(frozen=True, slots=True)
class FormTarget:
    """The form a submission names, its state, and the matching published version (if any)."""

    form_pk: int
    state: str
    version_pk: int | None
    version_sha256: str | None  # of the XForm: with the pk, the key of the parsed-schema cache
    # The stored version of the submission's own instance id in this form, when there is one: what an
    # identical resend is answered from without parsing its XML or reading its relatives.
    stored_version_id: int | None = None
    stored_submission_id: int | None = None
    stored_xml_sha256: str | None = None
    stored_deleted: bool = False  # its submission is soft-deleted
    stored_complete: bool = False  # every file it references is present

    def stores_identical(self, xml_sha256: str) -> bool:
        """Tell whether these exact bytes are stored under the instance id, live and with all their files."""
        return self.stored_xml_sha256 == xml_sha256 and self.stored_complete and not self.stored_deleted


@dataclass(frozen=True, slots=True)
class RelatedVersion:
    """A stored version related to an incoming one: itself, its predecessor or a successor."""

    id: int
    submission_id: int
    instance_id: str
    deprecated_id: str | None
    xml_sha256: str


def get_form_target(
    session: Session, project_id: int, xml_form_id: str, version: str, lock_instance_ids: Sequence[str] = ()
) -> FormTarget | None:
    """Return the form ``xml_form_id`` of a project with its published version ``version``, in one query.

    On PostgreSQL the same statement takes the edit-chain locks of ``lock_instance_ids`` (see
    ``chain_lock_key``), saving a round trip; the caller's next statement sees every write committed
    by a previous holder (READ COMMITTED takes a fresh snapshot per statement). The first of
    ``lock_instance_ids`` is the submission's own instance id: its stored version (``stored_*``) is
    read by the same statement, from the snapshot taken before the locks (so a version a previous
    holder just committed may be missed: the caller's usual path then finds it, never the reverse).
    """
    params, locks = _form_target_params(session, project_id, xml_form_id, version, lock_instance_ids)
    stmt = _FORM_TARGET.get(locks)
    if stmt is None:
        stmt = _FORM_TARGET[locks] = _form_target_statement(locks)
    # Straight on the driver: this runs for every submission (see ``pipeline.first_row``).
    row = pipeline.first_row(session, stmt, params)
    return FormTarget(*row[:_TARGET_WIDTH]) if row is not None else None


@dataclass(frozen=True, slots=True)
class RoutedTarget:
    """A form target read for one routing (project, form, version, locked instance ids): the key and the answer."""

    project_id: int
    xml_form_id: str
    version: str
    lock_instance_ids: tuple[str, ...]
    target: FormTarget | None

    def serves(self, project_id: int, xml_form_id: str, version: str, lock_instance_ids: Sequence[str]) -> bool:
        """Tell whether this read answers (and locked for) exactly that routing."""
        return (self.project_id, self.xml_form_id, self.version, self.lock_instance_ids) == (
            project_id,
            xml_form_id,
            version,
            tuple(lock_instance_ids),
        )


def get_token_and_form_target(
    session: Session,
    token_hash: str,
    project_id: int,
    xml_form_id: str,
    version: str,
    lock_instance_ids: Sequence[str],
) -> tuple[DeviceTokenRow, RoutedTarget] | None:
    """Return an access token's row and the form target of a submission (``get_form_target``), in ONE query.

    ``None`` when no token has this hash (nothing is locked then). The chain locks are taken whatever
    the token: the caller decides whether it may write, and a refusal rolls back, which frees them.
    """
    params, locks = _form_target_params(session, project_id, xml_form_id, version, lock_instance_ids)
    params["token_hash"] = token_hash
    stmt = _TOKEN_AND_TARGET.get(locks)
    if stmt is None:
        target = _form_target_statement(locks).subquery("target")
        stmt = _TOKEN_AND_TARGET[locks] = (
            # The chain locks' columns are selected too: their evaluation is what takes the locks.
            select(*TOKEN_COLUMNS, *target.c)
            .select_from(AccessToken.__table__.outerjoin(target, true()))
            .where(AccessToken.token_hash == bindparam("token_hash"))
        )
    row = pipeline.first_row(session, stmt, params)
    if row is None:
        return None
    width = len(TOKEN_COLUMNS)
    found = FormTarget(*row[width : width + _TARGET_WIDTH]) if row[width] is not None else None
    routed = RoutedTarget(project_id, xml_form_id, version, tuple(lock_instance_ids), found)
    return DeviceTokenRow(*row[:width]), routed


def _form_target_params(
    session: Session, project_id: int, xml_form_id: str, version: str, lock_instance_ids: Sequence[str]
) -> tuple[dict[str, Any], int]:
    """The parameters of a form-target statement and its number of chain locks (PostgreSQL takes them)."""
    params: dict[str, Any] = {
        "project_id": project_id,
        "xml_form_id": xml_form_id,
        "version": version,
        "instance_id": lock_instance_ids[0] if lock_instance_ids else None,
    }
    keys: list[int] = []
    if lock_instance_ids and session.get_bind().dialect.name == "postgresql":
        # Sorted keys: two writers locking overlapping sets never deadlock.
        keys = sorted({chain_lock_key(project_id, xml_form_id, i) for i in lock_instance_ids})
        params.update({f"lock_{n}": key for n, key in enumerate(keys)})
    return params, len(keys)


def _form_target_statement(locks: int) -> Any:
    # Built once per number of chain locks: no statement construction or cache-key work per submission.
    stored = SubmissionVersion.__table__.alias("stored")
    chain = Submission.__table__.alias("stored_chain")
    files = SubmissionAttachment.__table__
    awaiting_files = exists().where(files.c.version_id == stored.c.id, files.c.blob_sha256.is_(None))
    stmt = (
        select(
            Form.id,
            Form.state,
            FormVersion.id,
            FormVersion.xform_sha256,
            stored.c.id,
            stored.c.submission_id,
            stored.c.xml_sha256,
            chain.c.deleted_at.is_not(None).label("stored_deleted"),
            (~awaiting_files).label("stored_complete"),
        )
        .outerjoin(
            FormVersion,
            and_(
                FormVersion.form_id == Form.id,
                FormVersion.version == bindparam("version"),
                FormVersion.status == "published",
            ),
        )
        # Two unique-key probes (the version's, then its submission's primary key); none without an id.
        .outerjoin(
            stored,
            and_(
                stored.c.project_id == Form.project_id,
                stored.c.form_id == Form.id,
                stored.c.instance_id == bindparam("instance_id", type_=String()),
            ),
        )
        .outerjoin(chain, chain.c.id == stored.c.submission_id)
        .where(Form.project_id == bindparam("project_id"), Form.xml_form_id == bindparam("xml_form_id"))
    )
    locks_taken = (
        func.pg_advisory_xact_lock(bindparam(f"lock_{n}", type_=BigInteger).op("#")(STORE_SALT)) for n in range(locks)
    )
    return stmt.add_columns(*locks_taken)


_TARGET_WIDTH = 9  # the columns of a FormTarget, before the chain locks' (void) columns
_FORM_TARGET: dict[int, Any] = {}
_TOKEN_AND_TARGET: dict[int, Any] = {}


# Columns of a new chain's first version, bound by name (``NewChain`` fields) in ``_new_chain_statement``.
_VERSION_COLUMNS = (
    "form_version_id",
    "instance_id",
    "deprecated_id",
    "form_version",
    "xml",
    "xml_sha256",
    "record",
    "instance_name",
    "encrypted",
    "source",
    "received_at",
    "submitter_id",
    "device_token_id",
    "device_id",
    "user_agent",
)


# What ``insert_new_chains`` writes as constants (a plain first version) rather than from parameters.
_PLAIN_VERSION_CONSTANTS = ("deprecated_id", "encrypted", "user_agent")
# The parameters of ``insert_new_chains`` that fill a column of the same name, per table (ids aside).
PLAIN_SUBMISSION_PARAMS = (
    "project_id",
    "form_id",
    "instance_id",
    "submitter_id",
    "device_token_id",
    "attachments_expected",
    "attachments_present",
)
PLAIN_VERSION_PARAMS = (
    "project_id",
    "form_id",
    *(name for name in _VERSION_COLUMNS if name not in _PLAIN_VERSION_CONSTANTS),
)


def _param(table: Any, column: str, name: str | None = None) -> Any:
    # Typed: the psycopg dialect casts each parameter to its column type (bytea, jsonb, timestamptz).
    return bindparam(name or column, type_=table.c[column].type)


def _new_chain_statement(with_audit: bool) -> Any:
    """Build the one PostgreSQL statement that starts a new edit chain (see ``insert_new_chain``)."""
    subs = Submission.__table__
    versions = SubmissionVersion.__table__
    events = AuditEvent.__table__
    # The version is inserted first (ON CONFLICT on the unique key decides "already stored", no SELECT
    # whose plan could scan the form's rows) with a pre-drawn submission id; the submission row
    # follows from its RETURNING, so a conflict writes nothing. The foreign key is checked at the
    # end of the statement, when both rows exist. A stored version that replaces this instance id
    # (an edit that arrived before its original) sends the caller to the general path.
    successor = exists().where(
        versions.c.project_id == bindparam("project_id"),
        versions.c.form_id == bindparam("form_id"),
        versions.c.deprecated_id == bindparam("instance_id"),
    )
    drawn = (
        select(func.nextval(func.pg_get_serial_sequence("submissions", "id")).label("id"))
        .where(~successor)
        .cte("drawn_id")
    )
    new_version = (
        postgresql.insert(versions)
        .from_select(
            ("submission_id", "project_id", "form_id", *_VERSION_COLUMNS),
            select(
                drawn.c.id,
                _param(versions, "project_id"),
                _param(versions, "form_id"),
                *(_param(versions, column) for column in _VERSION_COLUMNS),
            ),
        )
        .on_conflict_do_nothing(index_elements=["project_id", "form_id", "instance_id"])
        .returning(versions.c.id, versions.c.submission_id)
        .cte("new_version")
    )
    sub_columns = (
        "id",
        "project_id",
        "form_id",
        "instance_id",
        "current_instance_id",
        "review_state",
        "edits",
        "submitter_id",
        "device_token_id",
        "attachments_expected",
        "attachments_present",
        "created_at",
        "updated_at",
    )
    sub_values = [
        new_version.c.submission_id,
        _param(subs, "project_id"),
        _param(subs, "form_id"),
        _param(subs, "instance_id"),
        _param(subs, "current_instance_id", "instance_id"),
        literal("received", String),
        literal(0),
        _param(subs, "submitter_id"),
        _param(subs, "device_token_id"),
        _param(subs, "attachments_expected"),
        _param(subs, "attachments_present"),
        _param(subs, "created_at", "received_at"),
        _param(subs, "updated_at", "received_at"),
    ]
    new_sub = (
        postgresql.insert(subs).from_select(sub_columns, select(*sub_values)).returning(subs.c.id).cte("new_submission")
    )
    stmt = select(new_sub.c.id, new_version.c.id).select_from(new_version.join(new_sub, true()))
    stmt = stmt.add_cte(
        _created_event(
            new_version.c.submission_id,
            new_version.c.id,
            _param(versions, "instance_id"),
            _param(versions, "form_version"),
        ).cte("new_outbox_event")
    )
    if with_audit:
        audit_row = postgresql.insert(events).from_select(
            ("at", "actor", "action", "project_id", "subject", "details"),
            select(
                _param(events, "at", "received_at"),
                _param(events, "actor"),
                _param(events, "action"),
                _param(events, "project_id"),
                literal("submission:", String) + cast(new_version.c.submission_id, String),
                _param(events, "details"),
            ),
        )
        stmt = stmt.add_cte(audit_row.cte("new_audit_event"))
    return stmt


_NEW_CHAIN: dict[bool, Any] = {}


def _created_event(submission_id: Any, version_id: Any, instance_id: Any, form_version: Any) -> Any:
    """The outbox row of a new chain (``submission.created``), written only if a subscription wants it.

    The row takes the ``xml_form_id`` parameter (the XForm id, for subscriptions' form filter).
    """
    xml_form_id = bindparam("xml_form_id", type_=String())
    return event_insert(
        project_id=_param(Submission.__table__, "project_id"),
        kind=literal("submission.created", String),
        pattern=literal(kind_pattern("submission.created"), String),
        subject=literal("submission:", String) + cast(submission_id, String),
        form_id=xml_form_id,
        payload=func.jsonb_build_object(
            literal("submission_id", String),
            submission_id,
            literal("version_id", String),
            version_id,
            literal("instance_id", String),
            instance_id,
            literal("form_version", String),
            form_version,
        ),
        created_at=_param(Submission.__table__, "created_at", "received_at"),
    )


def insert_new_chain(session: Session, values: dict[str, Any], audit: dict[str, Any] | None) -> tuple[int, int] | None:
    """Start a new edit chain in ONE statement (PostgreSQL): first version, submission and (optionally) audit event.

    ``values`` holds ``project_id``, ``form_id``, the submitter columns, ``attachments_expected/present``
    and every version column, and ``xml_form_id`` (for the outbox row: ``submission.created`` when a
    webhook subscription wants it); ``audit`` holds ``actor``, ``action`` and ``details``. Nothing is written
    when the instance id is already stored or a stored version replaces it (``deprecated_id``): then
    ``None`` is returned and the caller takes the general path. Returns ``(submission_id, version_id)``.
    """
    with_audit = audit is not None
    stmt = _NEW_CHAIN.get(with_audit)
    if stmt is None:
        stmt = _NEW_CHAIN[with_audit] = _new_chain_statement(with_audit)
    row = pipeline.first_row(session, stmt, {**values, **(audit or {})})
    return (int(row[0]), int(row[1])) if row is not None else None


def _chain_rows_statement() -> Any:
    """Build the per-row PostgreSQL statement of ``insert_new_chains``: submission, version, audit event.

    A value that goes to several columns (project, form, instance id, timestamps, submitter) is one
    parameter; what every new chain has alike (review state, no deprecated id, not encrypted, the
    audit action and subject) is written in the SQL: fewer values to convert and send per row.
    """
    subs = Submission.__table__
    versions = SubmissionVersion.__table__
    events = AuditEvent.__table__
    submission_id = _param(subs, "id", "submission_id")
    new_sub = postgresql.insert(subs).values(
        id=submission_id,
        current_instance_id=_param(subs, "instance_id"),
        review_state=literal_column("'received'"),
        edits=literal_column("0"),
        created_at=_param(subs, "created_at", "received_at"),
        updated_at=_param(subs, "updated_at", "received_at"),
        **{name: _param(subs, name) for name in PLAIN_SUBMISSION_PARAMS},
    )
    audit_row = postgresql.insert(events).values(
        at=_param(events, "at", "received_at"),
        actor=_param(events, "actor"),
        action=literal_column("'submission.create'"),
        project_id=_param(events, "project_id"),
        subject=literal_column("'submission:'") + cast(submission_id, String),
        details=_param(events, "details"),
    )
    version_values = {
        "id": _param(versions, "id", "version_id"),
        "submission_id": _param(versions, "submission_id"),
        "deprecated_id": null(),
        "encrypted": false(),
        "user_agent": null(),
        **{name: _param(versions, name) for name in PLAIN_VERSION_PARAMS},
    }
    created = _created_event(
        submission_id,
        _param(versions, "id", "version_id"),
        _param(versions, "instance_id"),
        _param(versions, "form_version"),
    )
    # The submission row must exist before the version's foreign key is checked: a CTE's INSERT
    # runs to completion with the statement, and foreign keys are checked at its end.
    return (
        postgresql.insert(versions)
        .values(version_values)
        .add_cte(new_sub.cte("new_submission"))
        .add_cte(audit_row.cte("new_audit_event"))
        .add_cte(created.cte("new_outbox_event"))
    )


_CHAIN_ROWS: list[Any] = []


def insert_new_chains(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write many new chains (PostgreSQL, ids drawn beforehand): one statement per chain, pipelined.

    Each row gives ``submission_id`` and ``version_id``, every name of ``PLAIN_SUBMISSION_PARAMS`` and
    ``PLAIN_VERSION_PARAMS``, the audit event's ``actor`` and ``details``, and ``xml_form_id`` (the
    outbox row, written only when a webhook subscription wants it). Only first versions of
    plain (not encrypted) submissions are written this way; the audit event is ``submission.create``.
    One statement per chain instead of one per table and row: a third of the statements the server
    plans and runs.
    """
    if not _CHAIN_ROWS:
        _CHAIN_ROWS.append(_chain_rows_statement())
    pipeline.executemany(session, _CHAIN_ROWS[0], rows)


def lock_submissions(session: Session, submission_ids: Sequence[int]) -> None:
    """Lock submission rows before recomputing them from their versions (PostgreSQL; SQLite has one writer).

    Two writers adding different versions to one chain hold different chain locks (e.g. the original
    and the second edit); without this row lock each recomputed the chain from a snapshot missing
    the other's version, and the last UPDATE won. After the lock, the next statements see every
    version committed by the previous holder. Ids in order: two writers never deadlock on them.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        select(Submission.id)
        .where(Submission.id.in_(sorted(set(submission_ids))))
        .order_by(Submission.id)
        .with_for_update()
    ).all()


def deleted_among(session: Session, submission_ids: Sequence[int]) -> set[int]:
    """Return which of ``submission_ids`` are soft-deleted, row-locking them first on PostgreSQL.

    The lock (ids in order, as ``lock_submissions``) orders an ingestion against a concurrent delete
    or restore: whichever commits first, the other sees its write.
    """
    stmt = select(Submission.id, Submission.deleted_at).where(Submission.id.in_(sorted(set(submission_ids))))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.order_by(Submission.id).with_for_update()
    return {row[0] for row in session.execute(stmt).all() if row[1] is not None}


def get_schema_json(session: Session, version_pk: int) -> dict[str, Any] | None:
    """Return the stored ``FormSchema`` JSON of a form version."""
    value: dict[str, Any] | None = session.scalar(select(FormVersion.schema_json).where(FormVersion.id == version_pk))
    return value


_LOCK_IN_ORDER = text(
    # unnest yields the array in order and each row's lock is taken as that row is produced, so the
    # locks are taken in the (sorted) order of the array; one cached statement whatever the count.
    "SELECT count(pg_advisory_xact_lock(k # " + STORE_SALT_SQL + ")) FROM unnest(CAST(:keys AS bigint[])) AS t(k)"
)


def lock_chains_in_order(session: Session, keys: Iterable[int]) -> None:
    """Take the edit-chain advisory locks ``keys`` in one statement, sorted (PostgreSQL; SQLite has one writer)."""
    ordered = sorted(set(keys))
    if session.get_bind().dialect.name != "postgresql" or not ordered:
        return
    session.execute(_LOCK_IN_ORDER, {"keys": ordered}).scalar_one()


def chain_lock_key(project_id: int, xml_form_id: str, instance_id: str) -> int:
    """Return the signed 64-bit advisory-lock key of one instance id of a form (SQLite needs none: one writer)."""
    digest = hashlib.blake2b(f"{project_id}:{xml_form_id}:{instance_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def related_versions(
    session: Session, project_id: int, form_pk: int, instance_id: str, deprecated_id: str | None
) -> list[RelatedVersion]:
    """Return the stored versions that are ``instance_id``, its predecessor, or replace it."""
    ids = [instance_id] if deprecated_id is None else [instance_id, deprecated_id]
    columns = (
        SubmissionVersion.id,
        SubmissionVersion.submission_id,
        SubmissionVersion.instance_id,
        SubmissionVersion.deprecated_id,
        SubmissionVersion.xml_sha256,
    )
    same_form = (SubmissionVersion.project_id == project_id, SubmissionVersion.form_id == form_pk)
    # A UNION of two index probes (unique key, deprecated_id index); one OR filter made PostgreSQL scan
    # every version of the form, so each submission cost grew with the form's size.
    rows = session.execute(
        select(*columns)
        .where(*same_form, SubmissionVersion.instance_id.in_(ids))
        .union(select(*columns).where(*same_form, SubmissionVersion.deprecated_id == instance_id))
    ).all()
    return [RelatedVersion(*row) for row in rows]


def version_attachments(session: Session, version_ids: Sequence[int]) -> list[tuple[int, str, str | None]]:
    """Return ``(version_id, name, blob_sha256)`` of the attachments of some versions."""
    if not version_ids:
        return []
    rows = session.execute(
        select(SubmissionAttachment.version_id, SubmissionAttachment.name, SubmissionAttachment.blob_sha256).where(
            SubmissionAttachment.version_id.in_(version_ids)
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def chain_versions(session: Session, submission_id: int) -> list[tuple[int, str, str | None]]:
    """Return ``(id, instance_id, deprecated_id)`` of every version of a submission."""
    rows = session.execute(
        select(SubmissionVersion.id, SubmissionVersion.instance_id, SubmissionVersion.deprecated_id).where(
            SubmissionVersion.submission_id == submission_id
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def chain_attachments(session: Session, submission_id: int) -> list[tuple[int, str, str | None]]:
    """Return ``(version_id, name, blob_sha256)`` of every attachment of every version of a submission."""
    rows = session.execute(
        select(SubmissionAttachment.version_id, SubmissionAttachment.name, SubmissionAttachment.blob_sha256)
        .join(SubmissionVersion, SubmissionVersion.id == SubmissionAttachment.version_id)
        .where(SubmissionVersion.submission_id == submission_id)
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def present_blobs(session: Session, project_id: int, shas: Iterable[str]) -> set[str]:
    """Return which of ``shas`` the project delivered: a hash is not a right to another project's file."""
    from server.db.queries.blobs import project_blobs

    return project_blobs(session, project_id, shas)


def refresh_attachment_counts(session: Session, submission_id: int) -> None:
    """Recompute a submission's expected/present attachment counts from its current version."""

    def count(*extra: Any) -> Any:
        # One level of nesting only: the subquery correlates with the UPDATE's submissions row.
        return (
            select(func.count())
            .select_from(SubmissionAttachment)
            .join(SubmissionVersion, SubmissionVersion.id == SubmissionAttachment.version_id)
            .where(
                SubmissionVersion.submission_id == submission_id,
                SubmissionVersion.instance_id == Submission.current_instance_id,
                *extra,
            )
            .correlate(Submission)
            .scalar_subquery()
        )

    session.execute(
        update(Submission)
        .where(Submission.id == submission_id)
        .values(
            attachments_expected=count(),
            attachments_present=count(SubmissionAttachment.blob_sha256.is_not(None)),
        )
    )


# ---------------------------------------------------------------------------------------------------
# Reading


def get_form_pk(session: Session, project_id: int, xml_form_id: str) -> int | None:
    """Return the primary key of a project's form."""
    value: int | None = session.scalar(
        select(Form.id).where(Form.project_id == project_id, Form.xml_form_id == xml_form_id)
    )
    return value


def find_submission(session: Session, project_id: int, form_pk: int, instance_id: str) -> Submission | None:
    """Return the submission holding a version ``instance_id`` (any version of the chain)."""
    return session.scalars(
        select(Submission)
        .join(SubmissionVersion, SubmissionVersion.submission_id == Submission.id)
        .where(
            SubmissionVersion.project_id == project_id,
            SubmissionVersion.form_id == form_pk,
            SubmissionVersion.instance_id == instance_id,
        )
    ).first()


def list_versions(session: Session, submission_id: int) -> list[SubmissionVersion]:
    """Return the versions of a submission (unordered: the caller orders them as a chain)."""
    return list(session.scalars(select(SubmissionVersion).where(SubmissionVersion.submission_id == submission_id)))


def list_attachments(session: Session, version_ids: Sequence[int]) -> list[SubmissionAttachment]:
    """Return the attachments of some versions, by version then name."""
    if not version_ids:
        return []
    return list(
        session.scalars(
            select(SubmissionAttachment)
            .where(SubmissionAttachment.version_id.in_(version_ids))
            .order_by(SubmissionAttachment.version_id, SubmissionAttachment.name)
        )
    )


def list_reviews(session: Session, submission_id: int) -> list[SubmissionReview]:
    """Return the review history of a submission, oldest first."""
    return list(
        session.scalars(
            select(SubmissionReview)
            .where(SubmissionReview.submission_id == submission_id)
            .order_by(SubmissionReview.id)
        )
    )


def missing_attachments(session: Session, version_id: int) -> list[tuple[str, str | None]]:
    """Return ``(name, declared_sha256)`` of a version's attachments whose bytes are absent."""
    rows = session.execute(
        select(SubmissionAttachment.name, SubmissionAttachment.declared_sha256).where(
            SubmissionAttachment.version_id == version_id, SubmissionAttachment.blob_sha256.is_(None)
        )
    ).all()
    return [(r[0], r[1]) for r in rows]


def fill_declared_attachment(session: Session, project_id: int, sha256: str) -> list[int]:
    """Set ``blob_sha256`` where a project's attachment declared ``sha256``; return the submissions touched."""
    version_ids = select(SubmissionVersion.id).where(SubmissionVersion.project_id == project_id).scalar_subquery()
    touched = (
        session.execute(
            select(SubmissionVersion.submission_id)
            .join(SubmissionAttachment, SubmissionAttachment.version_id == SubmissionVersion.id)
            .where(
                SubmissionVersion.project_id == project_id,
                SubmissionAttachment.declared_sha256 == sha256,
                SubmissionAttachment.blob_sha256.is_(None),
            )
            .distinct()
        )
        .scalars()
        .all()
    )
    if touched:
        session.execute(
            update(SubmissionAttachment)
            .where(
                SubmissionAttachment.declared_sha256 == sha256,
                SubmissionAttachment.blob_sha256.is_(None),
                SubmissionAttachment.version_id.in_(version_ids),
            )
            .values(blob_sha256=sha256)
        )
    return sorted(touched)
