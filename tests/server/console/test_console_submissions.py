"""The console's submissions pages without a browser: the table, the map, one submission, reviews and comments.

Rules:
- D1 the table lists a form's current versions; filters (region, dates, review state, phone, version) keep
  exactly the matching rows; a bad filter is a 400 page that says what is wrong, never a 500.
- D2 columns are chosen and saved per user, with their headers and answers in the chosen form language.
- D3 the map draws one linked point per located submission over the region outlines.
- D4 a submission's page shows every answer with its label in the chosen language, repeats as nested
  tables, its photo inline (a missing one flagged), each edit's changed answers, its audit trail.
- D5 a reviewer sets hasIssues with a comment, then approves; who and when are shown; the JSON API lists
  the same comments and takes new ones at ODK Central's path; an analyst can do neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.console.test_console_roles import page_csrf, sign_in
from tests.server.fixtures_forms import COOP_XLSX, publish_form
from tests.server.test_submissions_support import example_submission, post_submission

FORM = "/projects/{pid}/forms/coop_diagnostic/submissions"
TAMOUNT = "uuid:2f8db99c-f871-439e-8c1f-230c48988777"
TAMOUNT_EDIT = "uuid:1765513a-04a4-40e1-bacd-dae53ee2ede4"
NAKHIL = "uuid:2c7fb6dd-9a79-4d38-a033-bda54a895fd3"
PHOTO = b"\xff\xd8\xff\xe0 a JPEG of the premises"


@dataclass(frozen=True)
class Coop:
    """The cooperative diagnostic with Tamount (Souss-Massa, photo, then edited) and Nakhil (Drâa, no photo)."""

    base: str


def seed_coop(app: Flask, personas: Personas) -> Coop:
    """Publish the diagnostic and send the three example submissions as Collect would."""
    publish_form(app, personas.project_id, COOP_XLSX)
    collect = app.test_client()
    for stem, files in (("01", {"1796200361318.jpg": PHOTO}), ("02", {}), ("03", {})):
        response = post_submission(collect, personas.collect_prefix, example_submission("coop_diagnostic", stem), files)
        assert response.status_code in (201, 202), response.get_data(as_text=True)
    return Coop(FORM.format(pid=personas.project_id))


@pytest.fixture
def coop(app: Flask, personas: Personas) -> Coop:
    return seed_coop(app, personas)


def _text(client: FlaskClient, path: str, status: int = 200, **headers: str) -> str:
    response = client.get(path, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return response.get_data(as_text=True)


def _rows(html: str) -> list[str]:
    return re.findall(r'<a href="[^"]*/submissions/(uuid:[^"]+)"', html.split("<tbody>", 1)[-1].split("</tbody>")[0])


def test_d1_the_table_lists_current_versions_and_filters_by_region(client: FlaskClient, coop: Coop) -> None:
    sign_in(client, "analyst-persona")
    assert sorted(_rows(_text(client, coop.base))) == sorted([TAMOUNT_EDIT, NAKHIL])
    assert _rows(_text(client, coop.base + "?filter.location/region=souss_massa")) == [TAMOUNT_EDIT]
    assert _rows(_text(client, coop.base + "?filter.location/region=draa_tafilalet")) == [NAKHIL]
    assert _rows(_text(client, coop.base + "?filter.location/region=oriental")) == []


def test_d1_dates_review_state_and_version(client: FlaskClient, coop: Coop) -> None:
    sign_in(client, "analyst-persona")
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    assert len(_rows(_text(client, f"{coop.base}?since={today.isoformat()}&until={today.isoformat()}"))) == 2
    assert _rows(_text(client, f"{coop.base}?until={yesterday}")) == []
    assert _rows(_text(client, f"{coop.base}?since={(today + timedelta(days=1)).isoformat()}")) == []
    assert len(_rows(_text(client, f"{coop.base}?review_state=received&form_version=2026112901"))) == 2
    assert _rows(_text(client, f"{coop.base}?review_state=approved")) == []
    by_region = _text(client, f"{coop.base}?sort=location/region&order=asc")
    assert _rows(by_region) == [NAKHIL, TAMOUNT_EDIT]  # draa_tafilalet < souss_massa
    assert _rows(_text(client, f"{coop.base}?sort=location/region&order=desc")) == [TAMOUNT_EDIT, NAKHIL]
    # The sorted column's header says so and reverses the order when followed.
    assert re.search(r'aria-sort="ascending">\s*<a href="[^"]*sort=location%2Fregion&amp;order=desc"', by_region)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("since=yesterday", "2026-12-31"),
        ("review_state=lost", "Choose one of the options"),
        ("cursor=not-a-cursor", "out of date"),
        ("filter.location/commune=Aglou", "no such question"),
        ("sort=nowhere", "no such question"),
    ],
    ids=["date", "state", "cursor", "not-a-select", "sort"],
)
def test_d1_a_bad_filter_is_a_400_page(client: FlaskClient, coop: Coop, query: str, words: str) -> None:
    sign_in(client, "analyst-persona")
    html = _text(client, f"{coop.base}?{query}", 400, **{"Accept-Language": "en"})
    assert words in html


def test_d2_columns_are_saved_per_user_in_the_chosen_language(client: FlaskClient, coop: Coop) -> None:
    csrf = sign_in(client, "analyst-persona")
    response = client.post(
        coop.base + "/columns",
        data={"csrf_token": csrf, "paths": ["location/region", "identification/coop_name"], "lang": "ar"},
    )
    assert response.status_code == 302
    html = _text(client, coop.base + "?filter.location/region=souss_massa")
    assert "<bdi>الجهة</bdi>" in html and "<bdi>سوس - ماسة</bdi>" in html
    html = _text(client, coop.base + "?lang=fr")
    assert "<bdi>Région</bdi>" in html and "<bdi>Souss-Massa</bdi>" in html
    assert "<bdi>souss_massa</bdi>" in _text(client, coop.base + "?display=values")
    sign_in(client, "manager-persona")  # another user: nothing chosen yet, the form's first questions
    head = _text(client, coop.base).split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert "<bdi>Nom de la coopérative</bdi>" in head and "الجهة" not in head


def test_d2_a_column_outside_the_form_is_refused(client: FlaskClient, coop: Coop) -> None:
    csrf = sign_in(client, "analyst-persona")
    response = client.post(coop.base + "/columns", data={"csrf_token": csrf, "paths": ["nowhere"]})
    assert response.status_code == 400


def test_d3_the_map_draws_linked_points_over_the_regions(client: FlaskClient, coop: Coop) -> None:
    sign_in(client, "analyst-persona")
    html = _text(client, coop.base + "/map")
    svg = html.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert svg.count("<circle") == 2
    assert svg.count("<path") == 12  # the regions' outlines
    assert f'href="{coop.base}/{TAMOUNT_EDIT}"' in svg
    one = _text(client, coop.base + "/map?filter.location/region=draa_tafilalet")
    assert one.split("<svg", 1)[1].count("<circle") == 1


def test_d4_the_submission_page_in_french_and_arabic(client: FlaskClient, coop: Coop) -> None:
    sign_in(client, "analyst-persona")
    fr = _text(client, f"{coop.base}/{TAMOUNT_EDIT}?lang=fr")
    assert "<dt><bdi>Région</bdi></dt><dd><bdi>Souss-Massa</bdi></dd>" in fr
    assert "<caption><bdi>Membre du bureau</bdi>" in fr and "Fadma Ait Brahim" in fr
    assert fr.count('<table class="repeat">') == 1 + 1 + 2  # board, products, and each product's channels
    assert f'src="{coop.base}/{TAMOUNT_EDIT}/files/1796200361318.jpg"' in fr
    ar = _text(client, f"{coop.base}/{TAMOUNT}?lang=ar")  # found by its first version's id too
    assert "<dt><bdi>الجهة</bdi></dt><dd><bdi>سوس - ماسة</bdi></dd>" in ar
    # Without ?lang: an Arabic page shows the form's Arabic labels, a French page its French ones.
    ar = _text(client, f"{coop.base}/{TAMOUNT}", **{"Accept-Language": "ar"})
    assert "<dt><bdi>الجهة</bdi></dt><dd><bdi>سوس - ماسة</bdi></dd>" in ar
    # The edit's diff: the revenue and the needs changed, with the choices' labels.
    history = fr.split('id="history-title"', 1)[1]
    assert "<del><bdi>486500.0</bdi></del>" in history and "<ins><bdi>512800.0</bdi></ins>" in history
    assert "Formation" in history.split("<ins>", 3)[-1] or "formation" in history.lower()
    trail = fr.split('id="trail-title"', 1)[1]
    assert "Submission edited" in _text(client, f"{coop.base}/{TAMOUNT_EDIT}", **{"Accept-Language": "en"})
    assert trail.count("<tr>") >= 2


def test_d4_the_photo_is_served_inline_and_a_missing_one_is_flagged(client: FlaskClient, coop: Coop) -> None:
    sign_in(client, "analyst-persona")
    photo = client.get(f"{coop.base}/{TAMOUNT_EDIT}/files/1796200361318.jpg")
    assert photo.status_code == 200 and photo.data == PHOTO
    assert photo.mimetype == "image/jpeg" and photo.headers["Content-Disposition"].startswith("inline")
    html = _text(client, f"{coop.base}/{NAKHIL}", **{"Accept-Language": "en"})
    assert "File not received: 1796303112044.jpg" in html
    assert client.get(f"{coop.base}/{NAKHIL}/files/1796303112044.jpg").status_code == 404


def test_d5_a_reviewer_marks_has_issues_with_a_comment_then_approves(
    client: FlaskClient, coop: Coop, personas: Personas
) -> None:
    csrf = sign_in(client, "manager-persona")
    page = f"{coop.base}/{TAMOUNT_EDIT}"
    sent = {"csrf_token": csrf, "review_state": "has_issues", "comment": "Le chiffre d'affaires est à vérifier."}
    assert client.post(page + "/review", data=sent).status_code == 302
    html = _text(client, page, **{"Accept-Language": "fr"})
    assert "Le chiffre d&#39;affaires est à vérifier." in html and "manager-persona" in html
    assert 'id="review-state">problème signalé</dd>' in html
    empty = client.post(page + "/review", data={"csrf_token": csrf, "review_state": "", "comment": ""})
    assert empty.status_code == 400
    assert client.post(page + "/review", data={"csrf_token": csrf, "review_state": "approved"}).status_code == 302
    api = f"/v1{coop.base}/{TAMOUNT_EDIT}"
    detail = client.get(api, headers=personas.manager.headers).get_json()
    assert detail["reviewState"] == "approved"
    assert [r["toState"] for r in detail["reviews"]] == ["hasIssues", "approved"]
    extended = {**personas.analyst.headers, "X-Extended-Metadata": "true"}
    comments = client.get(api + "/comments", headers=extended).get_json()
    assert [(c["body"], c["actor"]["displayName"], c["reviewState"]) for c in comments] == [
        ("Le chiffre d'affaires est à vérifier.", "manager-persona", "hasIssues")
    ]


def test_d5_comments_through_the_json_api(client: FlaskClient, coop: Coop, personas: Personas) -> None:
    api = f"/v1{coop.base}/{NAKHIL}/comments"
    created = client.post(api, json={"body": "Photo manquante — الصورة ناقصة"}, headers=personas.manager.headers)
    assert created.status_code == 200, created.get_data(as_text=True)
    assert created.get_json()["body"] == "Photo manquante — الصورة ناقصة"
    assert created.get_json()["reviewState"] is None  # a comment leaves the state as it was
    assert created.get_json()["actorId"] == personas.manager.id
    assert client.post(api, json={"body": "non"}, headers=personas.analyst.headers).status_code == 403
    assert client.post(api, json={"body": ""}, headers=personas.manager.headers).status_code == 400
    assert client.post(api, json={"text": "x"}, headers=personas.manager.headers).status_code == 400
    listed = client.get(api, headers=personas.analyst.headers).get_json()
    assert [c["body"] for c in listed] == ["Photo manquante — الصورة ناقصة"]
    assert client.get(api.replace(NAKHIL, "uuid:nobody"), headers=personas.analyst.headers).status_code == 404


def test_d5_an_analyst_cannot_review_from_the_console(client: FlaskClient, coop: Coop) -> None:
    csrf = sign_in(client, "analyst-persona")
    page = f"{coop.base}/{TAMOUNT_EDIT}"
    assert 'action="' + page + '/review"' not in _text(client, page)
    response = client.post(page + "/review", data={"csrf_token": csrf, "review_state": "approved"})
    assert response.status_code == 403
    assert page_csrf(client, page)  # the page still works after the refusal


def test_d5_a_review_form_sent_twice_is_written_once(client: FlaskClient, coop: Coop, personas: Personas) -> None:
    csrf = sign_in(client, "manager-persona")
    page = f"{coop.base}/{NAKHIL}"
    seen = re.search(r'name="seen" value="(\d+)"', _text(client, page))
    assert seen is not None and seen.group(1) == "0"
    sent = {"csrf_token": csrf, "seen": "0", "review_state": "has_issues", "comment": "Photo manquante"}
    assert client.post(page + "/review", data=sent).status_code == 302
    assert client.post(page + "/review", data=sent).status_code == 302  # the browser sent it again
    other = {**sent, "comment": "Et le GPS ?"}  # the same page, another comment: a new review
    assert client.post(page + "/review", data=other).status_code == 302
    reviews = client.get(f"/v1{page}", headers=personas.manager.headers).get_json()["reviews"]
    assert [r["comment"] for r in reviews] == ["Photo manquante", "Et le GPS ?"]
    audits = client.get("/v1/audits?action=submission.review", headers=personas.admin.headers).get_json()
    assert len(audits) == 2
