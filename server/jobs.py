"""Plain job functions the scheduler triggers (wired in ``server/scheduler.py``); each claims its work
with a compare-and-set, so several server processes never do one piece of work twice."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from server.services import uploads


def expire_uploads(session_factory: sessionmaker[Session], now: datetime, storage_dir: Path | None = None) -> int:
    """Expire abandoned resumable uploads (past ``Upload-Expires``) and delete their partial files."""
    if storage_dir is None:
        from server.config import load_config

        storage_dir = Path(load_config()["STORAGE_DIR"])
    return uploads.expire_uploads(session_factory, storage_dir, now)
