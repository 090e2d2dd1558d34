"""Shared fixtures: the corpus, a real store per backend (SQLite always, PostgreSQL when configured),
an app whose every test runs inside a transaction that is rolled back, and named personas.

Each backend gets one connection for the whole session holding an outer transaction; the personas
are created in it once; every test runs inside a SAVEPOINT that is rolled back afterwards, and the
app's sessions join that connection with ``join_transaction_mode="create_savepoint"`` so services
can open and commit their own transactions as in production.
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

REPO = Path(__file__).resolve().parent.parent
CORPUS = (REPO / ".." / "shared" / "corpus").resolve()
# Tests never time: Hypothesis's default 200 ms deadline per example fails a property test whose examples
# convert a form (pyxform) on a loaded CI machine, without saying anything about the property.
settings.register_profile("fieldsync", deadline=None)
settings.load_profile("fieldsync")

POSTGRES_URL = os.environ.get("FIELDSYNC_TEST_POSTGRES_URL")
PERSONA_PASSWORD = "correct horse battery"


@pytest.fixture(scope="session", autouse=True)
def _shared_corpus_conversions(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Corpus conversions are shared by this run's processes (see tests/corpus_conversions.py)."""
    from tests import corpus_conversions

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # each xdist worker has a subdirectory of the run's directory
    corpus_conversions.use_directory(base / "corpus-conversions")


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real XLSForms and submissions (skips when absent)."""
    if not CORPUS.is_dir():
        pytest.skip(reason=f"the shared corpus is absent (looked in {CORPUS})")
    return CORPUS


# ---------------------------------------------------------------------------------------------
# Databases


@dataclass
class Backend:
    """One real database prepared for the test session."""

    name: str
    url: str
    engine: Engine
    connection: Connection
    # Built lazily on this database and dropped with it: pytest may tear a session-scoped backend down and
    # set it up again within one process (xdist hands a worker tests of both params in any order), and a
    # cache that outlived its database would hand out personas and tokens the new database never had.
    personas: Personas | None = None
    app: Flask | None = None


def _postgres_schema_url(base_url: str, schema: str) -> str:
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}"


def create_postgres_schema(base_url: str, prefix: str = "fs_test") -> tuple[str, str]:
    """Create a fresh PostgreSQL schema; return (schema name, URL whose search_path is that schema)."""
    from server.db.engine import make_engine

    schema = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = make_engine(base_url, pool_size=1, max_overflow=0)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return schema, _postgres_schema_url(base_url, schema)


def drop_postgres_schema(base_url: str, schema: str) -> None:
    """Drop a schema created by ``create_postgres_schema``."""
    from server.db.engine import make_engine

    admin = make_engine(base_url, pool_size=1, max_overflow=0)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def terminate_postgres_backend(pid: int) -> None:
    """End a PostgreSQL backend (server process of one connection), as a restart or an administrator would."""
    import psycopg

    assert POSTGRES_URL
    with psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def fresh_database_url(backend: str, tmp_dir: Path) -> tuple[str, Any]:
    """Return (url, cleanup) for an empty, migrated database that tests may commit to."""
    from server.db.engine import make_engine
    from server.db.migrate import upgrade_to_head

    if backend == "postgresql":
        assert POSTGRES_URL
        schema, url = create_postgres_schema(POSTGRES_URL)

        def cleanup() -> None:
            drop_postgres_schema(POSTGRES_URL, schema)
    else:
        url = f"sqlite:///{tmp_dir / 'fresh.sqlite3'}"

        def cleanup() -> None:
            return None

    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    return url, cleanup


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A migrated database of each kind, held open for the session."""
    from server.db.engine import make_engine

    name: str = request.param
    if name == "postgresql" and not POSTGRES_URL:
        pytest.skip(reason="FIELDSYNC_TEST_POSTGRES_URL is not set (CI sets it; see .ci/run)")
    url, cleanup = fresh_database_url(name, Path(tempfile.mkdtemp(prefix="fieldsync-test-")))
    engine = make_engine(url)
    connection = engine.connect()
    outer = connection.begin()
    try:
        yield Backend(name, url, engine, connection)
    finally:
        outer.rollback()
        connection.close()
        engine.dispose()
        cleanup()


# ---------------------------------------------------------------------------------------------
# Personas


@dataclass
class Persona:
    """A named test user (or device) with ready-made auth headers."""

    name: str
    role: str
    id: int
    headers: dict[str, str] = field(default_factory=dict)  # bearer token
    basic: dict[str, str] = field(default_factory=dict)  # HTTP Basic
    token: str = ""


