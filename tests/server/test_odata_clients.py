"""The feeds read by OData clients nobody here wrote, over real HTTP.

Rules:
- C1 python-odata (an OData 4.0 client) reflects ``$metadata`` into entity classes (one per repeat,
  typed properties), reads ``Submissions`` and a repeat table, follows ``@odata.nextLink`` under
  server-driven paging (``Prefer: odata.maxpagesize``), counts with ``/$count``, filters on a form
  field, and gets one submission by its key; all with HTTP Basic.
- C2 pyodk (ODK Central's official client) ``submissions.get_table`` with ``$select``, ``$count``,
  ``$top``, ``$expand``, ``$filter`` on a form field and on ``__system``, and a repeat table.
- C3 pyodk's entity lists and entities: create a list and its properties, create one and many,
  update with ``base_version`` (a stale one is merged and reported as a conflict) and ``force``,
  list, ``get_table`` with ``$filter`` and ``$count``, ``merge``, delete.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.conftest import PERSONA_PASSWORD, Personas
from tests.server.test_odata_feed import survey  # noqa: F401  (fixture)


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The test's app served over HTTP on 127.0.0.1 (one request at a time, on the test's database)."""
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_c1_python_odata_reads_the_feed(
    client: FlaskClient,
    personas: Personas,
    survey: list[str],  # noqa: F811  (the fixture imported above)
    live_url: str,
) -> None:
    from odata import ODataService

    url = f"{live_url}/v1/projects/{personas.project_id}/forms/odata_survey.svc/"
    auth = requests.auth.HTTPBasicAuth("analyst-persona", PERSONA_PASSWORD)
    service = ODataService(url, auth=auth, reflect_entities=True, quiet_progress=True)
    assert set(service.entities) == {"Submissions", "Submissions.household.member", "Submissions.household.member.job"}
    submissions = service.entities["Submissions"]
    assert type(submissions.age).__name__ == "IntegerProperty"
    assert type(submissions.income).__name__ == "DecimalProperty"

    rows = list(service.query(submissions))
    assert [getattr(r, "__id") for r in rows] == survey
    assert service.query(submissions).count() == 24

    women = service.query(submissions).filter(submissions.sex == "f").all()
    assert [getattr(r, "__id") for r in women] == [survey[n] for n in range(24) if n % 5 != 4 and n % 2 == 0]
    one = service.query(submissions).get(survey[4])
    assert one.age == 18 + 28 and one.programme == "argan"

    paged = ODataService(
        url, auth=auth, reflect_entities=True, quiet_progress=True, extra_headers={"Prefer": "odata.maxpagesize=5"}
    )
    members = paged.entities["Submissions.household.member"]
    names = [r.mname for r in paged.query(members)]
    assert names == [f"M{n}-{m}" for n in range(24) for m in range(n % 3)]


def _pyodk_client(tmp_path: Path, live_url: str, personas: Personas, persona: str) -> Any:
    """pyodk's Client on the live server, logged in with the persona's session token (its cache file)."""
    from pyodk.client import Client

    who = personas.all()[persona]
    config = tmp_path / "pyodk_config.toml"
    config.write_text(
        f'[central]\nbase_url = "{live_url}"\nusername = "{persona}-persona"\n'
        f'password = "{PERSONA_PASSWORD}"\ndefault_project_id = {personas.project_id}\n'
    )
    cache = tmp_path / "pyodk_cache.toml"
    cache.write_text(f'token = "{who.token}"\n')
    return Client(config_path=str(config), cache_path=str(cache))


def test_c2_pyodk_get_table(
    client: FlaskClient,
    personas: Personas,
    survey: list[str],  # noqa: F811  (the fixture imported above)
    live_url: str,
    tmp_path: Path,
) -> None:
    with _pyodk_client(tmp_path, live_url, personas, "analyst") as odk:
        table = odk.submissions.get_table(form_id="odata_survey", select="__id,region,age", count=True, top=5)
        assert table["@odata.count"] == 24
        assert [r["__id"] for r in table["value"]] == survey[:5]
        assert all(set(r) == {"__id", "region", "age"} for r in table["value"])
        expanded = odk.submissions.get_table(form_id="odata_survey", expand="*", filter="region eq 'draa'")
        assert [r["__id"] for r in expanded["value"]] == [survey[n] for n in range(24) if n % 3 == 1 and n % 7 != 3]
        assert [m["mname"] for m in expanded["value"][0]["household"]["member"]] == ["M1-0"]
        members = odk.submissions.get_table(form_id="odata_survey", table_name="Submissions.household.member")
        assert len(members["value"]) == sum(n % 3 for n in range(24))
        dated = odk.submissions.get_table(form_id="odata_survey", filter="__system/submissionDate lt 2020-01-01")
        assert dated["value"] == []


def test_c3_pyodk_entities(client: FlaskClient, personas: Personas, live_url: str, tmp_path: Path) -> None:
    with _pyodk_client(tmp_path, live_url, personas, "manager") as odk:
        created_list = odk.entity_lists.create(entity_list_name="cooperatives")
        assert created_list.name == "cooperatives" and created_list.approvalRequired is False
        odk.entity_lists.add_property(name="region", entity_list_name="cooperatives")
        odk.entity_lists.add_property(name="members", entity_list_name="cooperatives")
        one = odk.entities.create(
            label="Tamount", data={"region": "souss", "members": "42"}, entity_list_name="cooperatives"
        )
        assert one.currentVersion.version == 1 and one.currentVersion.data == {"region": "souss", "members": "42"}
        odk.entities.create_many(
            data=[{"label": "Nakhil", "region": "draa", "members": "12"}, {"label": "Zitoun", "region": "oriental"}],
            entity_list_name="cooperatives",
        )
        updated = odk.entities.update(
            uuid=one.uuid, data={"members": "43"}, base_version=1, entity_list_name="cooperatives"
        )
        assert updated.currentVersion.version == 2 and updated.conflict is None
        stale = odk.entities.update(
            uuid=one.uuid, data={"members": "44"}, base_version=1, entity_list_name="cooperatives"
        )
        assert stale.conflict == "hard" and stale.currentVersion.conflictingProperties == ["members"]
        forced = odk.entities.update(uuid=one.uuid, label="Tamount Argan", force=True, entity_list_name="cooperatives")
        assert forced.currentVersion.label == "Tamount Argan"
        listed = odk.entities.list(entity_list_name="cooperatives")
        assert sorted(e.currentVersion.label for e in listed) == ["Nakhil", "Tamount Argan", "Zitoun"]
        table = odk.entities.get_table(entity_list_name="cooperatives", filter="region eq 'draa'", count=True)
        assert table["@odata.count"] == 1 and table["value"][0]["label"] == "Nakhil"
        assert table["value"][0]["__system"]["version"] == 1
        odk.entities.merge(
            data=[{"label": "Nakhil", "region": "draa", "members": "15"}, {"label": "Ouarzazate", "region": "draa"}],
            entity_list_name="cooperatives",
            match_keys=["label"],
            delete_not_matched=False,
        )
        after = {r["label"]: r for r in odk.entities.get_table(entity_list_name="cooperatives")["value"]}
        assert after["Nakhil"]["members"] == "15" and "Ouarzazate" in after
        assert odk.entities.delete(uuid=one.uuid, entity_list_name="cooperatives") is True
        assert "Tamount Argan" not in {
            r["label"] for r in odk.entities.get_table(entity_list_name="cooperatives")["value"]
        }
