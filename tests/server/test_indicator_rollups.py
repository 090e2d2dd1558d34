"""PostgreSQL's dashboard rollups against real, concurrent transactions (docs/dashboard.md, "Rollups").

The figures' equality with the CSV export, rollups included, is the property test D5 in
``test_indicators_api.py``; here each case commits for real, from several connections, to check the
change log: a change still uncommitted while a read refreshes is in the next read, and a
writer that looked for a rollup before it existed is waited for by the build.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.services.indicators import keep_rollups
from server.store import get_store
from tests.conftest import POSTGRES_URL
from tests.server.fixtures_forms import committed_forms_app, publish_form
from tests.server.test_indicators_api import BENEFICIARIES, WOMEN, _form, _xml

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="rollups are kept on PostgreSQL only (FIELDSYNC_TEST_POSTGRES_URL is not set)"
)


class Programme:
    def __init__(self, app: Flask, headers: dict[str, str], project_id: int) -> None:
        self.app, self.headers, self.project_id = app, headers, project_id
        self.client: FlaskClient = app.test_client()
        self.url = get_store(app).engine.url.render_as_string(hide_password=False)

    def submit(self, values: dict[str, str]) -> str:
        instance = f"uuid:{uuid.uuid4()}"
        response = self.client.post(
            f"/v1/projects/{self.project_id}/forms/benef/submissions",
            data=_xml(instance, values),
            headers={**self.headers, "Content-Type": "application/xml"},
        )
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        return instance

    def figures(self, name: str, query: str = "?by=region") -> Any:
        response = self.client.get(f"/v1/projects/{self.project_id}/indicators/{name}{query}", headers=self.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own, as another server process's would be (schema from the URL's options)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        options = url.query.get("options")
        dsn = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
        return psycopg.connect(dsn, options=options) if options else psycopg.connect(dsn)  # type: ignore[arg-type]


@pytest.fixture
def programme(tmp_path: Path) -> Iterator[Programme]:
    with committed_forms_app("postgresql", tmp_path, {}) as (app, headers, project_id):
        publish_form(app, project_id, _form("1"), "benef.xlsx")
        prog = Programme(app, headers, project_id)
        for name, body in (("beneficiaries", BENEFICIARIES), ("women_share", WOMEN)):
            answer = prog.client.put(f"/v1/projects/{project_id}/indicators/{name}", json=body, headers=headers)
            assert answer.status_code == 201, answer.get_data(as_text=True)
        yield prog


def _rows_by_region(figures: Any) -> dict[str, int]:
    return {cell["key"]: cell["rows"] for cell in figures["cells"]}


def _count(prog: Programme, sql: str) -> int:
    with prog.connect() as conn:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


def test_r1_a_change_uncommitted_during_a_refresh_shows_in_the_next_read(programme: Programme) -> None:
    for region in ("01", "01", "02"):
        programme.submit({"sexe": "femme", "region": region})
    assert keep_rollups(get_store(programme.app).sessions).built == 2
    assert _count(programme, "SELECT count(*) FROM indicator_facts") == 6  # read from the rollup from now on
    assert programme.figures("beneficiaries")["rows"] == 3

    with programme.connect() as writer:
        writer.execute("UPDATE submissions SET review_state = 'rejected' WHERE id = (SELECT min(id) FROM submissions)")
        # Still uncommitted: this read refreshes without it, and must not step past it.
        assert programme.figures("beneficiaries")["rows"] == 3
        writer.commit()
    after = programme.figures("beneficiaries")
    assert after["rows"] == 2 and _rows_by_region(after) == {"01": 1, "02": 1}
    women = programme.figures("women_share")
    assert women["rows"] == 2 and women["value"] == pytest.approx(1.0)


def test_r2_a_hard_deletion_and_an_edit_reach_the_rollup(programme: Programme) -> None:
    first = programme.submit({"sexe": "femme", "region": "01"})
    programme.submit({"sexe": "homme", "region": "02"})
    keep_rollups(get_store(programme.app).sessions)
    assert programme.figures("women_share")["value"] == pytest.approx(0.5)
    edit = _xml(f"uuid:{uuid.uuid4()}", {"sexe": "homme", "region": "03"}, deprecated=first)
    response = programme.client.post(
        f"/v1/projects/{programme.project_id}/forms/benef/submissions",
        data=edit,
        headers={**programme.headers, "Content-Type": "application/xml"},
    )
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    edited = programme.figures("women_share")
    assert edited["value"] == pytest.approx(0.0) and _rows_by_region(edited) == {"02": 1, "03": 1}
    with programme.connect() as conn:
        conn.execute("DELETE FROM submissions WHERE id = (SELECT max(id) FROM submissions)")
    assert programme.figures("beneficiaries")["rows"] == 1


def test_r3_the_build_waits_for_a_writer_that_looked_before_the_rollup_existed(programme: Programme) -> None:
    for region in ("01", "02"):
        programme.submit({"sexe": "femme", "region": region})
    outcome: list[Any] = []
    with programme.connect() as writer:
        # No rollup yet: the trigger logs nothing for this change, which commits only after the build started.
        writer.execute("UPDATE submissions SET review_state = 'rejected' WHERE id = (SELECT min(id) FROM submissions)")
        builder = threading.Thread(target=lambda: outcome.append(keep_rollups(get_store(programme.app).sessions)))
        builder.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and builder.is_alive():
            waiting = _count(programme, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if waiting:
                break
            time.sleep(0.05)
        writer.commit()
    builder.join(30)
    assert outcome and outcome[0].built == 2
    assert programme.figures("beneficiaries")["rows"] == 1
    assert programme.figures("women_share")["rows"] == 1


def test_r3b_finishing_a_half_built_rollup_also_waits_for_writers(programme: Programme) -> None:
    """A builder that died between its claim and its wait leaves states being built; the next round
    finishes them, and must first wait for a writer that looked before those states were committed."""
    for region in ("01", "02"):
        programme.submit({"sexe": "femme", "region": region})
    outcome: list[Any] = []
    with programme.connect() as writer:
        writer.execute("UPDATE submissions SET review_state = 'rejected' WHERE id = (SELECT min(id) FROM submissions)")
        with programme.connect() as crashed:  # the dead builder's claims, committed after the writer looked
            crashed.execute(
                "INSERT INTO indicator_rollup_states (definition_id, form_id, built_at)"
                " SELECT d.id, f.id, NULL FROM indicator_definitions d JOIN forms f ON f.xml_form_id = 'benef'"
            )
        builder = threading.Thread(target=lambda: outcome.append(keep_rollups(get_store(programme.app).sessions)))
        builder.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and builder.is_alive():
            if _count(programme, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
                break
            time.sleep(0.05)
        writer.commit()
    builder.join(30)
    assert outcome and outcome[0].built == 2
    assert programme.figures("beneficiaries")["rows"] == 1
    assert programme.figures("women_share")["rows"] == 1


def test_r4_a_new_version_of_a_definition_gets_its_own_rollup_and_the_old_one_goes(programme: Programme) -> None:
    programme.submit({"sexe": "femme", "region": "01"})
    sessions = get_store(programme.app).sessions
    keep_rollups(sessions)
    changed = {**BENEFICIARIES, "filters": [{"field": "region", "op": "eq", "value": "02"}]}
    url = f"/v1/projects/{programme.project_id}/indicators/beneficiaries"
    assert programme.client.put(url, json=changed, headers=programme.headers).status_code in (200, 201)
    assert programme.figures("beneficiaries")["rows"] == 0  # not built yet: computed from the submissions
    round_ = keep_rollups(sessions)
    assert (round_.built, round_.dropped, round_.refreshed) == (1, 1, 1)
    programme.submit({"sexe": "femme", "region": "02"})
    assert programme.figures("beneficiaries")["rows"] == 1
    assert _count(programme, "SELECT count(*) FROM indicator_rollup_states") == 2


def test_r5_the_command_and_the_scheduler_keep_the_rollups(programme: Programme) -> None:
    from click.testing import CliRunner
    from flask.cli import ScriptInfo

    from server.cli import main as cli
    from server.scheduler import build_scheduler, indicator_rollups_tick

    programme.submit({"sexe": "femme", "region": "01"})
    assert "indicator_rollups" in {job.id for job in build_scheduler(programme.app).get_jobs()}
    runner = CliRunner()
    first = runner.invoke(cli, ["indicators-refresh"], obj=ScriptInfo(create_app=lambda: programme.app))
    assert first.exit_code == 0, first.output
    assert "built 2 rollup(s)" in first.output
    programme.submit({"sexe": "homme", "region": "02"})
    indicator_rollups_tick(programme.app)
    assert _count(programme, "SELECT count(*) FROM indicator_facts") == 4
    assert _count(programme, "SELECT count(*) FROM indicator_changes") == 0  # read by every rollup: pruned
