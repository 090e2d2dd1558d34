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
    sqlite = connection.dialect.name == "sqlite"
    # SQLite cannot ALTER most things: batch mode rebuilds a table (copy, DROP, rename). With foreign
    # keys enforced that DROP would delete every row referencing the table, cascading down to versions
    # and attachments. Enforcement is off while migrating (the PRAGMA only works outside a
    # transaction, so it goes straight to the driver), and every row is checked before the commit.
    driver = connection.connection.driver_connection if sqlite else None
    if driver is not None:
        driver.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=sqlite,
            # SQLite's DDL is transactional: the whole run is one transaction, rolled back on failure.
            transactional_ddl=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(
                        f"rows break a foreign key after migrating (table, rowid, parent, fk): {broken[:10]}"
                    )
        connection.commit()
    finally:
        if driver is not None:
            if connection.in_transaction():
                connection.rollback()  # a failed run: the PRAGMA below only works outside a transaction
            driver.execute("PRAGMA foreign_keys=ON")
