"""ODK Central's datasets API over the entity lists (``/v1/projects/{p}/datasets``) and their OData feed.

Rules:
- D1 a dataset is created once (a taken name is 409, a bad one 400); a property once (409 again);
  lists are bare arrays with ``X-Total-Count``; an unknown dataset is 404.
- D2 an entity is created once per uuid (409 after); data naming no property of the list, or not text,
  is a 400 and stores nothing; many are created all or none.
- D3 an update needs ``baseVersion`` or ``force=true`` (else 400); a ``baseVersion`` never served is 409;
  a stale one is merged with what it did not see and reported (``conflict``, ``conflictingProperties``);
  the same update sent twice is applied once.
- D4 delete answers ``{"success": true}`` and moves the entity to ``?deleted=true``; restore brings it back.
- D5 ``.svc/Entities`` filters on properties and ``__system`` members, selects, counts, pages.
"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.conftest import Personas

BASE = "/v1/projects/{pid}/datasets"


def call(client: FlaskClient, personas: Personas, method: str, path: str, **kwargs: Any) -> Any:
    return client.open(
        BASE.format(pid=personas.project_id) + path, method=method, headers=personas.manager.headers, **kwargs
    )


def make_list(client: FlaskClient, personas: Personas) -> None:
    assert call(client, personas, "POST", "", json={"name": "coops"}).status_code == 200
    for prop in ("region", "members"):
        assert call(client, personas, "POST", "/coops/properties", json={"name": prop}).status_code == 200


def test_d1_datasets_and_properties(client: FlaskClient, personas: Personas) -> None:
    make_list(client, personas)
    assert call(client, personas, "POST", "", json={"name": "coops"}).status_code == 409
    assert call(client, personas, "POST", "", json={"name": "bad name!"}).status_code == 400
    assert call(client, personas, "POST", "/coops/properties", json={"name": "region"}).status_code == 409
    assert call(client, personas, "POST", "/coops/properties", json={"name": "__deleted"}).status_code == 400
    listed = call(client, personas, "GET", "")
    assert listed.headers["X-Total-Count"] == "1" and [d["name"] for d in listed.get_json()] == ["coops"]
    detail = call(client, personas, "GET", "/coops").get_json()
    assert [p["name"] for p in detail["properties"]] == ["members", "region"]
    assert call(client, personas, "GET", "/nothing").status_code == 404
    assert call(client, personas, "GET", "/nothing/entities").status_code == 404


def test_d2_create_once_and_all_or_none(client: FlaskClient, personas: Personas) -> None:
    make_list(client, personas)
    body = {"uuid": "e1", "label": "Tamount", "data": {"region": "souss"}}
    assert call(client, personas, "POST", "/coops/entities", json=body).status_code == 200
    again = call(client, personas, "POST", "/coops/entities", json={**body, "label": "Other"})
    assert again.status_code == 409
    assert call(client, personas, "GET", "/coops/entities/e1").get_json()["currentVersion"]["label"] == "Tamount"
    unknown = call(client, personas, "POST", "/coops/entities", json={"label": "X", "data": {"colour": "red"}})
    assert unknown.status_code == 400 and "colour" in unknown.get_json()["message"]
    number = call(client, personas, "POST", "/coops/entities", json={"label": "X", "data": {"members": 3}})
    assert number.status_code == 400
    many = {"entities": [{"uuid": "e2", "label": "A"}, {"uuid": "e1", "label": "taken"}], "source": {"name": "x.csv"}}
    assert call(client, personas, "POST", "/coops/entities", json=many).status_code == 409
    assert call(client, personas, "GET", "/coops/entities/e2").status_code == 404  # none of them
    many["entities"][1]["uuid"] = "e3"
    assert call(client, personas, "POST", "/coops/entities", json=many).get_json() == {"success": True}
    listed = call(client, personas, "GET", "/coops/entities")
    assert listed.headers["X-Total-Count"] == "3"
    assert call(client, personas, "POST", "/coops/entities", json={"data": {}}).status_code == 400


def test_d3_updates_merge(client: FlaskClient, personas: Personas) -> None:
    make_list(client, personas)
    call(client, personas, "POST", "/coops/entities", json={"uuid": "e1", "label": "T", "data": {"members": "1"}})
    assert call(client, personas, "PATCH", "/coops/entities/e1", json={"data": {"members": "2"}}).status_code == 400
    never = call(client, personas, "PATCH", "/coops/entities/e1?baseVersion=9", json={"data": {"members": "2"}})
    assert never.status_code == 409 and never.get_json()["details"]["currentVersion"] == 1
    first = call(client, personas, "PATCH", "/coops/entities/e1?baseVersion=1", json={"data": {"members": "2"}})
    assert first.get_json()["currentVersion"]["version"] == 2 and first.get_json()["conflict"] is None
    retry = call(client, personas, "PATCH", "/coops/entities/e1?baseVersion=1", json={"data": {"members": "2"}})
    assert retry.get_json()["currentVersion"]["version"] == 2  # the same request, applied once
    other = call(client, personas, "PATCH", "/coops/entities/e1?baseVersion=1", json={"data": {"region": "draa"}})
    merged = other.get_json()
    assert merged["currentVersion"]["data"] == {"members": "2", "region": "draa"}  # both kept: different fields
    assert merged["conflict"] == "soft"
    clash = call(client, personas, "PATCH", "/coops/entities/e1?baseVersion=1", json={"data": {"members": "5"}})
    assert clash.get_json()["conflict"] == "hard" and clash.get_json()["currentVersion"]["conflictingProperties"]
    forced = call(client, personas, "PATCH", "/coops/entities/e1?force=true", json={"label": "Tamount"})
    assert forced.get_json()["currentVersion"]["label"] == "Tamount"
    assert call(client, personas, "PATCH", "/coops/entities/nope?force=true", json={"label": "x"}).status_code == 404


def test_d4_delete_and_restore(client: FlaskClient, personas: Personas) -> None:
    make_list(client, personas)
    call(client, personas, "POST", "/coops/entities", json={"uuid": "e1", "label": "T"})
    assert call(client, personas, "DELETE", "/coops/entities/e1").get_json() == {"success": True}
    assert call(client, personas, "GET", "/coops/entities").get_json() == []
    trash = call(client, personas, "GET", "/coops/entities?deleted=true").get_json()
    assert [e["uuid"] for e in trash] == ["e1"] and trash[0]["deletedAt"] is not None
    restored = call(client, personas, "POST", "/coops/entities/e1/restore").get_json()
    assert restored["deletedAt"] is None
    assert [e["uuid"] for e in call(client, personas, "GET", "/coops/entities").get_json()] == ["e1"]


def test_d5_entities_feed(client: FlaskClient, personas: Personas) -> None:
    make_list(client, personas)
    rows = [{"uuid": f"e{n}", "label": f"C{n}", "data": {"region": ("souss", "draa")[n % 2]}} for n in range(7)]
    call(client, personas, "POST", "/coops/entities", json={"entities": rows})
    call(client, personas, "PATCH", "/coops/entities/e1?baseVersion=1", json={"data": {"members": "3"}})
    feed = BASE.format(pid=personas.project_id) + "/coops.svc"
    analyst = personas.analyst.basic
    body = client.get(feed + "/Entities?$filter=region eq 'draa'&$count=true&$select=__id,label", headers=analyst)
    assert body.status_code == 200, body.get_data(as_text=True)
    page = body.get_json()
    assert page["@odata.count"] == 3 and [r["__id"] for r in page["value"]] == ["e1", "e3", "e5"]
    assert all(set(r) == {"__id", "label"} for r in page["value"])
    updated = client.get(feed + "/Entities?$filter=__system/version gt 1", headers=analyst).get_json()
    assert [r["__id"] for r in updated["value"]] == ["e1"] and updated["value"][0]["__system"]["updates"] == 1
    first = client.get(feed + "/Entities?$top=4", headers=analyst).get_json()
    rest = client.get(first["@odata.nextLink"].removeprefix("http://localhost"), headers=analyst).get_json()
    assert [r["__id"] for r in first["value"] + rest["value"]] == [f"e{n}" for n in range(7)]
    assert client.get(feed + "/Entities?$filter=colour eq 'x'", headers=analyst).status_code == 400
    assert client.get(feed + "/Entities/$count", headers=analyst).get_data(as_text=True) == "7"
    assert client.get(feed + "/$metadata", headers=analyst).mimetype == "application/xml"
    assert client.get(feed, headers=analyst).get_json()["value"][0]["name"] == "Entities"
    assert client.get(BASE.format(pid=personas.project_id) + "/nope.svc/Entities", headers=analyst).status_code == 404
