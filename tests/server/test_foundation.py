"""Foundation rules: health, input validation, credentials, migrations and the command line.

Rules:
- F1 ``/healthz`` is 200 when the store answers and is at the newest migration, 503 otherwise.
- F2 malformed JSON, unknown fields and wrong types are 400 naming the field; nothing is written.
- F3 wrong, revoked or expired credentials are 401 with the JSON error shape.
- F4 ``init-db`` twice is harmless; an older database is upgraded; models match the migrations.
- F5 the audit log reads by time: ``since`` (inclusive) and ``until`` (exclusive), ISO 8601 with or
  without an offset (none is UTC); a date that does not parse is a 400 naming the field.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.base import Base, utcnow
from server.db.models import AccessToken, AuditEvent, Project, User
from tests.conftest import Backend, Personas, fresh_database_url


def test_healthz_reports_store_and_migration(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["migration"] == body["head"]


def _counts(session: Session) -> tuple[int, int, int]:
    session.rollback()
    return (
        session.scalar(select(func.count()).select_from(Project)) or 0,
        session.scalar(select(func.count()).select_from(User)) or 0,
        session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b'["a list"]', None),
        (b'{"name": "ok", "colour": "red"}', "colour"),
        (b'{"name": 42}', "name"),
        (b"{}", "name"),
        (b'{"name": ""}', "name"),
    ],
    ids=["malformed", "not-an-object", "unknown-field", "wrong-type", "missing", "empty"],
)
def test_bad_project_input_is_400_naming_the_field(
    client: FlaskClient, personas: Personas, session: Session, body: bytes, field: str | None
) -> None:
    before = _counts(session)
    response = client.post("/v1/projects", data=body, content_type="application/json", headers=personas.admin.headers)
    assert response.status_code == 400
    error = response.get_json()
    assert set(error) == {"code", "message", "details"}
    if field is not None:
        assert field in error["details"]["fields"]
        assert field in error["message"]
    assert _counts(session) == before


def test_bad_user_input_names_every_bad_field(client: FlaskClient, personas: Personas) -> None:
    response = client.post(
        "/v1/users", json={"email": "x", "password": "short", "isAdmin": "maybe"}, headers=personas.admin.headers
    )
    assert response.status_code == 400
    assert set(response.get_json()["details"]["fields"]) == {"email", "password", "isAdmin"}


def test_duplicate_project_name_is_409_and_writes_nothing(
    client: FlaskClient, personas: Personas, session: Session
) -> None:
    assert client.post("/v1/projects", json={"name": "Souss-Massa"}, headers=personas.admin.headers).status_code == 200
    before = _counts(session)
    response = client.post("/v1/projects", json={"name": "Souss-Massa"}, headers=personas.admin.headers)
    assert response.status_code == 409
    assert response.get_json()["details"]["problem"] == "project_name_taken"
    assert _counts(session) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic bm9ib2R5OndoYXRldmVy"},  # nobody:whatever
        {"Authorization": "Basic !!!"},
    ],
    ids=["unknown-bearer", "wrong-password", "malformed-basic"],
)
def test_wrong_credentials_are_401(client: FlaskClient, personas: Personas, headers: dict[str, str]) -> None:
    response = client.get("/v1/projects", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["details"]["problem"] == "unauthenticated"


def test_basic_auth_with_the_right_password_works(client: FlaskClient, personas: Personas) -> None:
    assert client.get("/v1/users/current", headers=personas.manager.basic).get_json()["username"] == "manager-persona"


def test_revoked_and_expired_device_tokens_are_401(client: FlaskClient, personas: Personas, session: Session) -> None:
    created = client.post(
        f"/v1/projects/{personas.project_id}/app-users",
        json={"displayName": "lost phone"},
        headers=personas.manager.headers,
    ).get_json()
    assert created["collectUrl"].endswith(f"/v1/key/{created['token']}/projects/{personas.project_id}")
    device_headers = {"Authorization": f"Bearer {created['token']}"}
    assert client.get(f"/v1/projects/{personas.project_id}", headers=device_headers).status_code == 200
    assert (
        client.delete(
            f"/v1/projects/{personas.project_id}/app-users/{created['id']}", headers=personas.manager.headers
        ).status_code
        == 200
    )
    assert client.get(f"/v1/projects/{personas.project_id}", headers=device_headers).status_code == 401

    expiring = client.post(
        f"/v1/projects/{personas.project_id}/app-users",
        json={"displayName": "old phone"},
        headers=personas.manager.headers,
    ).get_json()
    row = session.get(AccessToken, expiring["id"])
    assert row is not None
    row.expires_at = utcnow() - timedelta(minutes=1)
    session.commit()
    response = client.get(
        f"/v1/projects/{personas.project_id}", headers={"Authorization": f"Bearer {expiring['token']}"}
    )
    assert response.status_code == 401


def test_session_token_from_password(client: FlaskClient, personas: Personas) -> None:
    response = client.post("/v1/sessions", json={"email": "coach-persona", "password": "nope"})
    assert response.status_code == 401
    token = client.post("/v1/sessions", json={"email": "coach-persona", "password": "correct horse battery"}).get_json()
    me = client.get("/v1/users/current", headers={"Authorization": f"Bearer {token['token']}"})
    assert me.get_json()["username"] == "coach-persona"


def test_changes_are_audited(client: FlaskClient, personas: Personas) -> None:
    client.post(
        f"/v1/projects/{personas.project_id}/assignments/viewer/{personas.coach.id}", headers=personas.manager.headers
    )
    events = client.get(
        f"/v1/audits?projectId={personas.project_id}&action=membership.set", headers=personas.admin.headers
    ).get_json()
    assert events[0]["actor"] == f"user:{personas.manager.id}"
    assert events[0]["details"] == {"role": "analyst"}


def test_the_audit_log_reads_by_time(client: FlaskClient, personas: Personas, session: Session) -> None:
    from server.db.models import AuditEvent

    for hour in (10, 11, 12):
        session.add(AuditEvent(actor="system", action="test.clock", at=datetime(2026, 1, 1, hour, tzinfo=UTC)))
    session.commit()

    def hours(query: str) -> list[int]:
        response = client.get(f"/v1/audits?action=test.clock&{query}", headers=personas.admin.headers)
        assert response.status_code == 200, response.get_json()
        return [datetime.fromisoformat(e["at"]).astimezone(UTC).hour for e in response.get_json()]

    assert hours("") == [12, 11, 10]
    assert hours("since=2026-01-01T11:00:00Z") == [12, 11]
    assert hours("until=2026-01-01T11:00:00Z") == [10]
    assert hours("since=2026-01-01T11:00:00&until=2026-01-01T12:00:00") == [11]  # no offset: UTC
    assert hours("since=2026-01-01T12:00:00%2B01:00") == [12, 11]  # 11:00 UTC
    bad = client.get("/v1/audits?since=yesterday", headers=personas.admin.headers)
    assert bad.status_code == 400 and "since" in bad.get_data(as_text=True)


# ---------------------------------------------------------------------------------------------
# Migrations and the command line (on their own fresh databases)


@pytest.fixture
def fresh_url(backend: Backend, tmp_path: Path):  # type: ignore[no-untyped-def]
    url, cleanup = fresh_database_url(backend.name, tmp_path)
    yield url
    cleanup()


def test_models_match_the_migrations(fresh_url: str) -> None:
    from server.db.engine import make_engine

    engine = make_engine(fresh_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_check_constraints_have_the_models_names(fresh_url: str, tmp_path: Path) -> None:
    """compare_metadata ignores check constraints: their names, as the models give them, are compared here."""
    from sqlalchemy import inspect

    from server.db.engine import make_engine

    def names(url: str) -> dict[str, set[str]]:
        engine = make_engine(url)
        inspector = inspect(engine)
        found = {t: {c["name"] for c in inspector.get_check_constraints(t)} for t in Base.metadata.tables}
        engine.dispose()
        return {table: checks for table, checks in found.items() if checks}

    models_url = f"sqlite:///{tmp_path / 'models.sqlite3'}"
    models = make_engine(models_url)
    Base.metadata.create_all(models)
    models.dispose()
    expected = names(models_url)
    assert expected["forms"] == {"ck_forms_state"}
    assert names(fresh_url) == expected


def _cli(url: str, tmp_path: Path, *args: str) -> str:
    from click.testing import CliRunner

    from server.cli import main

    env = {"FIELDSYNC_DATABASE_URL": url, "FIELDSYNC_VAR_DIR": str(tmp_path / "var"), "FIELDSYNC_LOG_REQUESTS": "0"}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_db_twice_and_upgrade_from_an_older_revision(backend: Backend, tmp_path: Path) -> None:
    from server.db.engine import make_engine
    from server.db.migrate import alembic_config, current_revision, head_revision

    if backend.name == "postgresql":
        from tests.conftest import POSTGRES_URL, create_postgres_schema, drop_postgres_schema

        assert POSTGRES_URL
        schema, url = create_postgres_schema(POSTGRES_URL)
    else:
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = make_engine(url)
    try:
        from alembic import command

        head = head_revision(engine)
        command.upgrade(alembic_config(engine), "0001_foundation")
        assert f"from migration 0001_foundation to {head}" in _cli(url, tmp_path, "init-db")
        assert current_revision(engine) == head
        assert f"already at the newest migration ({head})" in _cli(url, tmp_path, "init-db")
        assert current_revision(engine) == head
    finally:
        engine.dispose()
        if backend.name == "postgresql":
            drop_postgres_schema(POSTGRES_URL, schema)


def test_init_db_on_an_empty_database_says_it_created_the_schema(backend: Backend, tmp_path: Path) -> None:
    if backend.name == "postgresql":
        from tests.conftest import POSTGRES_URL, create_postgres_schema, drop_postgres_schema

        assert POSTGRES_URL
        schema, url = create_postgres_schema(POSTGRES_URL)
    else:
        url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    try:
        said = _cli(url, tmp_path, "init-db")
        assert "created the database schema" in said and "already" not in said
    finally:
        if backend.name == "postgresql":
            drop_postgres_schema(POSTGRES_URL, schema)


def test_cli_creates_project_user_and_device(fresh_url: str, tmp_path: Path) -> None:
    project_id = int(_cli(fresh_url, tmp_path, "projects", "create", "Drâa-Tafilalet").strip())
    assert "created user" in _cli(
        fresh_url,
        tmp_path,
        "users",
        "create",
        "amina",
        "--role",
        "manager",
        "--password",
        "tres-secret",
        "--project",
        str(project_id),
    )
    out = _cli(
        fresh_url,
        tmp_path,
        "devices",
        "create",
        "--project",
        str(project_id),
        "--name",
        "Tel 1",
        "--base-url",
        "http://10.0.0.5:5000",
    )
    token = out.split("token: ")[1].split()[0]
    assert f"collect_url: http://10.0.0.5:5000/v1/key/{token}/projects/{project_id}" in out


@pytest.mark.one_store_per_run
def test_demo_is_idempotent(fresh_url: str, tmp_path: Path) -> None:
    first = _cli(fresh_url, tmp_path, "demo")
    second = _cli(fresh_url, tmp_path, "demo")
    assert "ODK Collect server URL" in first and "ODK Collect server URL" in second
    assert "beneficiary_registration: 4,230 synthetic submissions loaded" in first
    assert "beneficiary_registration already has 4,230 submissions" in second


def test_app_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from server import create_app

    monkeypatch.setenv("FIELDSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    monkeypatch.setenv("FIELDSYNC_STORAGE_DIR", str(tmp_path / "blobs"))
    monkeypatch.setenv("FIELDSYNC_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("FIELDSYNC_SECRET_KEY", raising=False)
    app: Flask = create_app()
    assert app.config["DATABASE_URL"].endswith("env.sqlite3")
    assert (tmp_path / "blobs").is_dir()
    key = (tmp_path / "var" / "secret_key").read_text()
    assert app.config["SECRET_KEY"] == key and len(key) >= 40
    assert create_app().config["SECRET_KEY"] == key  # kept, not regenerated


def _store_submissions(url: str, tmp_path: Path, count: int) -> None:
    """Publish the photo form in a new project of ``url``'s store and POST ``count`` submissions to it."""
    from server.store import get_store
    from tests.server.test_submissions_support import photo_project_app, photo_submission

    app, project_id, token = photo_project_app(url, tmp_path, "migration-test")
    client = app.test_client()
    for index in range(count):
        xml = photo_submission(f"uuid:migrated-{index}", ["p.jpg"])
        data = {"xml_submission_file": (io.BytesIO(xml), "submission.xml")}
        response = client.post(f"/v1/key/{token}/projects/{project_id}/submission", data=data)
        assert response.status_code == 201, response.data
    with app.app_context():
        get_store().engine.dispose()


