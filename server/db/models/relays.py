"""Tables of office relays, on both sides of the link.

National side: ``relays`` (a relay's credential, stored hashed like device tokens), ``relay_projects``
(the projects it was issued for: it may push into and pull from those only) and
``relayed_submissions`` (which relay carried each submission, and the phone's device id and
submitter as the office saw them).

Office side: ``relay_links`` (a local project relayed to a remote one: cursor, last contact, last
error), ``relay_outbox`` (a row per submission version to send up, written in the transaction that
stored it; ``batch_key`` is set and committed before the batch is sent, so a restart resends the same
``Idempotency-Key``) and ``relay_uploads`` (a photo's tus upload upstream and the offset reached).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, UTCDateTime, utcnow


class Relay(Base):
    """An office relay's credential on the national server (the token is stored as its sha256)."""

    __tablename__ = "relays"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RelayProject(Base):
    """A project a relay was issued for."""

    __tablename__ = "relay_projects"

    relay_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("relays.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)


class RelayedSubmission(Base):
    """A submission instance a relay carried, with the phone's identity as the office recorded it."""

    __tablename__ = "relayed_submissions"
    __table_args__ = (UniqueConstraint("project_id", "xml_form_id", "instance_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    relay_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("relays.id", ondelete="CASCADE"), index=True)
    xml_form_id: Mapped[str] = mapped_column(String(255))
    instance_id: Mapped[str] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(255))
    submitter: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RelayLink(Base):
    """Office side: a local project relayed to a project of the upstream server, and the link's state."""

    __tablename__ = "relay_links"

    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    upstream_url: Mapped[str] = mapped_column(String(500))
    remote_project_id: Mapped[int] = mapped_column(BigInteger)
    pull_cursor: Mapped[str | None] = mapped_column(Text)
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RelayOutboxRow(Base):
    """Office side: one stored submission version (``kind`` submission) or entity op pushed as a JSON item
    (``kind`` entity) still to be sent upstream (``sent_at`` once answered)."""

    __tablename__ = "relay_outbox"
    __table_args__ = (
        UniqueConstraint("version_id"),
        UniqueConstraint("entity_op_id"),
        Index("ix_relay_outbox_pending", "project_id", "sent_at", "id"),
        CheckConstraint("kind IN ('submission', 'entity')", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20), default="submission")
    version_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("submission_versions.id", ondelete="CASCADE"))
    entity_op_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("entity_ops.id", ondelete="CASCADE"))
    batch_key: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RelayUpload(Base):
    """Office side: a blob's resumable upload to the upstream server (its URL there, the offset reached)."""

    __tablename__ = "relay_uploads"

    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    location: Mapped[str | None] = mapped_column(String(500))
    length: Mapped[int] = mapped_column(BigInteger)
    upload_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
