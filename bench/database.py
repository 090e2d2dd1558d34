"""The bench's PostgreSQL: start the local cluster if it is down, create a fresh database, drop it after.

Every run gets its own database (``fieldsync_bench_<pid>``) so figures never depend on what an
earlier run or a developer left behind; it is dropped at the end unless asked to keep it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    """A database created for one bench run: its libpq URL and its SQLAlchemy URL."""

    name: str
    url: str  # for psycopg
    sqlalchemy_url: str  # for the server (postgresql+psycopg://)


def _pg_isready(admin_url: str) -> bool:
    if shutil.which("pg_isready") is None:
        try:
            with psycopg.connect(admin_url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    args = ["pg_isready", "-h", str(info.get("host", "127.0.0.1")), "-p", str(info.get("port", 5432))]
    return subprocess.run(args, capture_output=True, check=False).returncode == 0


def ensure_postgres_running(admin_url: str = DEFAULT_ADMIN_URL, wait_seconds: float = 30.0) -> None:
    """Start the local cluster (Debian ``pg_ctlcluster``) when ``pg_isready`` says it is down."""
    if _pg_isready(admin_url):
        return
    conf = Path("/etc/postgresql")
    versions = sorted(p.name for p in conf.iterdir()) if conf.is_dir() else []
    if not versions:
        raise RuntimeError(f"PostgreSQL is not answering at {admin_url} and no local cluster was found")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _pg_isready(admin_url):
            return
        time.sleep(0.3)
    raise RuntimeError(f"PostgreSQL did not come up within {wait_seconds:.0f} s")


def _with_database(admin_url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def _sqlalchemy_url(admin_url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    return f"postgresql+psycopg://{user}{password}@{host}:{port}/{name}"


@contextmanager
def fresh_database(admin_url: str = DEFAULT_ADMIN_URL, *, keep: bool = False) -> Iterator[BenchDatabase]:
    """Create ``fieldsync_bench_<pid>`` and drop it on exit (unless ``keep``)."""
    name = f"fieldsync_bench_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield BenchDatabase(name, _with_database(admin_url, name), _sqlalchemy_url(admin_url, name))
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_version(url: str) -> str:
    """Return PostgreSQL's ``server_version`` and a few settings that shape write figures."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
            "current_setting('shared_buffers'), current_setting('fsync')"
        ).fetchone()
    assert row is not None
    return f"{row[0]} (synchronous_commit={row[1]}, shared_buffers={row[2]}, fsync={row[3]})"


def relation_bytes(url: str, tables: list[str]) -> dict[str, int]:
    """Return ``pg_total_relation_size`` (heap + TOAST + indexes) of each existing table."""
    sizes: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        for table in tables:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
            if row and row[0]:
                size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
                sizes[table] = int(size[0]) if size else 0
    return sizes
