"""Tables of the submissions area: logical submissions, their versions, attachments, refusals and reviews.

* ``submissions``: one row per logical submission (an edit chain), with its review state, the
  counters the API lists (current version, attachments expected/present) and its soft deletion
  (``deleted_at``/``deleted_by``: hidden from reads and exports, its instance ids refused on resend).
* ``submission_versions``: one row per received XML. ``(project_id, form_id, instance_id)`` is unique:
  that constraint, not a check in Python, is what makes two racing identical POSTs store one row.
  Composite foreign keys (migration 0009) keep a version in its submission's project and form, and
  a submission's form in its project.
  ``record`` holds ``SubmissionRecord.values`` (groups as objects, repeats as lists, leaves as text).
* ``submission_attachments``: the files a version references, by name; ``blob_sha256`` stays NULL
  until the bytes arrive (multi-POST uploads, ``*isIncomplete*``).
* ``refused_submissions``: payloads refused for an id conflict (same instanceID, other XML), kept
  once per distinct content for review (SYNC.md invariant 4).
* ``submission_reviews``: every review-state change with its comment and actor.
* ``submission_table_columns``: the columns each user chose for a form's submissions table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow

REVIEW_STATES = ("received", "has_issues", "approved", "rejected")
# OpenRosa metadata: instance ids MUST support at least 249 characters.
INSTANCE_ID_LENGTH = 255


class Submission(Base):
    """A logical submission: the chain of versions of one instance; the newest version is current."""

    __tablename__ = "submissions"
    __table_args__ = (
        CheckConstraint("review_state IN ('received', 'has_issues', 'approved', 'rejected')", name="review_state"),
        # The form belongs to the submission's project: one composite key (one trigger per insert on
        # PostgreSQL) instead of two. Deleting a project still cascades, through its forms.
        ForeignKeyConstraint(["form_id", "project_id"], ["forms.id", "forms.project_id"], ondelete="CASCADE"),
        # Target of the versions' composite foreign key (id alone is already unique).
        UniqueConstraint("id", "project_id", "form_id"),
        # The read API pages a form's submissions by (received order, id).
        Index("ix_submissions_form_listing", "project_id", "form_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger)
    form_id: Mapped[int] = mapped_column(BigInteger)
    # The first version's instance id as known now (an earlier version arriving late becomes the root).
    instance_id: Mapped[str] = mapped_column(String(INSTANCE_ID_LENGTH))
    # The current version is found by (project_id, form_id, current_instance_id), a unique key of
    # submission_versions: no circular foreign key, and a new submission is written in one INSERT.
    current_instance_id: Mapped[str] = mapped_column(String(INSTANCE_ID_LENGTH))
    review_state: Mapped[str] = mapped_column(String(20), default="received")
    edits: Mapped[int] = mapped_column(Integer, default=0)
    submitter_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    device_token_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("access_tokens.id", ondelete="SET NULL"))
    attachments_expected: Mapped[int] = mapped_column(Integer, default=0)
    attachments_present: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Soft deletion (restorable): NULL while the submission is live; ``deleted_by`` is the audit actor.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_by: Mapped[str | None] = mapped_column(String(200))


class SubmissionVersion(Base):
    """One received XML of a submission, kept byte for byte with its parsed record."""

    __tablename__ = "submission_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "form_id", "instance_id"),
        # A version lives in its submission's project and form: one composite key instead of three
        # (submission, project, form), checked by one trigger per insert on PostgreSQL.
        ForeignKeyConstraint(
            ["submission_id", "project_id", "form_id"],
            ["submissions.id", "submissions.project_id", "submissions.form_id"],
            ondelete="CASCADE",
        ),
        # Linking a late predecessor finds the versions that replace it. Partial: only edits have a
        # deprecated_id, and an instance-id probe can never wander into this index (migration 0008).
        Index(
            "ix_submission_versions_deprecated",
            "project_id",
            "form_id",
            "deprecated_id",
            postgresql_where=text("deprecated_id IS NOT NULL"),
            sqlite_where=text("deprecated_id IS NOT NULL"),
        ),
        # The submissions table's select filters on any field (``record @> {"region": "x"}``): one GIN
        # index serves every field of every form, where an expression index per field cannot be made
        # ahead of time (migration 0011). SQLite cannot index JSON so: an always-empty partial index
        # keeps the two stores' schemas alike, and the filter reads the JSON there.
        Index(
            "ix_submission_versions_record",
            "record",
            postgresql_using="gin",
            postgresql_ops={"record": "jsonb_path_ops"},
            sqlite_where=text("0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    submission_id: Mapped[int] = mapped_column(BigInteger, index=True)
    project_id: Mapped[int] = mapped_column(BigInteger)
    form_id: Mapped[int] = mapped_column(BigInteger)
    form_version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("form_versions.id", ondelete="CASCADE"))
    instance_id: Mapped[str] = mapped_column(String(INSTANCE_ID_LENGTH))
    deprecated_id: Mapped[str | None] = mapped_column(String(INSTANCE_ID_LENGTH))
    form_version: Mapped[str] = mapped_column(String(255), default="")
    xml: Mapped[bytes] = mapped_column(LargeBinary)
    xml_sha256: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict[str, Any]] = mapped_column(JSONType)
    instance_name: Mapped[str | None] = mapped_column(Text)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(10), default="openrosa")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    submitter_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    device_token_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("access_tokens.id", ondelete="SET NULL"))
    device_id: Mapped[str | None] = mapped_column(String(255))  # ?deviceID= as Collect sends it
    user_agent: Mapped[str | None] = mapped_column(String(500))


class SubmissionAttachment(Base):
    """A file a version references; ``blob_sha256`` is NULL until its bytes have arrived."""

    __tablename__ = "submission_attachments"
    __table_args__ = (UniqueConstraint("version_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("submission_versions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    blob_sha256: Mapped[str | None] = mapped_column(String(64), ForeignKey("blobs.sha256"), index=True)
    # The sha256 a JSON push client declared: the blob upload that brings it fills ``blob_sha256``.
    declared_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RefusedSubmission(Base):
    """A payload refused because its instance id was already stored with other XML (kept for review)."""

    __tablename__ = "refused_submissions"
    __table_args__ = (
        UniqueConstraint("project_id", "form_id", "instance_id", "xml_sha256", name="uq_refused_submissions_content"),
        CheckConstraint("state IN ('held', 'released', 'discarded')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"))
    form_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("forms.id", ondelete="CASCADE"))
    instance_id: Mapped[str] = mapped_column(String(INSTANCE_ID_LENGTH))
    reason: Mapped[str] = mapped_column(String(40))
    xml: Mapped[bytes] = mapped_column(LargeBinary)
    xml_sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(10), default="openrosa")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    submitter_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    device_token_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("access_tokens.id", ondelete="SET NULL"))
    device_id: Mapped[str | None] = mapped_column(String(255))
    # A manager's decision: "held" until released (stored as an edit of the chain, under
    # ``released_instance_id``) or discarded (kept, never stored).
    state: Mapped[str] = mapped_column(String(10), default="held", server_default="held")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_instance_id: Mapped[str | None] = mapped_column(String(INSTANCE_ID_LENGTH))


class SubmissionReview(Base):
    """One review-state change of a submission (or a comment).

    ``request_key`` is the ``Idempotency-Key`` the reviewer's request carried: the same key from the
    same actor on the same submission names one review, so a retried request writes nothing again.
    """

    __tablename__ = "submission_reviews"
    __table_args__ = (UniqueConstraint("submission_id", "actor", "request_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    submission_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    request_key: Mapped[str | None] = mapped_column(String(200))


class SubmissionTableColumns(Base):
    """A user's saved column choice for one form's submissions table (field paths, language, labels or values)."""

    __tablename__ = "submission_table_columns"
    __table_args__ = (
        UniqueConstraint("user_id", "form_id"),
        CheckConstraint("display IN ('labels', 'values')", name="display"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    form_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("forms.id", ondelete="CASCADE"), index=True)
    paths: Mapped[list[str]] = mapped_column(JSONType)
    language: Mapped[str | None] = mapped_column(String(100))
    display: Mapped[str] = mapped_column(String(10), default="labels")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