@dataclass
class Personas:
    """The cast: a project and one persona per role, plus an outsider and a device."""

    project_id: int
    other_project_id: int
    admin: Persona
    manager: Persona
    coach: Persona
    analyst: Persona
    outsider: Persona
    device: Persona

    def all(self) -> dict[str, Persona]:
        """Return every persona by name."""
        return {p.name: p for p in (self.admin, self.manager, self.coach, self.analyst, self.outsider, self.device)}

    @property
    def collect_prefix(self) -> str:
        """Return the device's ODK Collect server path."""
        return f"/v1/key/{self.device.token}/projects/{self.project_id}"


def _basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _make_sessions(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=connection, expire_on_commit=False, autoflush=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
def db(backend: Backend) -> Iterator[sessionmaker[Session]]:
    """A session factory whose every change is rolled back after the test."""
    sessions = _make_sessions(backend.connection)
    if backend.personas is None:
        backend.personas = _create_personas(sessions)
    nested = backend.connection.begin_nested()
    try:
        yield sessions
    finally:
        if nested.is_active:
            nested.rollback()


def _create_personas(sessions: sessionmaker[Session]) -> Personas:
    from server.db.models import User
    from server.services import accounts as svc

    session = sessions()
    project = svc.create_project(session, "Programme test — برنامج")
    other = svc.create_project(session, "Other programme")
    people: dict[str, Persona] = {}
    for name, role in (
        ("admin", "admin"),
        ("manager", "manager"),
        ("coach", "coach"),
        ("analyst", "analyst"),
        ("outsider", "coach"),
    ):
        user = svc.create_user(session, f"{name}-persona", PERSONA_PASSWORD, is_admin=role == "admin")
        if role != "admin":
            svc.set_membership(session, other.id if name == "outsider" else project.id, user.username, role)
        db_user = session.get(User, user.id)
        assert db_user is not None
        issued = svc.create_session_token(session, db_user)
        people[name] = Persona(
            name,
            role,
            user.id,
            {"Authorization": f"Bearer {issued.token}"},
            _basic(user.username, PERSONA_PASSWORD),
            issued.token,
        )
    device = svc.create_device(session, project.id, "test phone")
    people["device"] = Persona(
        "device", "coach", device.id, {"Authorization": f"Bearer {device.token}"}, {}, device.token
    )
    session.close()
    return Personas(
        project.id,
        other.id,
        people["admin"],
        people["manager"],
        people["coach"],
        people["analyst"],
        people["outsider"],
        people["device"],
    )


@pytest.fixture
def personas(db: sessionmaker[Session], backend: Backend) -> Personas:
    """The named personas of this backend."""
    assert backend.personas is not None
    return backend.personas


# ---------------------------------------------------------------------------------------------
# The app


class BufferedClient(FlaskClient):
    """A test client that reads each answer whole, so the request ends (and its session closes) in the call.

    Unread streamed answers would otherwise end when garbage-collected, possibly during a later test:
    their after-close work (a token's ``last_used_at``) then opened a session on that test's connection
    in the middle of its savepoints.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def app(db: sessionmaker[Session], backend: Backend, tmp_path: Path) -> Iterator[Flask]:
    """The real app on the test's rolled-back transaction, with its own storage folders.

    The app object is shared by the tests of a backend (building one registers ~200 URL rules); its
    configuration is restored after each test, so a test may change limits or flags freely.
    """
    from server import create_app
    from server.store import Store

    flask_app = backend.app
    if flask_app is None:
        flask_app = create_app(
            {
                "TESTING": True,
                "DATABASE_URL": backend.url,
                "VAR_DIR": str(tmp_path / "var"),
                "SECRET_KEY": "test-secret",
                "LOG_REQUESTS": False,
                # Uploads finish in the request (201/200), never as a 202 job whose thread would share
                # the test's connection; tests/server/test_forms_jobs.py tests jobs on a committed store.
                "FORM_CONVERT_WAIT": 600.0,
            }
        )
        flask_app.extensions["fieldsync.store"].engine.dispose()
        flask_app.test_client_class = BufferedClient
        backend.app = flask_app
    saved_config = dict(flask_app.config)
    storage = tmp_path / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    flask_app.config.update(
        {"VAR_DIR": str(tmp_path / "var"), "STORAGE_DIR": str(storage), "EXPORT_DIR": str(tmp_path / "exports")}
    )
    flask_app.extensions["fieldsync.store"] = Store(backend.engine, db, storage)
    try:
        yield flask_app
    finally:
        flask_app.config.clear()
        flask_app.config.update(saved_config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def session(db: sessionmaker[Session]) -> Iterator[Session]:
    """A session on the test's transaction, for arranging and asserting."""
    s = db()
    try:
        yield s
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# The run with PostgreSQL runs what PostgreSQL can change

# The pure layers never open a database (ARCHITECTURE.md; lint-imports forbids it): their tests give
# the same result in both runs of CI.
PURE_TEST_DIRS = ("forms", "sync", "exports")
EVERYTHING = bool(os.environ.get("FIELDSYNC_TEST_EVERYTHING"))


def _runs_the_same_on_any_store(item: pytest.Item) -> bool:
    """Tell whether ``item`` gives the same result whether PostgreSQL is set or not (see the hook below)."""
    relative = item.path.relative_to(REPO / "tests").parts
    if relative and relative[0] in PURE_TEST_DIRS:
        return True
    # The console's browser stories run against a server on SQLite whatever the run (console/conftest.py).
    return item.get_closest_marker("browser") is not None or _sqlite_case_of_the_first_run(item)


def _sqlite_case_of_the_first_run(item: pytest.Item) -> bool:
    """Tell whether ``item`` is the SQLite case of the ``backend`` fixture that the run without PostgreSQL runs.

    That fixture skips only its PostgreSQL case when no PostgreSQL is set, so the first run of CI has run
    this case already. A case that anything else may skip without PostgreSQL (a ``skipif``, a
    ``postgres_only`` mark) is kept: the run with PostgreSQL may be the only one that runs it.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None or callspec.params.get("backend") != "sqlite":
        return False
    return not any(item.iter_markers("skipif")) and item.get_closest_marker("postgres_only") is None


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say which store the run uses and what it leaves to the run without PostgreSQL."""
    if not POSTGRES_URL:
        return "stores: SQLite (set FIELDSYNC_TEST_POSTGRES_URL for the PostgreSQL run)"
    if EVERYTHING:
        return "stores: SQLite and PostgreSQL, every test (FIELDSYNC_TEST_EVERYTHING)"
    return (
        "stores: SQLite and PostgreSQL; the SQLite cases, the pure layers' tests and the browser stories, which "
        "give the same result without PostgreSQL, are left to the run without it (FIELDSYNC_TEST_EVERYTHING=1 "
        "runs them here too)"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say what the PostgreSQL run left to the run without PostgreSQL (xdist's controller collects nothing)."""
    if POSTGRES_URL and not EVERYTHING:
        terminalreporter.write_line(
            "the SQLite cases, the pure layers' tests and the browser stories were deselected: they give the "
            "same result without PostgreSQL and run in the run without it (tests/conftest.py; "
            "FIELDSYNC_TEST_EVERYTHING=1 keeps them)"
        )


# ---------------------------------------------------------------------------------------------
# Long scenarios: one store per run

LONG_MARKERS = ("one_store_per_run", "browser")


def _long_first(items: list[pytest.Item]) -> None:
    """Move the long scenarios and the browser stories to the front, each group in collection order.

    pytest-xdist's ``worksteal`` hands each worker a contiguous share and lets an idle worker take the end
    of another's queue, but never the test it is running. Started last, a 30 s story keeps one worker busy
    while the other has nothing left; started first, the short tests behind it are shared out instead.
    """
    items.sort(key=lambda item: not any(item.get_closest_marker(name) for name in LONG_MARKERS))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run a ``one_store_per_run`` test's SQLite cases only when no PostgreSQL is set.

    These are the longest scenarios (multi-process stories, property tests over whole exports). CI runs
    the suite twice, SQLite alone and then SQLite with PostgreSQL (``.ci/run``): the first run covers
    their SQLite cases, so the second runs only their PostgreSQL ones, which keeps ``make test`` within
    its time budget without leaving either store untested.

    A ``one_store_per_run`` test with no store parameter runs on SQLite by construction (a live server
    on a SQLite file), so it too runs only without PostgreSQL. With PostgreSQL set, the tests that give the
    same result without it (``_runs_the_same_on_any_store``: the SQLite cases, the pure layers', the browser
    stories) are deselected unless ``FIELDSYNC_TEST_EVERYTHING`` is set.

    The long scenarios and the browser stories run first (``_long_first``).
    """
    _long_first(items)
    if not POSTGRES_URL:
        return
    if not EVERYTHING:
        left: list[pytest.Item] = []
        kept: list[pytest.Item] = []
        for item in items:
            (left if _runs_the_same_on_any_store(item) else kept).append(item)
        if left:
            config.hook.pytest_deselected(items=left)
            items[:] = kept
    reason = "a long scenario: its SQLite case runs in the run without PostgreSQL (see tests/conftest.py)"
    for item in items:
        if item.get_closest_marker("one_store_per_run") is None:
            continue
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        stores = [value for value in params if isinstance(value, str) and value.startswith(("sqlite", "postgresql"))]
        if not stores or any(value.startswith("sqlite") for value in stores):
            item.add_marker(pytest.mark.skip(reason=reason))
