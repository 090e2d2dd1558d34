"""What a health check costs the requests around it: a load balancer asks every few seconds, on every host.

Rules:
- H-COST-HEAD the newest migration id is read from the migration scripts once per process, not on
  every ``/healthz`` (loading and compiling every migration file took tens of milliseconds per check).
- H-COST-PREPARED (PostgreSQL) ``/healthz`` reads without opening a transaction, so it ends without a
  ROLLBACK: psycopg answers a ROLLBACK by deallocating every statement prepared on the connection, and
  the pool lends the checked connection to the next submission, which would then be parsed and
  planned again (twice the database's work for its first ten statements).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from server.db import migrate
from server.store import get_store
from tests.conftest import POSTGRES_URL
from tests.server.fixtures_forms import committed_forms_app


def test_the_newest_migration_is_read_once_per_process(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Any] = []
    real = migrate.ScriptDirectory.from_config

    def counted(config: Any) -> Any:
        loads.append(config)
        return real(config)

    monkeypatch.setattr(migrate.ScriptDirectory, "from_config", staticmethod(counted))
    migrate.forget_head_revision()
    heads = [client.get("/healthz").get_json()["head"] for _ in range(3)]
    assert len(loads) == 1
    assert heads[0] is not None and heads == [heads[0]] * 3
    assert heads[0] == real(migrate.alembic_config(get_store(client.application).engine)).get_current_head()


@pytest.mark.skipif(not POSTGRES_URL, reason="prepared statements and ROLLBACK's deallocation are PostgreSQL's")
def test_a_health_check_leaves_the_connections_prepared_statements(tmp_path: Path) -> None:
    with committed_forms_app("postgresql", tmp_path, {}) as (app, _headers, _project):
        engine = get_store(app).engine
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            driver.execute("SELECT 1 AS health_probe", prepare=True).fetchone()
            driver.commit()  # ended without a ROLLBACK, which would deallocate it
            backend = driver.info.backend_pid
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz/ready").status_code == 200
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            # The pool lends its most recent connection (LIFO): the one the checks used.
            assert driver.info.backend_pid == backend
            row = driver.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ("%health_probe%",)
            ).fetchone()
            driver.rollback()
        assert row is not None and row[0] == 1
