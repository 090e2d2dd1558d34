"""Scheduled exports: two scheduler processes at once write each due export exactly once.

Rules:
- S1 a schedule's cron is validated by APScheduler; its folder must stay under EXPORT_DIR/<project>.
- S2 two real ``fieldsync scheduler --once`` processes, started together against one committed database
  and replaying the same three due times, produce exactly one run row and one file per (schedule, due
  time); files are ``<project>/<folder>/<form>-s<schedule>-<UTC timestamp>.zip`` and only the newest
  ``keep`` remain.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from server import create_app
from server.auth import Principal
from server.db.models.exports import ExportRun
from server.services import accounts as accounts_svc
from server.services import exports as svc
from server.store import get_store
from tests.conftest import POSTGRES_URL, REPO, Personas, fresh_database_url
from tests.server.fixtures_exports import ingest_xml
from tests.server.fixtures_forms import COOP_XLSX, PublishedForm, publish_form

T0 = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)
DUE = [datetime(2026, 12, 7, 6 + h, 0, tzinfo=UTC) for h in range(3)]


@pytest.fixture
def coop_form(app: Flask, personas: Personas) -> PublishedForm:
    """The cooperative diagnostic example, published."""
    return PublishedForm(*publish_form(app, personas.project_id, COOP_XLSX))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 6 * * 8"}, "cron"),
        ({"cron": "0 6 * * *", "folder": "../outside"}, "folder"),
        ({"cron": "0 6 * * *", "folder": "/etc"}, "folder"),
        ({"cron": "0 6 * * *", "folder": "a/../../b"}, "folder"),
        ({"cron": "0 6 * * *", "preset": "nope"}, "preset"),
        ({"cron": "0 6 * * *", "keep": 0}, "keep"),
        ({"cron": "0 6 * * *", "format": "pdf"}, "format"),
    ],
    ids=["words", "minute-61", "weekday-8", "dotdot", "absolute", "escape", "preset", "keep", "format"],
)
def test_bad_schedule_is_400_naming_the_field(
    client: FlaskClient, personas: Personas, coop_form: PublishedForm, body: dict, field: str
) -> None:
    url = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-schedules"
    response = client.post(url, json=body, headers=personas.manager.headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    details = response.get_json()["details"]
    assert field in (details.get("fields") or {details.get("field"): 1})


def test_schedule_is_listed_with_its_next_run(
    client: FlaskClient, personas: Personas, coop_form: PublishedForm
) -> None:
    url = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-schedules"
    created = client.post(url, json={"cron": "15 6 * * 1", "keep": 3}, headers=personas.manager.headers)
    assert created.status_code == 201
    listed = client.get(url, headers=personas.analyst.headers).get_json()
    assert [s["id"] for s in listed] == [created.get_json()["id"]]
    next_run = datetime.fromisoformat(listed[0]["nextRunAt"])
    assert next_run.weekday() == 0 and (next_run.hour, next_run.minute) == (6, 15)
    assert listed[0]["folder"] == "coop_diagnostic" and listed[0]["runs"] == []
    removed = client.delete(f"{url}/{listed[0]['id']}", headers=personas.manager.headers)
    assert (removed.status_code, removed.get_json()) == (200, {"success": True})  # as Central answers a deletion
    assert client.get(url, headers=personas.analyst.headers).headers["X-Total-Count"] == "0"


def _backends() -> list[str]:
    return ["sqlite", "postgresql"]


@pytest.mark.one_store_per_run
@pytest.mark.parametrize("backend_name", _backends(), ids=_backends())
def test_two_schedulers_run_each_export_exactly_once(backend_name: str, tmp_path: Path) -> None:
    if backend_name == "postgresql" and not POSTGRES_URL:
        pytest.skip(reason="FIELDSYNC_TEST_POSTGRES_URL is not set")
    url, cleanup = fresh_database_url(backend_name, tmp_path)
    export_dir = tmp_path / "exports"
    config = {
        "DATABASE_URL": url,
        "VAR_DIR": str(tmp_path / "var"),
        "STORAGE_DIR": str(tmp_path / "storage"),
        "EXPORT_DIR": str(export_dir),
        "SECRET_KEY": "test-secret",
        "LOG_REQUESTS": False,
    }
    app = create_app(config)
    try:
        with app.app_context():
            session = get_store().sessions()
            project = accounts_svc.create_project(session, "Scheduled")
            coach = accounts_svc.create_user(session, "scheduled-coach", "correct horse battery")
            principal = Principal("user", coach.id, coach.username)
            session.close()
        publish_form(app, project.id, COOP_XLSX)
        with app.app_context():
            session = get_store().sessions()
            for xml in sorted((REPO / "examples" / "submissions" / "coop_diagnostic").glob("*.xml")):
                ingest_xml(session, project.id, xml.read_bytes(), principal)
            keeps = {"daily": 2, "weekly": 5, "third": 5}
            ids = {}
            for folder, keep in keeps.items():
                ids[folder] = svc.create_schedule(
                    session,
                    project.id,
                    "coop_diagnostic",
                    {"cron": "0 * * * *", "folder": folder, "keep": keep},
                    export_dir,
                    "test",
                    now=T0,
                ).id
            session.close()

        env = {
            **os.environ,
            "FIELDSYNC_DATABASE_URL": url,
            "FIELDSYNC_VAR_DIR": config["VAR_DIR"],
            "FIELDSYNC_STORAGE_DIR": config["STORAGE_DIR"],
            "FIELDSYNC_EXPORT_DIR": str(export_dir),
            "FIELDSYNC_SECRET_KEY": "test-secret",
        }
        args = [sys.executable, "-c", "from server.cli import main; main()", "scheduler", "--once"]
        for when in DUE:
            args += ["--now", when.isoformat()]
        procs = [
            subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (_out, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, err[-2000:]
        statuses = [line.split("\t")[2] for out, _ in outputs for line in out.splitlines() if line.strip()]
        assert statuses.count("done") == len(DUE) * len(keeps), outputs
        assert set(statuses) <= {"done", "taken"}

        with app.app_context():
            session = get_store().sessions()
            runs = session.execute(select(ExportRun.schedule_id, ExportRun.scheduled_for, ExportRun.status)).all()
            session.close()
        assert sorted((r.schedule_id, r.scheduled_for) for r in runs) == sorted(
            (sid, when) for sid in ids.values() for when in DUE
        )
        assert {r.status for r in runs} == {"done"}
        for folder, keep in keeps.items():
            where = export_dir / str(project.id) / folder
            names = sorted(p.name for p in where.iterdir())
            expected = [svc.dated_file_name("coop_diagnostic", ids[folder], w, "zip") for w in DUE][-keep:]
            assert names == expected  # no temporary file left, older ones pruned
            with zipfile.ZipFile(where / names[-1]) as zf:
                root = zf.read("coop_diagnostic.csv").decode("utf-8")
            assert root.count("uuid:") >= 2
        assert DUE[-1] + timedelta(hours=1) > DUE[-1]
    finally:
        get_store(app).engine.dispose()
        cleanup()