def _row_counts(url: str) -> dict[str, int]:
    from server.db.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as connection:
        tables = ("forms", "submissions", "submission_versions", "submission_attachments", "audit_events")
        counts = {t: int(connection.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one()) for t in tables}
    engine.dispose()
    return counts


def test_migrating_down_and_up_keeps_every_row(fresh_url: str, tmp_path: Path) -> None:
    """SQLite rebuilds tables to alter them: with foreign keys enforced, a rebuild's DROP would cascade
    and delete every version and attachment (0007's downgrade did). Every row survives both ways."""
    from alembic import command

    from server.db.engine import make_engine
    from server.db.migrate import alembic_config, current_revision, head_revision

    _store_submissions(fresh_url, tmp_path, 3)
    before = _row_counts(fresh_url)
    assert before["submission_versions"] == 3 and before["submission_attachments"] == 3
    engine = make_engine(fresh_url)
    try:
        command.downgrade(alembic_config(engine), "0006_exports")
        assert current_revision(engine) == "0006_exports"
        assert _row_counts(fresh_url) == before
        command.upgrade(alembic_config(engine), "head")
        assert current_revision(engine) == head_revision(engine)
        assert _row_counts(fresh_url) == before
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":  # enforcement is back on for the app's connections
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()


def test_an_upgrade_refused_by_a_row_changes_nothing(fresh_url: str, tmp_path: Path) -> None:
    """A submission whose form is in another project breaks 0009's composite key: the upgrade fails
    and leaves the store at 0008, with its rows, on both stores."""
    from alembic import command

    from server.db.engine import make_engine
    from server.db.migrate import alembic_config, current_revision

    _store_submissions(fresh_url, tmp_path, 2)
    engine = make_engine(fresh_url)
    try:
        command.downgrade(alembic_config(engine), "0008_partial_deprecated_index")
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO projects (name, created_at, archived) VALUES ('elsewhere', CURRENT_TIMESTAMP, false)"
            )
            connection.exec_driver_sql(
                "UPDATE submissions SET project_id = (SELECT max(id) FROM projects)"
                " WHERE id = (SELECT min(id) FROM submissions)"
            )
        before = _row_counts(fresh_url)
        with pytest.raises(Exception, match=r"foreign key|violates"):
            command.upgrade(alembic_config(engine), "head")
        assert current_revision(engine) == "0008_partial_deprecated_index"
        assert _row_counts(fresh_url) == before
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
