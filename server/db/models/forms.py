"""Tables of the forms area: forms, their versions (XForm bytes served, original upload, schema),
attachments, and the conversion jobs of uploads that take longer than a request should wait.

A form is identified by its XForm id within a project; it keeps every version it ever had. A version
string is unique per form (the database says so, never a check in Python) and holds the exact bytes
served to devices plus their md5 (the OpenRosa ``hash``) so ``formList`` never loads the XForm itself.
A conversion job lives here, not in a server's memory, so whichever worker or host a poll reaches can
answer it; its state moves by compare-and-set only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false

from server.db.base import Base, BigIntPK, JSONType, UTCDateTime, utcnow

FORM_STATES = ("open", "closing", "closed")
VERSION_STATUSES = ("draft", "published")
JOB_STATES = ("queued", "running", "done", "failed")
ATTACHMENT_KINDS = ("image", "audio", "video", "csv", "xml", "geojson", "itemsets", "entity_list", "other")


class Form(Base):
    """A form of a project: its XForm id, title, state and the published version devices get."""

    __tablename__ = "forms"
    __table_args__ = (
        UniqueConstraint("project_id", "xml_form_id"),
        # Target of the submissions' composite foreign key (a submission's form is in its project).
        UniqueConstraint("id", "project_id"),
        CheckConstraint("state IN ('open', 'closing', 'closed')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    xml_form_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500), default="")
    # open: listed and accepting; closing: not listed, still accepting; closed: neither (OPENROSA.md).
    state: Mapped[str] = mapped_column(String(10), default="open")
    # The published version served to devices; NULL while the form only has a draft. The foreign key
    # is circular (form_versions.form_id -> forms), hence use_alter.
    current_version_id: Mapped[int | None] = mapped_column(
        BigInteger,
        ForeignKey("form_versions.id", ondelete="SET NULL", use_alter=True, name="fk_forms_current_version_id"),
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FormVersion(Base):
    """One version of a form: the XForm bytes served (and their hashes), the upload it came from, its schema."""

    __tablename__ = "form_versions"
    __table_args__ = (
        UniqueConstraint("form_id", "version"),
        CheckConstraint("status IN ('draft', 'published')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    form_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("forms.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(10), default="draft")
    title: Mapped[str] = mapped_column(String(500), default="")
    # Deferred: listing forms must never pull the XForm or the upload out of the database.
    xform: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    xform_md5: Mapped[str] = mapped_column(String(32))
    xform_sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    source_filename: Mapped[str] = mapped_column(String(255))
    source_kind: Mapped[str] = mapped_column(String(10))
    schema_json: Mapped[dict[str, Any]] = mapped_column(JSONType, deferred=True)
    warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    itemsets: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    conversion_seconds: Mapped[float | None] = mapped_column(Float)
    # sha256 of the XForm as pyxform made it (before a generated version was stamped in) and of
    # itemsets.csv: equal for identical uploads of a spreadsheet without a version, which are no-ops.
    # NULL for versions stored before it existed.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    version_generated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(100))


class FormAttachment(Base):
    """A file a form version expects (media, CSV/XML/GeoJSON lists, itemsets.csv, entity lists).

    ``blob_sha256`` stays NULL until the file is uploaded; entity lists never have a blob (their CSV
    is generated from the entities table on each request).
    """

    __tablename__ = "form_attachments"
    __table_args__ = (UniqueConstraint("form_version_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    form_version_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("form_versions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))
    blob_sha256: Mapped[str | None] = mapped_column(String(64), ForeignKey("blobs.sha256"), index=True)
    # md5 of the uploaded bytes: the manifest's hash, kept here so the manifest never reads files.
    md5: Mapped[str | None] = mapped_column(String(32))
    size: Mapped[int | None] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(200))
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FormConversionJob(Base):
    """An upload whose conversion outlasted the request: polled until ``done`` (result) or ``failed`` (error).

    ``queued`` -> ``running`` when a server process claims it (``claimed_by``), then ``done`` or
    ``failed``; every move is an UPDATE guarded by the state it leaves, so two processes never both
    finish one job. ``result`` is the stored version as the synchronous answer gives it; ``error`` is
    the ``{status, code, message, details}`` the synchronous answer would have been.
    """

    __tablename__ = "form_conversion_jobs"
    __table_args__ = (CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(10), default="queued")
    filename: Mapped[str] = mapped_column(String(255))
    publish: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(100))
    # "host:pid" of the server process converting it.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The limit the converting process applies: a job running past it (plus a grace) was lost with its process.
    timeout_seconds: Mapped[float] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class FormListStamp(Base):
    """A value per project that changes whenever its formList could change (a publish, a state change ...).

    Database triggers on ``forms`` and ``form_attachments`` (migration 0023) draw it anew (random) in the very
    transaction that changes them, so no write path can forget it and every process and host sees
    the change with the commit: a server keeps its formList documents and checks this one row.
    """

    __tablename__ = "formlist_stamps"

    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    stamp: Mapped[int] = mapped_column(BigInteger, default=0)
