"""The ``fieldsync`` command line on a real, committed database of each store (click's CliRunner).

Rules: CLI-1 ``--help`` shows Fieldsync's options only (no Flask ``-e/-A/--debug``), and ``--version``;
CLI-2 a command that writes one row imports neither pyxform, Alembic nor APScheduler; CLI-3 users
list/disable/enable/set-password, with the password rules; CLI-4 devices list/revoke/reissue: a
reissue revokes the old token and prints the new Collect URL and its QR code, tokens stay stored
hashed; CLI-5 forms upload/list/publish, an error names pyxform's sheet and row; CLI-6 ``demo`` is
idempotent and its device URL keeps working.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import REPO, Backend, fresh_database_url

COOP_XLSX = REPO / "examples" / "forms" / "coop_diagnostic.xlsx"
PASSWORD = "correct horse battery"


class Cli:
    """Runs ``fieldsync`` commands against one fresh database (each command builds its own app)."""

    def __init__(self, url: str, var_dir: Path) -> None:
        self.url = url
        self.apps: list[Any] = []
        self.env = {"FIELDSYNC_DATABASE_URL": url, "FIELDSYNC_VAR_DIR": str(var_dir), "FIELDSYNC_LOG_REQUESTS": "0"}

    def run(self, *args: str, ok: bool = True, input: str | None = None) -> str:
        """Run one command; assert its exit status (0 when ``ok``, else 1) and return what it printed."""
        from server.cli import main

        result = CliRunner().invoke(main, list(args), env=self.env, input=input, catch_exceptions=False)
        assert result.exit_code == (0 if ok else 1), result.output
        return result.output

    def app(self):  # type: ignore[no-untyped-def]
        """An app on the same database and secret key, to check what phones and the API see."""
        from server import create_app

        app = create_app(
            {"DATABASE_URL": self.url, "VAR_DIR": self.env["FIELDSYNC_VAR_DIR"], "LOG_REQUESTS": False, "TESTING": True}
        )
        self.apps.append(app)
        return app

    def close(self) -> None:
        """Close the connections of the apps built."""
        for app in self.apps:
            app.extensions["fieldsync.store"].engine.dispose()


@pytest.fixture(scope="module")
def cli(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One committed database per store for the module's tests (each uses its own names)."""
    tmp = tmp_path_factory.mktemp(f"cli-{backend.name}")
    url, cleanup = fresh_database_url(backend.name, tmp)
    runner = Cli(url, tmp / "var")
    try:
        yield runner
    finally:
        runner.close()
        cleanup()


@pytest.fixture(scope="module")
def project_id(cli: Cli) -> int:
    return int(cli.run("projects", "create", "Programme CLI").strip())


def test_help_shows_fieldsync_options_only(cli: Cli) -> None:
    out = cli.run("--help")
    for flask_option in ("--env-file", "--app", "--debug", "-A,", "-e,"):
        assert flask_option not in out
    assert "--version" in out
    for command in ("forms", "users", "devices", "demo", "export", "scheduler"):
        assert command in out
    assert cli.run("--version").startswith("fieldsync, version ")


