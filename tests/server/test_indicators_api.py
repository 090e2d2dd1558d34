"""The dashboard's API: indicator definitions (versioned) and live figures, on both stores.

Rules:
- D1 ``PUT .../indicators/{name}`` saves version 1 (201), the same definition again changes nothing (200),
  a change is version 2; the history keeps both; ``DELETE`` takes it off the list, not out of the history;
- D2 a definition naming an unknown form, an unknown field or a field in a repeat is refused with a 400
  naming it, and nothing is stored;
- D3 figures count each submission once, by its current version; deleted and rejected ones never count;
  an edit, a deletion or a review change shows at once;
- D4 a field that a new form version removed still counts for the versions that had it, and the answer says so;
- D5 (property) for random submissions, edits, deletions and review states, every indicator and breakdown
  equals the figure recomputed from the CSV export of the same data;
- D6 ``by`` must be one of the indicator's breakdowns, ``period`` month or quarter.
- D7 the API is in ODK Central's conventions: camelCase fields (``createdBy``, ``reviewStates``, ``dateField``,
  source ``entityList``, notes' ``missingFrom``/``inCurrent``), Central's review-state spellings (``null``,
  ``hasIssues``), bare arrays with ``X-Total-Count``, ``{"success": true}`` for a delete; an error's
  ``details.field`` is the wire name; a definition stored before (snake_case, ``has_issues``) reads the same.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exports.indicators import IndicatorRow, compute, parse_definition
from server.services.indicators import keep_rollups
from tests.conftest import Personas
from tests.server.fixtures_exports import post_submission_xml, review, table_rows, zip_tables
from tests.server.fixtures_forms import publish_form, xlsform

CHOICES = """
| choices |
|  | list_name | name   | label::Français (fr) | label::العربية (ar) |
|  | sexe      | femme  | Femme                | امرأة               |
|  | sexe      | homme  | Homme                | رجل                 |
|  | milieu    | rural  | Rural                | قروي                |
|  | milieu    | urbain | Urbain               | حضري                |
|  | region    | 01     | Tanger-Tétouan-Al Hoceïma | طنجة تطوان الحسيمة |
|  | region    | 02     | L'Oriental           | الشرق               |
|  | region    | 03     | Fès-Meknès           | فاس مكناس           |
"""


def _form(version: str, *, with_milieu: bool = True) -> bytes:
    milieu = "|  | select_one milieu | milieu | Milieu | الوسط |\n" if with_milieu else ""
    return xlsform(
        f"""
