"""What frequent read-only requests cost the requests around them.

A load balancer asks ``/healthz`` every few seconds on every host; ODK Collect sends a ``HEAD`` to the
submission URL before each batch of uploads. On PostgreSQL a read-only request that ends its
transaction with a ROLLBACK makes psycopg deallocate every statement prepared on the connection, and
the pool (LIFO) lends that connection to the next submission, whose statements are then parsed and
planned again for their next ten executions (about twice the database's work for each).

Rules:
- RO-HEAD-ONCE the newest migration id is read from the migration scripts once per process, not on
  every ``/healthz`` (loading and compiling every migration file took tens of milliseconds per check).
- RO-PREPARED-HEALTH (PostgreSQL) ``/healthz`` and ``/healthz/ready`` read without a transaction: a
  statement prepared on the pooled connection is still prepared after them.
- RO-PREPARED-HEAD (PostgreSQL) so does Collect's ``HEAD`` of the device-key submission URL (still 204).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from server.db import migrate
from server.services import accounts
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


def _prepare_probe(engine: Engine) -> int:
    """Prepare a statement on the pool's most recent connection; return that connection's backend pid."""
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("SELECT 1 AS read_only_probe", prepare=True).fetchone()
        driver.commit()  # ended without a ROLLBACK, which would deallocate it
        return int(driver.info.backend_pid)


def _probe_still_prepared(engine: Engine, backend: int) -> bool:
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        # The pool lends its most recent connection (LIFO): the one the requests used.
        assert driver.info.backend_pid == backend
        row = driver.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ("%read_only_probe%",)
        ).fetchone()
        driver.rollback()
    return row is not None and row[0] == 1


@pytest.mark.skipif(not POSTGRES_URL, reason="prepared statements and ROLLBACK's deallocation are PostgreSQL's")
def test_a_health_check_leaves_the_connections_prepared_statements(tmp_path: Path) -> None:
    with committed_forms_app("postgresql", tmp_path, {}) as (app, _headers, _project):
        engine = get_store(app).engine
        backend = _prepare_probe(engine)
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz/ready").status_code == 200
        assert _probe_still_prepared(engine, backend)


@pytest.mark.skipif(not POSTGRES_URL, reason="prepared statements and ROLLBACK's deallocation are PostgreSQL's")
def test_collects_head_before_uploading_leaves_the_connections_prepared_statements(tmp_path: Path) -> None:
    with committed_forms_app("postgresql", tmp_path, {}) as (app, _headers, project):
        with app.app_context():
            session = get_store().sessions()
            device = accounts.create_device(session, project, "phone of the HEAD test")
            session.close()
        engine = get_store(app).engine
        backend = _prepare_probe(engine)
        client = app.test_client()
        answer = client.head(
            f"/v1/key/{device.token}/projects/{project}/submission?deviceID=collect%3Ahead",
            headers={"X-OpenRosa-Version": "1.0"},
        )
        assert answer.status_code == 204
        assert _probe_still_prepared(engine, backend)