def test_a_one_row_command_imports_no_heavy_module(cli: Cli) -> None:
    script = (
        "import sys\n"
        "from server.cli import main\n"
        "try:\n"
        "    main(['projects', 'create', 'Programme léger'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print('loaded:', sorted(m for m in ('pyxform', 'alembic', 'apscheduler', 'openpyxl') if m in sys.modules))\n"
    )
    env = {**os.environ, **cli.env, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


@pytest.mark.parametrize(
    ("password", "words"),
    [("short", "at least 10"), ("password123", "commonly used"), ("qwertyuiop", "commonly used")],
    ids=["too-short", "breached", "keyboard-row"],
)
def test_users_create_refuses_weak_passwords(cli: Cli, password: str, words: str) -> None:
    out = cli.run("users", "create", "weakling", "--role", "admin", "--password", password, ok=False)
    assert words in out and "weak_password" in out
    assert "weakling" not in cli.run("users", "list")


def test_users_list_disable_enable_and_set_password(cli: Cli, project_id: int) -> None:
    from server.auth import principal_from_password

    cli.run("users", "create", "hafsa", "--role", "analyst", "--project", str(project_id), "--password", PASSWORD)
    listed = cli.run("users", "list")
    assert any(line.split()[1:4] == ["hafsa", "-", "active"] for line in listed.splitlines()[1:])
    assert "disabled user hafsa" in cli.run("users", "disable", "hafsa")
    assert any(line.split()[1:4] == ["hafsa", "-", "disabled"] for line in cli.run("users", "list").splitlines())
    with cli.app().test_request_context():
        assert principal_from_password("hafsa", PASSWORD) is None
    cli.run("users", "enable", "hafsa")
    assert "commonly used" in cli.run("users", "set-password", "hafsa", "--password", "1234567890", ok=False)
    cli.run("users", "set-password", "hafsa", input="a new pass phrase\na new pass phrase\n")
    with cli.app().test_request_context():
        assert principal_from_password("hafsa", PASSWORD) is None
        assert principal_from_password("hafsa", "a new pass phrase") is not None
    assert "not_found" in cli.run("users", "disable", "nobody-here", ok=False)


def _printed(out: str, key: str) -> str:
    return out.split(f"{key}: ")[1].split()[0]


def test_devices_create_list_revoke_reissue(cli: Cli, project_id: int) -> None:
    from server.db.models import AccessToken
    from server.passwords import token_hash
    from server.services.collect_settings import collect_payload, qr_terminal
    from server.store import get_store

    created = cli.run("devices", "create", "--project", str(project_id), "--name", "Tel Ouarzazate", "--no-qr")
    device_id = int(created.split("device ")[1].split(":")[0])
    old_token = _printed(created, "token")
    listed = cli.run("devices", "list", "--project", str(project_id))
    assert any(
        line.split()[:3] == [str(device_id), "Tel", "Ouarzazate"] and " live " in line for line in listed.splitlines()
    )

    out = cli.run(
        "devices", "reissue", "--project", str(project_id), str(device_id), "--base-url", "http://10.1.2.3:5000"
    )
    new_token = _printed(out, "token")
    url = _printed(out, "collect_url")
    assert new_token != old_token
    assert url == f"http://10.1.2.3:5000/v1/key/{new_token}/projects/{project_id}"
    assert qr_terminal(collect_payload(url, "Programme CLI")) in out
    app = cli.app()
    with app.app_context():
        session = get_store().sessions()
        rows = {row.token_hash: row for row in session.scalars(select(AccessToken)).all()}
        session.close()
    # Stored hashed: neither secret appears in the table, and the old one is revoked.
    assert all(new_token not in h and old_token not in h for h in rows)
    assert rows[token_hash(old_token)].revoked_at is not None
    assert rows[token_hash(new_token)].revoked_at is None and rows[token_hash(new_token)].name == "Tel Ouarzazate"
    client = app.test_client()
    assert client.get(f"/v1/key/{old_token}/projects/{project_id}/formList").status_code == 403
    assert client.get(f"/v1/key/{new_token}/projects/{project_id}/formList").status_code == 200

    new_id = int(out.split("\ndevice ")[1].split(":")[0])
    assert "revoked device" in cli.run("devices", "revoke", "--project", str(project_id), str(new_id))
    assert client.get(f"/v1/key/{new_token}/projects/{project_id}/formList").status_code == 403
    assert "not_found" in cli.run("devices", "reissue", "--project", str(project_id), "999999", ok=False)


def _broken_workbook(path: Path) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    survey = book.active
    assert survey is not None
    survey.title = "survey"
    survey.append(["type", "name", "label"])
    survey.append(["text", "nom", "Nom"])
    survey.append(["select_one missing_list", "choix", "Choix"])
    choices = book.create_sheet("choices")
    choices.append(["list_name", "name", "label"])
    choices.append(["yes_no", "yes", "Oui"])
    settings = book.create_sheet("settings")
    settings.append(["form_id", "version"])
    settings.append(["broken_form", "1"])
    book.save(path)
    return path


def test_forms_upload_list_publish(cli: Cli, project_id: int, tmp_path: Path) -> None:
    out = cli.run("forms", "upload", "--project", str(project_id), str(COOP_XLSX))
    assert out.startswith("form coop_diagnostic version ") and "(draft)" in out
    version = out.split(" version ")[1].split()[0]
    assert "unchanged" in cli.run("forms", "upload", "--project", str(project_id), str(COOP_XLSX))
    listed = cli.run("forms", "list", "--project", str(project_id))
    assert any(line.split()[:4] == ["coop_diagnostic", "open", "-", version] for line in listed.splitlines())
    assert "published" in cli.run("forms", "publish", "--project", str(project_id), "coop_diagnostic")
    listed = cli.run("forms", "list", "--project", str(project_id))
    assert any(line.split()[:4] == ["coop_diagnostic", "open", version, "-"] for line in listed.splitlines())
    assert "no_draft" in cli.run("forms", "publish", "--project", str(project_id), "coop_diagnostic", ok=False)

    failed = cli.run(
        "forms", "upload", "--project", str(project_id), str(_broken_workbook(tmp_path / "b.xlsx")), ok=False
    )
    assert "missing_list" in failed and "(xlsform_invalid; sheet 'survey', row 3)" in failed


def test_demo_is_idempotent_and_its_device_url_keeps_working(cli: Cli) -> None:
    first = cli.run("demo", "--no-qr")
    second = cli.run("demo")
    url = _printed(first, "ODK Collect server URL")
    assert _printed(second, "ODK Collect server URL") == url
    assert "Scan" not in first and "scan this QR code" in second
    path = url.removeprefix("http://127.0.0.1:5000")
    demo_project = path.split("/projects/")[1]
    live = [line for line in cli.run("devices", "list", "--project", demo_project).splitlines() if " live " in line]
    assert len(live) == 1
    assert cli.app().test_client().get(f"{path}/formList").status_code == 200


def test_a_store_never_migrated_says_to_run_init_db(tmp_path: Path) -> None:
    empty = Cli(f"sqlite:///{tmp_path / 'empty.sqlite3'}", tmp_path / "var")
    out = empty.run("users", "list", ok=False)
    assert "fieldsync init-db" in out and "no such table" in out