| survey |
|  | type              | name   | label::Français (fr) | label::العربية (ar) |
|  | select_one sexe   | sexe   | Sexe                 | الجنس               |
{milieu}|  | select_one region | region | Région               | الجهة               |
|  | integer           | age    | Âge                  | السن                |
|  | begin repeat      | enfants | Enfants             | الأطفال             |
|  | text              | prenom | Prénom               | الاسم               |
|  | end repeat        |        |                      |                     |
{CHOICES}
| settings |
|  | form_id | version   |
|  | benef   | {version} |
"""
    )


def _xml(instance: str, values: dict[str, str], *, version: str = "1", deprecated: str | None = None) -> bytes:
    leaves = "".join(f"<{k}>{v}</{k}>" for k, v in values.items() if v is not None)
    meta = f"<instanceID>{instance}</instanceID>" + (f"<deprecatedID>{deprecated}</deprecatedID>" if deprecated else "")
    return f'<data id="benef" version="{version}">{leaves}<meta>{meta}</meta></data>'.encode()


WOMEN: dict[str, Any] = {
    "title": {"fr": "Part des femmes", "ar": "نسبة النساء", "en": "Share of women"},
    "source": {"form": "benef"},
    "measure": {"kind": "share", "where": [{"field": "sexe", "op": "eq", "value": "femme"}]},
    "breakdowns": ["region", "milieu"],
    "target": 0.48,
}
RURAL: dict[str, Any] = {
    **WOMEN,
    "title": {"fr": "Part rurale", "ar": "نسبة القرويين", "en": "Rural share"},
    "measure": {"kind": "share", "where": [{"field": "milieu", "op": "eq", "value": "rural"}]},
}
BENEFICIARIES: dict[str, Any] = {
    "title": {"fr": "Bénéficiaires", "ar": "المستفيدون", "en": "Beneficiaries"},
    "source": {"form": "benef"},
    "measure": {"kind": "count"},
    "breakdowns": ["region"],
    "target": 4200,
}
MEAN_AGE: dict[str, Any] = {
    "title": {"fr": "Âge moyen", "en": "Mean age"},
    "source": {"form": "benef"},
    "measure": {"kind": "mean", "field": "age"},
    "filters": [{"field": "age", "op": "ge", "value": 15}],
    "breakdowns": ["region"],
}


def _url(personas: Personas, name: str = "") -> str:
    return f"/v1/projects/{personas.project_id}/indicators" + (f"/{name}" if name else "")


def _put(client: FlaskClient, personas: Personas, name: str, body: dict[str, Any], expect: int = 201) -> Any:
    response = client.put(_url(personas, name), json=body, headers=personas.manager.headers)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_json()


def _figures(client: FlaskClient, personas: Personas, name: str, query: str = "") -> Any:
    response = client.get(_url(personas, name) + query, headers=personas.analyst.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def benef(app: Flask, personas: Personas) -> None:
    publish_form(app, personas.project_id, _form("1"), "benef.xlsx")


def test_d1_versions_no_op_and_removal(client: FlaskClient, personas: Personas, benef: None) -> None:
    first = _put(client, personas, "women_share", WOMEN)
    assert first["version"] == 1 and first["definition"]["target"] == 0.48
    assert first["createdBy"] == f"user:{personas.manager.id}" and first["createdAt"] is not None
    assert first["definition"]["reviewStates"] == [None, "hasIssues", "approved"]
    assert _put(client, personas, "women_share", WOMEN, expect=200)["version"] == 1
    assert _put(client, personas, "women_share", {**WOMEN, "target": 0.5})["version"] == 2
    listing = client.get(_url(personas), headers=personas.analyst.headers)
    assert [(i["name"], i["version"]) for i in listing.get_json()] == [("women_share", 2)]
    assert listing.headers["X-Total-Count"] == "1"
    removed = client.delete(_url(personas, "women_share"), headers=personas.manager.headers)
    assert (removed.status_code, removed.get_json()) == (200, {"success": True})
    assert client.get(_url(personas), headers=personas.analyst.headers).get_json() == []
    versions = client.get(_url(personas, "women_share") + "/versions", headers=personas.analyst.headers)
    history = versions.get_json()
    assert [v["version"] for v in history] == [3, 2, 1] and history[0]["definition"] is None
    assert versions.headers["X-Total-Count"] == "3" and history[1]["definition"]["reviewStates"][0] is None
    assert {"createdBy", "createdAt"} <= set(history[0])
    assert client.get(_url(personas, "women_share"), headers=personas.analyst.headers).status_code == 404


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"source": {"form": "nope"}}, "unknown_form"),
        ({"breakdowns": ["province"]}, "unknown_field"),
        ({"breakdowns": ["enfants/prenom"]}, "repeat_field"),
        ({"source": {"entityList": "cooperatives"}}, "unknown_entity_list"),
        ({"measure": {"kind": "share"}}, "bad_measure"),
        ({"source": {"entity_list": "cooperatives"}}, "invalid_input"),
        ({"review_states": ["approved"]}, "invalid_input"),
        ({"reviewStates": ["has_issues"]}, "invalid_input"),
        ({"reviewStates": ["rejected"]}, "invalid_input"),
        ({"reviewStates": []}, "bad_review_states"),
        ({"dateField": ""}, "bad_field"),
    ],
    ids=[
        "form",
        "field",
        "repeat",
        "entity-list",
        "measure",
        "snake-source",
        "snake-key",
        "our-spelling",
        "rejected",
        "no-state",
        "date-field",
    ],
)
def test_d2_bad_definitions_are_refused_and_nothing_is_stored(
    client: FlaskClient, personas: Personas, benef: None, change: dict[str, Any], code: str
) -> None:
    response = client.put(_url(personas, "women_share"), json={**WOMEN, **change}, headers=personas.manager.headers)
    assert response.status_code == 400 and response.get_json()["details"]["problem"] == code
    assert client.get(_url(personas, "women_share") + "/versions", headers=personas.analyst.headers).status_code == 404


def test_d3_current_versions_deletions_and_reviews_show_at_once(
    client: FlaskClient, personas: Personas, benef: None
) -> None:
    _put(client, personas, "women_share", WOMEN)
    a, b, c = (f"uuid:{uuid.uuid4()}" for _ in range(3))
    post_submission_xml(client, personas, _xml(a, {"sexe": "femme", "milieu": "rural", "region": "01"}))
    post_submission_xml(client, personas, _xml(b, {"sexe": "homme", "milieu": "rural", "region": "01"}))
    post_submission_xml(client, personas, _xml(c, {"sexe": "femme", "milieu": "urbain", "region": "02"}))
    figures = _figures(client, personas, "women_share", "?by=region&lang=ar")
    assert (figures["rows"], figures["matched"]) == (3, 2)
    assert figures["progress"] == pytest.approx((2 / 3) / 0.48)
    assert [(c["key"], c["label"], c["rows"]) for c in figures["cells"]] == [
        ("01", "طنجة تطوان الحسيمة", 2),
        ("02", "الشرق", 1),
    ]
    # b is edited into a woman: counted once, by its current version
    b2 = f"uuid:{uuid.uuid4()}"
    post_submission_xml(client, personas, _xml(b2, {"sexe": "femme", "milieu": "rural", "region": "01"}, deprecated=b))
    assert (
        _figures(client, personas, "women_share")["rows"],
        _figures(client, personas, "women_share")["matched"],
    ) == (3, 3)
    review(client, personas, "benef", c, "rejected")
    assert _figures(client, personas, "women_share")["rows"] == 2
    deleted = client.delete(
        f"/v1/projects/{personas.project_id}/forms/benef/submissions/{a}", headers=personas.manager.headers
    )
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert (
        _figures(client, personas, "women_share")["rows"],
        _figures(client, personas, "women_share")["matched"],
    ) == (1, 1)


def test_d4_a_field_removed_by_a_new_version_still_counts_where_it_was(
    app: Flask, client: FlaskClient, personas: Personas, benef: None
) -> None:
    _put(client, personas, "rural_share", RURAL)
    post_submission_xml(
        client, personas, _xml(f"uuid:{uuid.uuid4()}", {"sexe": "femme", "milieu": "rural", "region": "01"})
    )
    publish_form(app, personas.project_id, _form("2", with_milieu=False), "benef.xlsx")
    post_submission_xml(client, personas, _xml(f"uuid:{uuid.uuid4()}", {"sexe": "femme", "region": "02"}, version="2"))
    figures = _figures(client, personas, "rural_share")
    assert (figures["rows"], figures["matched"]) == (2, 1)
    assert figures["indicator"]["notes"] == [{"field": "milieu", "missingFrom": ["2"], "inCurrent": False}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reviewStates": []}, "reviewStates"),
        ({"dateField": " "}, "dateField"),
        ({"source": {"entityList": "cooperatives"}}, "source"),
        ({"breakdowns": ["province"]}, "province"),
    ],
    ids=["review-states", "date-field", "source", "form-field"],
)
def test_d7_an_error_names_the_wire_field(
    client: FlaskClient, personas: Personas, benef: None, change: dict[str, Any], field: str
) -> None:
    response = client.put(_url(personas, "women_share"), json={**WOMEN, **change}, headers=personas.manager.headers)
    assert response.status_code == 400 and response.get_json()["details"]["field"] == field


def test_d7_review_states_in_centrals_spellings(client: FlaskClient, personas: Personas, benef: None) -> None:
    saved = _put(client, personas, "women_share", {**WOMEN, "reviewStates": ["hasIssues", None]})
    assert saved["definition"]["reviewStates"] == [None, "hasIssues"]
    _put(client, personas, "women_share", {**WOMEN, "reviewStates": [None, "hasIssues"]}, expect=200)
    counted = f"uuid:{uuid.uuid4()}"
    post_submission_xml(client, personas, _xml(counted, {"sexe": "femme", "region": "01"}))
    review(client, personas, "benef", counted, "approved")  # approved is not among the states that count
    assert _figures(client, personas, "women_share")["rows"] == 0


def test_d7_a_definition_stored_before_reads_in_the_wire_shape(
    app: Flask, client: FlaskClient, personas: Personas, benef: None
) -> None:
    from server.services import indicators as svc
    from server.store import get_store

    stored = {**WOMEN, "review_states": ["has_issues", "approved"]}  # the stored (pure) form, as earlier releases
    with app.app_context():
        session = get_store().sessions()
        try:
            svc.save_indicator(session, personas.project_id, "women_share", stored, "user:1")
        finally:
            session.close()
    (listed,) = client.get(_url(personas), headers=personas.analyst.headers).get_json()
    assert listed["definition"]["reviewStates"] == ["hasIssues", "approved"]
    assert "review_states" not in listed["definition"]
    # Sending back what was read changes nothing: the wire form is the stored one, translated.
    _put(client, personas, "women_share", listed["definition"], expect=200)


@pytest.mark.parametrize(
    "stored",
    [
        {"source": {"entity_list": "cooperatives"}, "review_states": ["received"], "date_field": "created"},
        {"source": {"form": "benef"}, "review_states": ["received", "has_issues", "approved"]},
    ],
    ids=["entity-list-and-date", "form"],
)
def test_d7_the_translation_round_trips(stored: dict[str, Any]) -> None:
    from server.services.indicators import definition_from_wire, definition_to_wire

    wire = definition_to_wire(stored)
    assert "review_states" not in wire and "date_field" not in wire and "entity_list" not in wire["source"]
    assert definition_from_wire(wire) == stored
    if "date_field" in stored:
        assert (wire["source"], wire["reviewStates"], wire["dateField"]) == (
            {"entityList": "cooperatives"},
            [None],
            "created",
        )


def test_d6_by_and_period_are_checked(client: FlaskClient, personas: Personas, benef: None) -> None:
    _put(client, personas, "women_share", WOMEN)
    bad_by = client.get(_url(personas, "women_share") + "?by=age", headers=personas.analyst.headers)
    assert bad_by.status_code == 400 and bad_by.get_json()["details"]["problem"] == "bad_breakdown"
    bad_period = client.get(_url(personas, "women_share") + "?period=week", headers=personas.analyst.headers)
    assert bad_period.status_code == 400


# ---------------------------------------------------------------------------------------------
# D5: the figures equal those recomputed from the CSV export of the same data

submission = st.fixed_dictionaries(
    {
        "sexe": st.sampled_from(["femme", "homme", None]),
        "milieu": st.sampled_from(["rural", "urbain", None]),
        "region": st.sampled_from(["01", "02", "03"]),
        "age": st.sampled_from(["12", "19", "31", "", None]),
    }
)
story = st.lists(
    st.tuples(
        submission,
        st.sampled_from(["received", "hasIssues", "approved", "rejected"]),
        st.booleans(),  # edited afterwards (the edit's values drawn below)
        submission,
        st.sampled_from(["kept", "deleted", "restored"]),
        st.integers(1, 6),  # month received
    ),
    min_size=1,
    max_size=7,
)
NOT_URBAN_NORTH: dict[str, Any] = {
    **WOMEN,
    "title": {"en": "Not urban, in the north"},
    "measure": {"kind": "share", "where": [{"field": "milieu", "op": "ne", "value": "urbain"}]},
    "filters": [{"field": "region", "op": "in", "value": ["01", "02"]}],
}
DISTINCT_AGES: dict[str, Any] = {
    "title": {"fr": "Âges distincts", "en": "Distinct ages"},
    "source": {"form": "benef"},
    "measure": {"kind": "distinct", "field": "age"},
    "breakdowns": ["milieu", "region"],
}
NAMES = {
    "women_share": WOMEN,
    "distinct_ages": DISTINCT_AGES,
    "rural_share": RURAL,
    "beneficiaries": BENEFICIARIES,
    "mean_age": MEAN_AGE,
    "not_urban_north": NOT_URBAN_NORTH,
}
EXPORT_STATES = {"received": "received", "hasIssues": "has_issues", "approved": "approved", "rejected": "rejected"}


@pytest.mark.one_store_per_run
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(story)
def test_d5_figures_equal_the_csv_export(
    app: Flask, client: FlaskClient, personas: Personas, db: Any, stories: list[Any]
) -> None:
    nested = db.kw["bind"].begin_nested()  # each example on a clean slate within the test's transaction
    try:
        _d5_example(app, client, personas, db, stories)
    finally:
        nested.rollback()


def _d5_example(app: Flask, client: FlaskClient, personas: Personas, db: Any, stories: list[Any]) -> None:
    publish_form(app, personas.project_id, _form("1"), "benef.xlsx")
    for name, body in NAMES.items():
        _put(client, personas, name, body)
    instances = []
    for values, _state, _edited, _edit_values, _fate, month in stories:
        instance = f"uuid:{uuid.uuid4()}"
        post_submission_xml(client, personas, _xml(instance, values), when=datetime(2026, month, 10, 9, 0, tzinfo=UTC))
        instances.append(instance)
    # On PostgreSQL the figures now come from rollups, built here as the scheduler would; the edits,
    # reviews, deletions and restores below reach them through the change log, and must show in the
    # next read at once.
    built = keep_rollups(db)
    assert built.built == (len(NAMES) if db.kw["bind"].dialect.name == "postgresql" else 0)
    _d5_check(client, personas)
    for instance, (_values, state, edited, edit_values, fate, month) in zip(instances, stories, strict=True):
        if edited:
            when = datetime(2026, month, 10, 9, 0, tzinfo=UTC)
            post_submission_xml(
                client, personas, _xml(f"uuid:{uuid.uuid4()}", edit_values, deprecated=instance), when=when
            )
        if state != "received":
            review(client, personas, "benef", instance, state)
        url = f"/v1/projects/{personas.project_id}/forms/benef/submissions/{instance}"
        if fate != "kept":
            assert client.delete(url, headers=personas.manager.headers).status_code == 200
        if fate == "restored":
            assert client.post(f"{url}/restore", headers=personas.manager.headers).status_code == 200
    _d5_check(client, personas)


def _d5_check(client: FlaskClient, personas: Personas) -> None:
    export = client.get(
        f"/v1/projects/{personas.project_id}/forms/benef/export.zip?reviewState=received,hasIssues,approved",
        headers=personas.analyst.headers,
    )
    assert export.status_code == 200, export.get_data(as_text=True)[:300]
    root = table_rows(zip_tables(export.data)["benef.csv"])
    rows = [
        IndicatorRow(
            {k: (r[k] or None) for k in ("sexe", "milieu", "region", "age")},
            datetime.fromisoformat(r["SubmissionDate"].replace("Z", "+00:00")),
            EXPORT_STATES[r["ReviewState"] or "received"],
        )
        for r in root
    ]
    for name, body in NAMES.items():
        definition = parse_definition(name, body)
        for by, period in ((None, None), ("region", None), (None, "month"), ("region", "quarter")):
            expected = compute(definition, rows, by=by, period=period)  # type: ignore[arg-type]
            query = "&".join(f"{k}={v}" for k, v in (("by", by), ("period", period)) if v)
            got = _figures(client, personas, name, f"?{query}" if query else "")
            assert got["rows"] == expected.overall.rows, (name, by, period)
            assert got["value"] == pytest.approx(expected.overall.value(definition.measure)), (name, by, period)
            cells = {(c["key"], c["period"]): (c["rows"], c["value"]) for c in got["cells"]}
            want = {k: (c.rows, c.value(definition.measure)) for k, c in expected.cells.items()}
            assert cells.keys() == want.keys(), (name, by, period)
            for key, (n, value) in want.items():
                assert cells[key][0] == n and cells[key][1] == pytest.approx(value), (name, by, period, key)
