"""Content-addressed blobs: one row per distinct file content, named by its sha256."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
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
