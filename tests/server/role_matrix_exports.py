"""Role matrix rows for exports, export presets and export schedules (analyst, manager, admin export and
list presets; managers and admins create and delete presets and schedules; coaches, devices and outsiders
get 403)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.fixtures_forms import COOP_XLSX, publish_form
from tests.server.role_matrix import Case, statuses

EXPORTERS = ("admin", "manager", "analyst")
SCHEDULERS = ("admin", "manager")
_FORM = "/v1/projects/{pid}/forms/coop_diagnostic"
_RULE = "/v1/projects/<int:project_id>/forms/<xml_form_id>"


def coop_with_preset(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the coop example with a preset named ``p`` and one schedule."""
    from server.services import exports as svc
    from server.store import get_store

    publish_form(app, personas.project_id, COOP_XLSX)
    with app.app_context():
        session = get_store().sessions()
        try:
            svc.create_preset(session, personas.project_id, "coop_diagnostic", "p", {"lang": "fr"}, "test")
            from pathlib import Path

            schedule = svc.create_schedule(
                session,
                personas.project_id,
                "coop_diagnostic",
                {"cron": "0 6 * * *"},
                Path(app.config["EXPORT_DIR"]),
                "test",
            )
            return {"schedule": schedule.id}
        finally:
            session.close()


def coop_with_run(app: Flask, personas: Personas) -> dict[str, Any]:
    """The coop preset and schedule, run once: its file is kept in the schedule's folder."""
    from datetime import timedelta
    from pathlib import Path

    from server.db.base import utcnow
    from server.services import exports as svc
    from server.store import get_store

    made = coop_with_preset(app, personas)
    with app.app_context():
        (outcome,) = svc.run_due_exports(
            get_store().sessions, Path(app.config["EXPORT_DIR"]), now=utcnow() + timedelta(days=1, minutes=1)
        )
    assert outcome.status == "done" and outcome.file_name is not None, outcome
    return {**made, "file": outcome.file_name}


CASES = [
    Case(
        "GET",
        f"{_FORM}/submissions.csv.zip?groupPaths=false&attachments=false&$filter=__system/reviewState eq null",
        f"{_RULE}/submissions.csv.zip",
        statuses(200, allowed=EXPORTERS),
        setup="coop_with_preset",
    ),
    Case(
        "GET",
        f"{_FORM}/export.zip",
        f"{_RULE}/export.<any(zip, xlsx, geojson):fmt>",
        statuses(200, allowed=EXPORTERS),
        setup="coop_with_preset",
    ),
    Case(
        "GET",
        f"{_FORM}/export.xlsx?preset=p",
        f"{_RULE}/export.<any(zip, xlsx, geojson):fmt>",
        statuses(200, allowed=EXPORTERS),
        setup="coop_with_preset",
    ),
    Case(
        "GET",
        f"{_FORM}/export-presets",
        f"{_RULE}/export-presets",
        statuses(200, allowed=EXPORTERS),
        setup="coop_with_preset",
    ),
    Case(
        "POST",
        f"{_FORM}/export-presets",
        f"{_RULE}/export-presets",
        statuses(201, allowed=SCHEDULERS),
        json={"name": "q-{persona}", "options": {"bom": "true"}},
        setup="coop_with_preset",
    ),
    Case(
        "DELETE",
        f"{_FORM}/export-presets/p",
        f"{_RULE}/export-presets/<name>",
        statuses(200, allowed=SCHEDULERS),
        setup="coop_with_preset",
    ),
    Case(
        "GET",
        f"{_FORM}/export-schedules",
        f"{_RULE}/export-schedules",
        statuses(200, allowed=EXPORTERS),
        setup="coop_with_preset",
    ),
    Case(
        "POST",
        f"{_FORM}/export-schedules",
        f"{_RULE}/export-schedules",
        statuses(201, allowed=SCHEDULERS),
        json={"cron": "0 6 * * *", "preset": "p", "keep": 3},
        setup="coop_with_preset",
    ),
    Case(
        "DELETE",
        f"{_FORM}/export-schedules/{{schedule}}",
        f"{_RULE}/export-schedules/<int:schedule_id>",
        statuses(200, allowed=SCHEDULERS),
        setup="coop_with_preset",
    ),
    Case(
        "GET",
        f"{_FORM}/export-schedules/{{schedule}}/files/{{file}}",
        f"{_RULE}/export-schedules/<int:schedule_id>/files/<file_name>",
        statuses(200, allowed=EXPORTERS),
        setup="coop_with_run",
    ),
]
