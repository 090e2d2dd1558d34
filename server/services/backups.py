"""Backups, restores and store moves: every table's rows and every blob, consistent with each other.

A backup is a zip archive (``fieldsync-backup/1``)::

    manifest.json              format, migration revision, time, row count per table, blob count
    tables/<table>.jsonl       one JSON object per row, tables in dependency order
    blobs/<sha256>             the bytes of every ``blobs`` row (stored, not recompressed)

All rows are read in one snapshot (PostgreSQL: a REPEATABLE READ, READ ONLY transaction; SQLite: one
read transaction, which WAL keeps stable while writers go on), so the tables agree with one another
and the blob list is the one the rows reference; a committed ``blobs`` row always has its bytes, so
the bytes are read from the blob store after the rows, still inside the snapshot. Nothing is held
whole in memory: rows are streamed from a server-side cursor and blobs are copied in chunks.

A restore loads an archive into an empty store migrated to the same revision (refusing anything else),
in one transaction, then writes the blobs into the configured blob store (folder or bucket) and moves
PostgreSQL's id sequences past the restored ids. ``migrate-store`` copies a store's rows the same way,
straight from one database to another (SQLite to PostgreSQL), leaving the blobs where they are.
"""

from __future__ import annotations

import base64
import json
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, LargeBinary, Table, select
from sqlalchemy.orm import Session

from server.blobstore import CHUNK, BlobStore
from server.db.base import UTCDateTime
from server.db.migrate import head_revision, upgrade_to_head
from server.db.models import Blob
from server.db.queries import backups as q
from server.errors import ApiError

FORMAT = "fieldsync-backup/1"
# Rows the migrations insert (sync_clock) or triggers write as other rows load (formlist_stamps,
# migration 0023): a restore replaces them.
SEEDED_TABLES = {"sync_clock", "formlist_stamps"}


@dataclass(frozen=True)
class BackupSummary:
    """What a backup, restore or move carried."""

    revision: str | None
    rows: dict[str, int]
    blobs: int


