"""Issue 15 row 1: scheduled exports are namespaced by project on disk.

Rules:
- X1 two projects with the same form id write to ``EXPORT_DIR/<project>/<folder>/``: neither overwrites
  the other's file, and one schedule's ``keep`` pruning never deletes another schedule's (or project's) files.
- X2 a folder from a request can never reach another project's directory (``..``, the other project's id).
- X3 a folder stored before the check (or a symlink planted later) is re-checked at run time: the run fails,
  and nothing is written outside the project's directory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from server.db.models.exports import ExportSchedule
from server.services import exports as svc
from tests.conftest import Personas
from tests.server.fixtures_forms import COOP_XLSX, publish_form

T0 = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)
DUE = [datetime(2026, 12, 7, 6 + h, 0, tzinfo=UTC) for h in range(2)]


def _schedule(app: Flask, session: Session, project_id: int, **body: object) -> int:
    with app.app_context():
        data = {"cron": "0 * * * *", "keep": 1, **body}
        return svc.create_schedule(
            session, project_id, "coop_diagnostic", data, Path(app.config["EXPORT_DIR"]), "test", now=T0
        ).id


def _run(app: Flask, db: sessionmaker[Session], when: datetime) -> list[svc.RunOutcome]:
    with app.app_context():
        return svc.run_due_exports(db, Path(app.config["EXPORT_DIR"]), when, worker="test")


def test_same_form_id_in_two_projects_keeps_both_projects_files(
    app: Flask, db: sessionmaker[Session], session: Session, personas: Personas
) -> None:
    a, b = personas.project_id, personas.other_project_id
    publish_form(app, a, COOP_XLSX)
    publish_form(app, b, COOP_XLSX)
    ids = {a: _schedule(app, session, a), b: _schedule(app, session, b)}
    for when in DUE:
        assert {o.status for o in _run(app, db, when)} == {"done"}
    root = Path(app.config["EXPORT_DIR"])
    for project, schedule in ids.items():
        names = sorted(p.name for p in (root / str(project) / "coop_diagnostic").iterdir())
        assert names == [svc.dated_file_name("coop_diagnostic", schedule, DUE[-1], "zip")]  # keep=1, its own
    assert sorted(p.name for p in root.iterdir()) == sorted([str(a), str(b)])


def test_two_schedules_in_one_folder_prune_only_their_own_files(
    app: Flask, db: sessionmaker[Session], session: Session, personas: Personas
) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    first = _schedule(app, session, personas.project_id, folder="shared", keep=1)
    second = _schedule(app, session, personas.project_id, folder="shared", keep=2)
    for when in DUE:
        _run(app, db, when)
    folder = Path(app.config["EXPORT_DIR"]) / str(personas.project_id) / "shared"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [svc.dated_file_name("coop_diagnostic", first, DUE[-1], "zip")]
        + [svc.dated_file_name("coop_diagnostic", second, w, "zip") for w in DUE]
    )


@pytest.mark.parametrize(
    "folder",
    ["../{other}/coop_diagnostic", "../{other}", "..", "x/../../{other}", "./../{other}/x"],
    ids=["sibling-form", "sibling-root", "parent", "nested-escape", "dot-escape"],
)
def test_a_folder_cannot_reach_another_projects_directory(
    client: FlaskClient, app: Flask, personas: Personas, folder: str
) -> None:
    publish_form(app, personas.project_id, COOP_XLSX)
    url = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-schedules"
    body = {"cron": "0 6 * * *", "folder": folder.format(other=personas.other_project_id)}
    response = client.post(url, json=body, headers=personas.manager.headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["details"]["field"] == "folder"


def test_a_stored_escape_or_planted_symlink_fails_the_run_without_writing_outside(
    app: Flask, db: sessionmaker[Session], session: Session, personas: Personas
) -> None:
    a, b = personas.project_id, personas.other_project_id
    publish_form(app, a, COOP_XLSX)
    root = Path(app.config["EXPORT_DIR"])
    victim = root / str(b) / "coop_diagnostic"
    victim.mkdir(parents=True)
    (victim / "theirs.zip").write_bytes(b"B's file")
    escaped = _schedule(app, session, a, folder="ok")
    linked = _schedule(app, session, a, folder="link")
    (root / str(a)).mkdir(parents=True, exist_ok=True)
    (root / str(a) / "link").symlink_to(victim, target_is_directory=True)
    with session.begin_nested():
        session.execute(
            update(ExportSchedule).where(ExportSchedule.id == escaped).values(folder=f"../{b}/coop_diagnostic")
        )
    session.commit()
    outcomes = {o.schedule_id: o for o in _run(app, db, DUE[0])}
    assert outcomes[escaped].status == outcomes[linked].status == "failed"
    assert sorted(p.name for p in victim.iterdir()) == ["theirs.zip"]
