"""The OData 4.0 feed of a form's submissions (``/v1/projects/{p}/forms/{f}.svc``).

Rules:
- O1 the service document lists ``Submissions`` and one entity set per repeat; ``$metadata`` is EDMX
  with one entity type per repeat (keyed by ``__id``, with its parent's key), ``__system``, groups as
  complex types and Central's type mapping.
- O2 ``Submissions`` holds the current version of every submission that is not deleted (rejected ones
  included), typed values, repeats as navigation links; ``$expand=*`` puts them inline.
- O3 a repeat table's rows carry ``__Submissions-id`` (the submission's ``__id``) or, nested, their
  parent row's ``__id``; ``Submissions('<id>')`` and ``Submissions('<id>')/<group>/<repeat>`` work.
- O4 ``$top $skip $count $select $orderby``, ``/$count``; ``$top`` (or ``Prefer: odata.maxpagesize``)
  with rows left adds ``@odata.nextLink`` with a ``$skiptoken`` that gives the next rows, none twice.
- O5 ``$wkt=true`` writes geometry as WKT; ``$filter`` takes ``__system`` members, form fields and, on a
  repeat table, ``$root/Submissions/<field>``; a filter that does not parse or names an unknown member
  is a 400 saying so; an unknown table is a 404.
- O6 HTTP Basic works with no redirect; a 401 carries a Basic challenge; ``$metadata`` and one submission
  have ETags (``If-None-Match`` → 304); coaches get 403.
- O7 ``$filter`` on form fields returns exactly the rows a filter over the CSV export returns (property),
  and the rows' values are the CSV's.
"""

from __future__ import annotations

import uuid
from typing import Any
from xml.etree import ElementTree

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Personas
from tests.server.fixtures_exports import post_submission_xml, table_rows, zip_tables
from tests.server.fixtures_forms import PublishedForm, publish_form, xlsform

SURVEY_MD = """
| survey   |
|          | type                 | name      | label     |
|          | select_one region    | region    | Région    |
|          | select_one sex       | sex       | Sexe      |
|          | select_one programme | programme | Programme |
|          | integer              | age       | Âge       |
|          | decimal              | income    | Revenu    |
|          | geopoint             | gps       | GPS       |
|          | begin group          | household | Ménage    |
|          | begin repeat         | member    | Membre    |
|          | text                 | mname     | Nom       |
|          | begin repeat         | job       | Emploi    |
|          | text                 | title     | Titre     |
|          | end repeat           |           |           |
|          | end repeat           |           |           |
|          | end group            |           |           |
| choices  |
|          | list_name | name     | label    |
|          | region    | souss    | Souss    |
|          | region    | draa     | Drâa     |
|          | region    | oriental | Oriental |
|          | sex       | f        | Femme    |
|          | sex       | m        | Homme    |
|          | programme | argan    | Argan    |
|          | programme | dates    | Dattes   |
| settings |
|          | form_id      | version |
|          | odata_survey | 1       |
"""
REGIONS = ("souss", "draa", "oriental")
SEXES = ("f", "m")
PROGRAMMES = ("argan", "dates")
FEED = "/v1/projects/{pid}/forms/odata_survey.svc"