def _fail(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(400, code, message, details)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one consistent state of the store."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
        else:
            with conn.begin():
                yield conn


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _decoder(table: Table) -> dict[str, Any]:
    """Column name -> function turning a JSON value back into the column's Python value."""
    out: dict[str, Any] = {}
    for column in table.columns:
        if isinstance(column.type, UTCDateTime):
            out[column.name] = lambda v: None if v is None else datetime.fromisoformat(v).astimezone(UTC)
        elif isinstance(column.type, LargeBinary):
            out[column.name] = lambda v: None if v is None else base64.b64decode(v)
    return out


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def write_backup(engine: Engine, blobs: BlobStore, out: BinaryIO) -> BackupSummary:
    """Write every table's rows and every blob, from one snapshot, as a zip archive to ``out``."""
    rows: dict[str, int] = {}
    with snapshot(engine) as conn, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        revision = _revision(conn)
        for table in q.tables():
            count = 0
            with archive.open(f"tables/{table.name}.jsonl", "w", force_zip64=True) as member:
                for row in q.iter_rows(conn, table):
                    member.write(json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False).encode())
                    member.write(b"\n")
                    count += 1
            rows[table.name] = count
        hashes = list(conn.scalars(select(Blob.sha256).order_by(Blob.sha256)))
        for sha in hashes:
            # Blobs are already compressed (photos, media) or small: stored as they are.
            with archive.open(zipfile.ZipInfo(f"blobs/{sha}"), "w", force_zip64=True) as member:
                for chunk in blobs.iter_bytes(sha):
                    member.write(chunk)
        manifest = {
            "format": FORMAT,
            "revision": revision,
            "created_at": datetime.now(UTC).isoformat(),
            "tables": rows,
            "blobs": len(hashes),
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    return BackupSummary(revision, rows, len(hashes))


def _check_empty(conn: Connection) -> None:
    busy = [t.name for t in q.tables() if t.name not in SEEDED_TABLES and q.count_rows(conn, t)]
    if busy:
        raise _fail("store_not_empty", "The target store already has data; restore into an empty one", tables=busy)


def _prepare_target(engine: Engine, revision: str | None) -> None:
    upgrade_to_head(engine)
    head = head_revision(engine)
    if revision != head:
        raise _fail(
            "revision_mismatch",
            f"The rows are at migration {revision!r} but this Fieldsync is at {head!r}; "
            "use the Fieldsync version that wrote them",
            revision=revision,
            head=head,
        )


def restore_backup(engine: Engine, blobs: BlobStore, archive_path: Path) -> BackupSummary:
    """Load a backup archive into an empty store (rows in one transaction, then blobs); refuse anything else."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _fail("bad_backup", f"{archive_path} is not a Fieldsync backup: {exc}") from None
    with archive:
        try:
            manifest = json.loads(archive.read("manifest.json"))
        except (KeyError, ValueError):
            raise _fail("bad_backup", f"{archive_path} has no readable manifest.json") from None
        if manifest.get("format") != FORMAT:
            raise _fail("bad_backup", f"unknown backup format {manifest.get('format')!r}; expected {FORMAT}")
        _prepare_target(engine, manifest.get("revision"))
        rows: dict[str, int] = {}
        with engine.begin() as conn:
            _check_empty(conn)
            loader = _Loader(conn, from_json=True)
            for table in q.tables():
                rows[table.name] = loader.load(table, _archived_rows(archive, table))
            loader.finish()
            # The blob rows are in; their bytes go to the blob store under the same transaction, so a
            # failure leaves the store empty again (bytes without rows are harmless and collected later).
            hashes = [n.removeprefix("blobs/") for n in archive.namelist() if n.startswith("blobs/")]
            with Session(bind=conn) as session:
                for sha in hashes:
                    _restore_blob(session, blobs, archive, sha)
                session.flush()
    return BackupSummary(manifest.get("revision"), rows, len(hashes))


def _archived_rows(archive: zipfile.ZipFile, table: Table) -> Iterator[dict[str, Any]]:
    try:
        member = archive.open(f"tables/{table.name}.jsonl")
    except KeyError:
        return
    with member:
        for line in member:
            if line.strip():
                yield json.loads(line)


class _Loader:
    """Inserts tables in dependency order; a column pointing forward (``forms.current_version_id``, the one
    cycle) is inserted NULL and set once the table it points to is loaded."""

    def __init__(self, conn: Connection, *, from_json: bool) -> None:
        self.conn, self.from_json = conn, from_json
        self.loaded: set[str] = set()
        self.pending: list[tuple[Table, dict[str, Any], dict[str, Any]]] = []  # table, primary key, deferred values

    def load(self, table: Table, source: Iterator[dict[str, Any]]) -> int:
        """Insert every row of ``source`` into ``table``; return how many."""
        decode = _decoder(table) if self.from_json else {}
        forward = {
            fk.parent.name for fk in table.foreign_keys if fk.column.table.name not in self.loaded | {table.name}
        }
        if table.name in SEEDED_TABLES:
            q.clear(self.conn, table)
        known = set(table.c.keys())
        keys = [c.name for c in table.primary_key.columns]
        batch: list[dict[str, Any]] = []
        count = 0
        for raw in source:
            row = {k: decode[k](v) if k in decode else v for k, v in raw.items() if k in known}
            later = {k: row[k] for k in forward if row.get(k) is not None}
            if later:
                self.pending.append((table, {k: row[k] for k in keys}, later))
                row.update(dict.fromkeys(later))
            batch.append(row)
            count += 1
            if len(batch) >= q.BATCH:
                q.insert_rows(self.conn, table, batch)
                batch = []
        q.insert_rows(self.conn, table, batch)
        self.loaded.add(table.name)
        return count

    def finish(self) -> None:
        """Set the forward columns, then move PostgreSQL's id sequences past the copied ids."""
        for table, key, values in self.pending:
            q.update_row(self.conn, table, key, values)
        q.reset_sequences(self.conn)


def _restore_blob(session: Session, blobs: BlobStore, archive: zipfile.ZipFile, sha: str) -> None:
    row = session.get(Blob, sha)
    if row is None:
        return  # bytes without a row are not restored
    fd, name = tempfile.mkstemp(dir=blobs.tmp, prefix="restore-")
    with open(fd, "wb") as handle, archive.open(f"blobs/{sha}") as member:
        while chunk := member.read(CHUNK):
            handle.write(chunk)
    blobs.adopt_file(session, Path(name), sha, row.size, row.content_type)
    Path(name).unlink(missing_ok=True)


def copy_store(source: Engine, target: Engine) -> BackupSummary:
    """Copy every row of ``source`` into the empty store ``target`` (migrated to head first), from one snapshot."""
    rows: dict[str, int] = {}
    with snapshot(source) as reader:
        revision = _revision(reader)
        _prepare_target(target, revision)
        with target.begin() as writer:
            _check_empty(writer)
            loader = _Loader(writer, from_json=False)
            for table in q.tables():
                rows[table.name] = loader.load(table, q.iter_rows(reader, table))
            loader.finish()
    return BackupSummary(revision, rows, rows.get("blobs", 0))
