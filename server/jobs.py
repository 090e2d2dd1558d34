"""Plain job functions the scheduler triggers (wired in ``server/scheduler.py``); each claims its work
with a compare-and-set, so several server processes never do one piece of work twice."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask import has_app_context
from sqlalchemy.orm import Session, sessionmaker

from server.db.base import utcnow
from server.services import uploads


def expire_uploads(
    session_factory: sessionmaker[Session], now: datetime | None = None, storage_dir: Path | None = None
) -> int:
    """Expire abandoned resumable uploads (past ``Upload-Expires``), delete their partial files; return how many.

    ``storage_dir`` defaults to the current app's storage (or the configured one outside an app).
    """
    if storage_dir is None:
        if has_app_context():
            from server.store import get_store

            storage_dir = get_store().storage_dir
        else:
            from server.config import load_config

            storage_dir = Path(load_config()["STORAGE_DIR"])
    return uploads.expire_uploads(session_factory, storage_dir, now or utcnow())
