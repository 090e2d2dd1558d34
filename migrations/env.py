"""Alembic environment: the engine comes from server.db.migrate (or FIELDSYNC_DATABASE_URL)."""

from __future__ import annotations

from alembic import context

import server.db.models  # noqa: F401  (registers every table)
from server.config import load_config
from server.db.base import Base
from server.db.engine import make_engine

engine = context.config.attributes.get("engine")
if engine is None:
    engine = make_engine(load_config()["DATABASE_URL"])

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
