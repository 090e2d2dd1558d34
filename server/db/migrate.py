"""Alembic, driven from code: upgrade to head and report whether a database is current."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from server.config import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def alembic_config(engine: Engine) -> Config:
    """Build an Alembic config bound to ``engine`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade_to_head(engine: Engine) -> None:
    """Apply every pending migration; a database already at head is left as it is."""
    command.upgrade(alembic_config(engine), "head")


def head_revision(engine: Engine) -> str | None:
    """Return the newest migration id known to the code (read from the scripts once per process).

    The scripts only change with a new release, which restarts the processes; loading and compiling
    every migration file cost tens of milliseconds on each health check a load balancer makes.
    """
    if not _HEAD:
        _HEAD.append(ScriptDirectory.from_config(alembic_config(engine)).get_current_head())
    return _HEAD[0]


_HEAD: list[str | None] = []


def forget_head_revision() -> None:
    """Read the scripts again at the next ``head_revision`` (tests)."""
    _HEAD.clear()


def current_revision(engine: Engine) -> str | None:
    """Return the migration id the database is at (``None`` when never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
