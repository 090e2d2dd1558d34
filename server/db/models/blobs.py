"""Content-addressed blobs: one row per distinct file content, named by its sha256, and the projects
that have delivered each one.

The bytes are stored once whoever sends them, but a project may only *use* a blob whose bytes it has
delivered itself (``project_blobs``): knowing a sha256 is not a right to another project's photo.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, UTCDateTime, utcnow


class Blob(Base):
    """A stored file; its bytes live at ``<storage>/blobs/<aa>/<bb>/<sha256>`` and always hash to its name."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set when a writer stores or references content already here, in that writer's transaction: the
    # row lock it takes orders it against ``fieldsync purge`` (see server/services/retention.py).
    touched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProjectBlob(Base):
    """A blob whose bytes this project delivered (an upload, a submission's file): it may reference it."""

    __tablename__ = "project_blobs"

    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    # A grant dies with its blob: retention deletes unreferenced blobs, and a grant is no reference.
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