def submission_xml(n: int) -> tuple[str, bytes]:
    """A deterministic submission number ``n``: some answers left empty, 0–2 members with 0–2 jobs."""
    instance = f"uuid:{uuid.UUID(int=n + 1)}"
    region = "" if n % 7 == 3 else REGIONS[n % 3]
    sex = "" if n % 5 == 4 else SEXES[n % 2]
    programme = PROGRAMMES[(n // 2) % 2]
    age = "" if n % 6 == 5 else str(18 + (n * 7) % 50)
    members = "".join(
        f"<member><mname>M{n}-{m}</mname>"
        + "".join(f"<job><title>J{n}-{m}-{j}</title></job>" for j in range(m))
        + "</member>"
        for m in range(n % 3)
    )
    xml = (
        f'<data id="odata_survey" version="1"><region>{region}</region><sex>{sex}</sex>'
        f"<programme>{programme}</programme><age>{age}</age><income>{n * 1.5}</income>"
        f"<gps>31.{n:02d} -7.5 100 5</gps><household>{members}</household>"
        f"<meta><instanceID>{instance}</instanceID></meta></data>"
    )
    return instance, xml.encode()


@pytest.fixture
def survey(app: Flask, client: FlaskClient, personas: Personas) -> list[str]:
    """The survey form published with 24 submissions; the instance ids in arrival order."""
    PublishedForm(*publish_form(app, personas.project_id, xlsform(SURVEY_MD), "odata_survey.xlsx"))
    ids = []
    for n in range(24):
        instance, xml = submission_xml(n)
        post_submission_xml(client, personas, xml, review_state="rejected" if n == 2 else None)
        ids.append(instance)
    return ids


def get(client: FlaskClient, personas: Personas, path: str, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", personas.analyst.basic)
    return client.get(FEED.format(pid=personas.project_id) + path, headers=headers, **kwargs)


def values(client: FlaskClient, personas: Personas, path: str, **kwargs: Any) -> list[dict[str, Any]]:
    response = get(client, personas, path, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.headers["OData-Version"] == "4.0"
    return list(response.get_json()["value"])


def test_o1_service_document_and_metadata(client: FlaskClient, personas: Personas, survey: list[str]) -> None:
    doc = get(client, personas, "").get_json()
    assert [s["name"] for s in doc["value"]] == [
        "Submissions",
        "Submissions.household.member",
        "Submissions.household.member.job",
    ]
    response = get(client, personas, "/$metadata")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    root = ElementTree.fromstring(response.data)
    edm = "{http://docs.oasis-open.org/odata/ns/edm}"
    types = {t.get("Name"): t for t in root.iter(f"{edm}EntityType")}
    assert set(types) == {"Submissions", "Submissions.household.member", "Submissions.household.member.job"}
    props = {p.get("Name"): p.get("Type") for p in types["Submissions"].iter(f"{edm}Property")}
    assert props["__system"] == "org.opendatakit.submission.metadata"
    assert props["age"] == "Edm.Int64" and props["income"] == "Edm.Decimal" and props["gps"] == "Edm.GeographyPoint"
    assert props["household"] == "org.opendatakit.user.odata_survey.Submissions.household"
    job = {p.get("Name") for p in types["Submissions.household.member.job"].iter(f"{edm}Property")}
    assert job == {"__id", "__Submissions-household-member-id", "title"}
    member_keys = [k.get("Name") for k in types["Submissions.household.member"].iter(f"{edm}PropertyRef")]
    assert member_keys == ["__id"]
    navs = {n.get("Name"): n.get("Type") for n in root.iter(f"{edm}NavigationProperty")}
    assert navs["member"] == "Collection(org.opendatakit.user.odata_survey.Submissions.household.member)"


def test_o2_submissions_rows_links_and_expand(client: FlaskClient, personas: Personas, survey: list[str]) -> None:
    rows = values(client, personas, "/Submissions")
    assert [r["__id"] for r in rows] == survey  # the rejected one (n=2) included
    first = rows[1]
    assert first["age"] == 25 and first["income"] == 1.5 and first["region"] == "draa"
    assert first["gps"] == {"type": "Point", "coordinates": [-7.5, 31.01, 100.0], "properties": {"accuracy": 5.0}}
    assert first["__system"]["reviewState"] is None and rows[2]["__system"]["reviewState"] == "rejected"
    link = f"Submissions('{survey[1]}')/household/member"
    assert first["household"] == {"member@odata.navigationLink": link}
    expanded = values(client, personas, "/Submissions?$expand=*")[2]
    members = expanded["household"]["member"]
    assert [m["mname"] for m in members] == ["M2-0", "M2-1"]
    assert [j["title"] for j in members[1]["job"]] == ["J2-1-0"]


def test_o3_repeat_tables_and_paths(client: FlaskClient, personas: Personas, survey: list[str]) -> None:
    members = values(client, personas, "/Submissions.household.member")
    assert len(members) == sum(n % 3 for n in range(24))
    assert {m["__Submissions-id"] for m in members} <= set(survey)
    jobs = values(client, personas, "/Submissions.household.member.job")
    by_id = {m["__id"]: m for m in members}
    assert all(
        by_id[j["__Submissions-household-member-id"]]["mname"] == j["title"][1:].rsplit("-", 1)[0].join(("M", ""))
        for j in jobs
    )
    one = values(client, personas, f"/Submissions('{survey[5]}')")
    assert [r["__id"] for r in one] == [survey[5]]
    nested = values(client, personas, f"/Submissions('{survey[5]}')/household/member")
    assert [m["mname"] for m in nested] == ["M5-0", "M5-1"]
    member_id = nested[1]["__id"]
    deeper = values(client, personas, f"/Submissions('{survey[5]}')/household/member('{member_id}')/job")
    assert [j["title"] for j in deeper] == ["J5-1-0"]
    assert get(client, personas, "/Submissions('uuid:nope')").status_code == 404
    assert get(client, personas, "/Nothing").status_code == 404


def test_o4_paging_count_select_orderby(client: FlaskClient, personas: Personas, survey: list[str]) -> None:
    body = get(client, personas, "/Submissions?$top=5&$skip=2&$count=true").get_json()
    assert body["@odata.count"] == 24 and [r["__id"] for r in body["value"]] == survey[2:7]
    seen: list[str] = []
    url: str | None = FEED.format(pid=personas.project_id) + "/Submissions?$top=10&$select=__id,region"
    while url is not None:  # $top is a page size (as in Central): the next link gives the next 10
        page = client.get(url.removeprefix("http://localhost"), headers=personas.analyst.basic).get_json()
        assert all(set(r) <= {"__id", "region"} for r in page["value"]) and len(page["value"]) <= 10
        seen += [r["__id"] for r in page["value"]]
        url = page.get("@odata.nextLink")
    assert seen == survey
    paged: list[str] = []
    url = FEED.format(pid=personas.project_id) + "/Submissions"
    while url is not None:
        response = client.get(
            url.removeprefix("http://localhost"), headers={**personas.analyst.basic, "Prefer": "odata.maxpagesize=7"}
        )
        page = response.get_json()
        assert len(page["value"]) <= 7
        paged += [r["__id"] for r in page["value"]]
        url = page.get("@odata.nextLink")
    assert paged == survey
    newest = values(client, personas, "/Submissions?$orderby=__system/submissionDate desc&$top=3")
    assert [r["__id"] for r in newest] == survey[::-1][:3]
    assert get(client, personas, "/Submissions/$count?$filter=sex eq 'f'").get_data(as_text=True) == str(
        sum(1 for n in range(24) if n % 5 != 4 and n % 2 == 0)
    )
    selected = values(client, personas, "/Submissions?$select=__id,__system/reviewState,household&$top=1")
    assert selected[0] == {
        "__id": survey[0],
        "__system": {"reviewState": None},
        "household": {"member@odata.navigationLink": f"Submissions('{survey[0]}')/household/member"},
    }


def test_o5_wkt_and_filters(client: FlaskClient, personas: Personas, survey: list[str]) -> None:
    assert values(client, personas, "/Submissions?$wkt=true&$top=1")[0]["gps"] == "POINT (-7.5 31 100)"
    late = values(
        client,
        personas,
        "/Submissions?$filter=__system/submissionDate ge 2026-12-05T08:00:00Z"
        " and year(__system/submissionDate) eq 2026",
    )
    assert len(late) == 24
    assert values(client, personas, "/Submissions?$filter=__system/reviewState eq 'rejected'")[0]["__id"] == survey[2]
    older = values(client, personas, "/Submissions?$filter=age gt 60 or (region eq null and not (sex eq 'm'))")
    assert {r["__id"] for r in older} == {
        survey[n]
        for n in range(24)
        if (n % 6 != 5 and 18 + (n * 7) % 50 > 60) or (n % 7 == 3 and not (n % 5 != 4 and n % 2 == 1))
    }
    jobs = values(client, personas, "/Submissions.household.member?$filter=$root/Submissions/region eq 'draa'")
    draa = [survey[n] for n in range(24) if n % 3 == 1 and n % 7 != 3]
    assert [m["__Submissions-id"] for m in jobs] == draa  # one member each
    for bad, words in (
        ("region eq", "ends too early"),
        ("colour eq 'red'", "no property 'colour'"),
        ("region eq 'x' xor 1", "unexpected"),
        ("length(region) eq 2", "unknown function"),
        ("$root/Submissions/nope eq 1", "no 'nope'"),
    ):
        response = get(client, personas, "/Submissions?$filter=" + bad)
        assert response.status_code == 400, bad
        assert words in response.get_json()["message"], response.get_json()
    assert get(client, personas, "/Submissions?$top=-1").status_code == 400
    assert get(client, personas, "/Submissions?$skiptoken=garbage").status_code == 400
    assert get(client, personas, "/Submissions?$expand=household").status_code == 400
    assert get(client, personas, "/Submissions?$orderby=age").status_code == 400


def test_o6_auth_etags_and_roles(client: FlaskClient, personas: Personas, survey: list[str]) -> None:
    anonymous = get(client, personas, "/Submissions", headers={})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert get(client, personas, "/Submissions", headers=personas.coach.basic).status_code == 403
    assert get(client, personas, "/Submissions", headers=personas.manager.headers).status_code == 200
    for path in ("/$metadata", f"/Submissions('{survey[0]}')"):
        first = get(client, personas, path)
        etag = first.headers["ETag"]
        again = get(client, personas, path, headers={**personas.analyst.basic, "If-None-Match": etag})
        assert again.status_code == 304, path


# --- O7: $filter over form fields equals a filter over the CSV export --------------------------------

FIELDS = {"region": (*REGIONS, "sahara"), "sex": SEXES, "programme": PROGRAMMES}
Expr = tuple[Any, ...]


def _atoms() -> st.SearchStrategy[Expr]:
    text = st.sampled_from(sorted(FIELDS)).flatmap(
        lambda f: st.tuples(
            st.just("cmp"), st.just(f), st.sampled_from(("eq", "ne")), st.sampled_from(FIELDS[f] + (None,))
        )
    )
    age = st.tuples(
        st.just("cmp"),
        st.just("age"),
        st.sampled_from(("eq", "ne", "lt", "le", "gt", "ge")),
        st.integers(10, 70) | st.none(),
    )
    return text | age


EXPRESSIONS = st.recursive(
    _atoms(),
    lambda inner: st.tuples(st.sampled_from(("and", "or")), inner, inner) | st.tuples(st.just("not"), inner),
    max_leaves=5,
)


def render(e: Expr) -> str:
    """The OData text of an expression."""
    if e[0] == "cmp":
        _, field, op, value = e
        literal = "null" if value is None else (str(value) if isinstance(value, int) else f"'{value}'")
        return f"{field} {op} {literal}"
    if e[0] == "not":
        return f"not ({render(e[1])})"
    return f"({render(e[1])}) {e[0]} ({render(e[2])})"


def holds(e: Expr, row: dict[str, str]) -> bool:
    """The expression evaluated over one CSV row (empty cell: null), independently of the server."""
    if e[0] == "not":
        return not holds(e[1], row)
    if e[0] in ("and", "or"):
        a, b = holds(e[1], row), holds(e[2], row)
        return (a and b) if e[0] == "and" else (a or b)
    _, field, op, value = e
    cell: Any = row[field] or None
    if field == "age" and cell is not None:
        cell = int(cell)
    if cell is None or value is None:
        both = cell is None and value is None
        return both if op == "eq" else (not both if op == "ne" else False)
    return {
        "eq": cell == value, "ne": cell != value, "lt": cell < value,
        "le": cell <= value, "gt": cell > value, "ge": cell >= value,
    }[op]  # fmt: skip


@pytest.mark.one_store_per_run
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=EXPRESSIONS)
def test_o7_filter_on_form_fields_equals_the_csv_export(
    client: FlaskClient,
    personas: Personas,
    csv_export: tuple[list[dict[str, str]], list[dict[str, str]]],
    expression: Expr,
) -> None:
    roots, members = csv_export
    text = render(expression)
    got = values(client, personas, "/Submissions?$filter=" + text)
    expected = [r for r in roots if holds(expression, r)]
    assert [r["__id"] for r in got] == [r["KEY"] for r in expected], text
    for row, csv_row in zip(got, expected, strict=True):
        for name in ("region", "sex", "programme"):
            assert (row[name] or "") == csv_row[name]
        assert ("" if row["age"] is None else str(row["age"])) == csv_row["age"]
    kept = {r["KEY"] for r in expected}
    repeat = values(client, personas, "/Submissions.household.member?$filter=" + render_root(expression))
    assert [m["__id"] for m in repeat] == [m["KEY"] for m in members if m["PARENT_KEY"] in kept], text


def render_root(e: Expr) -> str:
    """The same expression over the submission's fields, from a repeat table."""
    if e[0] == "cmp":
        return "$root/Submissions/" + render(e)
    if e[0] == "not":
        return f"not ({render_root(e[1])})"
    return f"({render_root(e[1])}) {e[0]} ({render_root(e[2])})"


@pytest.fixture
def csv_export(
    client: FlaskClient, personas: Personas, survey: list[str]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The CSV export's root and member rows (rejected included, as the feed has them)."""
    response = client.get(
        f"/v1/projects/{personas.project_id}/forms/odata_survey/export.zip?includeRejected=true",
        headers=personas.analyst.basic,
    )
    assert response.status_code == 200
    files = zip_tables(response.data)
    return table_rows(files["odata_survey.csv"]), table_rows(files["odata_survey-member.csv"])
