"""The submissions table: filters, keyset pages in every sort, columns in a language, saved columns.

Rules:
* T1 every filter given must hold; values within one filter are alternatives.
* T2 paging through every page returns each matching row exactly once, in the sort's order, whatever
  the page size and however many rows tie on the sort key (Hypothesis).
* T3 an edited submission shows, and is filtered by, its current version only.
* T4 deleted submissions are left out unless asked for (then only they are listed).
* T5 cells show choice labels in the chosen language, or the stored values.
* T6 bad parameters, cursors and paths are 400s that name what is wrong.
* T7 a user's saved columns are theirs alone and apply when no columns are asked for.
* T8 without ``limit`` the API answers every matching row in one array, as ODK Central does, read from
  the store in keyset batches (so more rows than one batch, or than the largest page, all arrive), each
  batch written before the next is read (memory stays at one batch).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.db.models.forms import FormVersion
from server.db.models.submissions import Submission, SubmissionVersion
from server.services import submission_table as table
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form, xlsform

MARKET_FORM = xlsform(
    """
| survey   |
|          | type                      | name   | label::Français (fr) | label::العربية (ar) |
|          | text                      | seller | Vendeur              | البائع              |
|          | select_one region         | region | Région               | الجهة               |
|          | select_multiple crop      | crops  | Cultures             | المحاصيل            |
| choices  |
|          | list_name | name    | label::Français (fr) | label::العربية (ar) |
|          | region    | casa    | Casablanca           | الدار البيضاء        |
|          | region    | fes     | Fès                  | فاس                 |
|          | region    | tanger  | Tanger               | طنجة                |
|          | crop      | argan   | Argan                | أركان               |
|          | crop      | olive   | Olive                | زيتون               |
|          | crop      | saf_ran | Safran               | زعفران              |
| settings |
|          | form_id | version |
|          | market  | 1       |
"""
)
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    """A submission to store: its answers (current version) and where it stands."""

    hour: int = 0
    seller: str = ""
    region: str | None = None
    crops: str | None = None
    review_state: str = "received"
    submitter: int | None = None
    device_id: str | None = None
    version: str = "1"
    deleted: bool = False
    previous_region: str | None = None  # set: the submission was edited, its first version said this


@dataclass
class Market:
    """The published market form and how to store rows in it."""

    session: Session
    project_id: int
    form_pk: int
    version_pk: int

    def store(self, rows: Sequence[Row]) -> list[int]:
        """Write the rows (ids in the order given)."""
        ids = []
        for index, row in enumerate(rows):
            instance = f"uuid:t-{index}-{id(row)}"
            at = T0 + timedelta(hours=row.hour)
            sub = Submission(
                project_id=self.project_id,
                form_id=self.form_pk,
                instance_id=instance,
                current_instance_id=instance,
                review_state=row.review_state,
                edits=0,
                submitter_id=row.submitter,
                attachments_expected=0,
                attachments_present=0,
                created_at=at,
                updated_at=at,
                deleted_at=at if row.deleted else None,
            )
            self.session.add(sub)
            self.session.flush()
            answers = [(instance, None, row.region)]
            if row.previous_region is not None:
                answers = [(instance, None, row.previous_region), (instance + "-e", instance, row.region)]
                sub.current_instance_id, sub.edits = instance + "-e", 1
            for version_id, deprecated, region in answers:
                record: dict[str, Any] = {"seller": row.seller}
                if region is not None:
                    record["region"] = region
                if row.crops is not None:
                    record["crops"] = row.crops
                self.session.add(
                    SubmissionVersion(
                        submission_id=sub.id,
                        project_id=self.project_id,
                        form_id=self.form_pk,
                        form_version_id=self.version_pk,
                        instance_id=version_id,
                        deprecated_id=deprecated,
                        form_version=row.version,
                        xml=b"<data/>",
                        xml_sha256="0" * 64,
                        record=record,
                        device_id=row.device_id,
                        received_at=at,
                    )
                )
            ids.append(sub.id)
        self.session.commit()
        return ids

    def clear(self) -> None:
        """Remove every submission of the form."""
        self.session.execute(delete(Submission).where(Submission.form_id == self.form_pk))
        self.session.commit()

    def page(self, **query: Any) -> table.TablePage:
        """Ask the service for one page."""
        return table.submissions_table(self.session, self.project_id, "market", table.TableQuery(**query))

    def walk(self, limit: int, **query: Any) -> list[int]:
        """Follow the cursor through every page; return the ids seen."""
        seen: list[int] = []
        cursor = None
        for _ in range(1000):
            page = self.page(cursor=cursor, limit=limit, **query)
            seen.extend(row.id for row in page.rows)
            cursor = page.next_cursor
            if cursor is None:
                return seen
        raise AssertionError("the cursor never ended")


@pytest.fixture
def market(app: Flask, personas: Personas, session: Session) -> Market:
    """The market form, published in the personas' project, with no submission yet."""
    form_pk, _, _ = publish_form(app, personas.project_id, MARKET_FORM, "market.xlsx")
    version_pk = session.scalar(select(FormVersion.id).where(FormVersion.form_id == form_pk))
    assert version_pk is not None
    return Market(session, personas.project_id, form_pk, version_pk)


# --- T1 -------------------------------------------------------------------------------------------

ROWS = [
    Row(hour=0, seller="a", region="casa", crops="argan olive", review_state="approved", submitter=1),
    Row(hour=1, seller="b", region="fes", crops="saf_ran", review_state="has_issues", device_id="phone-1"),
    Row(hour=2, seller="c", region="casa", crops="olive", review_state="received", version="2"),
    Row(hour=3, seller="d", region="tanger", review_state="approved", submitter=1, device_id="phone-1"),
    Row(hour=4, seller="e", crops="argan", review_state="rejected"),
]

FILTERS = [
    ({"field_values": {"region": ("casa",)}}, [0, 2]),
    ({"field_values": {"region": ("casa", "tanger")}}, [0, 2, 3]),
    ({"field_values": {"crops": ("olive",)}}, [0, 2]),
    ({"field_values": {"crops": ("saf_ran",)}}, [1]),
    ({"field_values": {"crops": ("saf%ran",)}}, []),  # a LIKE wildcard matches nothing
    ({"field_values": {"region": ("casa",), "crops": ("argan",)}}, [0]),
    ({"review_states": ("approved",)}, [0, 3]),
    ({"review_states": ("approved", "rejected")}, [0, 3, 4]),
    ({"review_states": ("approved",), "field_values": {"region": ("casa",)}}, [0]),
    ({"submitter_id": 1}, [0, 3]),
    ({"device_id": "phone-1"}, [1, 3]),
    ({"device_id": "phone-1", "review_states": ("approved",)}, [3]),
    ({"form_versions": ("2",)}, [2]),
    ({"since": T0 + timedelta(hours=1), "until": T0 + timedelta(hours=3)}, [1, 2]),
    ({"since": T0 + timedelta(hours=1), "field_values": {"region": ("casa",)}}, [2]),
    ({}, [0, 1, 2, 3, 4]),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    FILTERS,
    ids=[
        "region",
        "region-either",
        "crop",
        "crop-underscore",
        "crop-wildcard",
        "region-and-crop",
        "state",
        "states",
        "state-and-region",
        "submitter",
        "device",
        "device-and-state",
        "version",
        "date-range",
        "date-and-region",
        "none",
    ],
)
def test_filters_combine(market: Market, query: dict[str, Any], expected: list[int]) -> None:
    ids = market.store(ROWS)
    assert [row.id for row in market.page(**query).rows] == [ids[i] for i in expected]
    assert market.page(count=True, **query).count == len(expected)


def test_count_is_capped(market: Market, monkeypatch: pytest.MonkeyPatch) -> None:
    market.store(ROWS)
    monkeypatch.setattr(table, "COUNT_CAP", 3)
    page = market.page(count=True)
    assert (page.count, page.count_capped) == (3, True)
    assert (market.page(count=True, review_states=("approved",)).count_capped) is False


# --- T2 -------------------------------------------------------------------------------------------

SORTS = [
    {"sort": "submitted_at", "order": "asc"},
    {"sort": "submitted_at", "order": "desc"},
    {"sort": "field", "sort_field": "region", "order": "asc"},
    {"sort": "field", "sort_field": "region", "order": "desc"},
    {"sort": "field", "sort_field": "seller", "order": "desc"},
]

rows_strategy = st.lists(
    st.builds(
        Row,
        hour=st.integers(0, 3),  # few distinct times: many ties
        seller=st.sampled_from(["", "amal", "badr", "driss"]),
        region=st.sampled_from([None, "casa", "fes", "tanger"]),
        review_state=st.sampled_from(["received", "approved"]),
        deleted=st.booleans(),
    ),
    max_size=14,
)


def _expected(rows: Sequence[Row], ids: Sequence[int], sort: dict[str, Any], states: tuple[str, ...]) -> list[int]:
    def key(pair: tuple[Row, int]) -> tuple[Any, int]:
        row, pk = pair
        if sort["sort"] == "submitted_at":
            return (row.hour, pk)
        return ((getattr(row, sort["sort_field"]) or ""), pk)

    kept = [
        (r, pk) for r, pk in zip(rows, ids, strict=True) if not r.deleted and (not states or r.review_state in states)
    ]
    return [pk for _, pk in sorted(kept, key=key, reverse=sort["order"] == "desc")]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=rows_strategy,
    sort=st.sampled_from(SORTS),
    limit=st.integers(1, 5),
    states=st.sampled_from([(), ("approved",)]),
)
def test_paging_returns_every_row_once_in_order(
    market: Market, rows: list[Row], sort: dict[str, Any], limit: int, states: tuple[str, ...]
) -> None:
    try:
        ids = market.store(rows)
        assert market.walk(limit, review_states=states, **sort) == _expected(rows, ids, sort, states)
    finally:
        market.clear()


# --- T3, T4 ---------------------------------------------------------------------------------------


def test_an_edit_shows_its_current_version_only(market: Market) -> None:
    (edited,) = market.store([Row(region="fes", previous_region="casa")])
    assert market.page(field_values={"region": ("casa",)}).rows == []
    page = market.page(field_values={"region": ("fes",)}, columns=("region",), display="values")
    assert [(r.id, r.edits) for r in page.rows] == [(edited, 1)]
    assert page.cells == [["fes"]]
    assert len(market.page().rows) == 1


def test_deleted_rows_are_listed_only_when_asked(market: Market) -> None:
    live, gone = market.store([Row(region="casa"), Row(hour=1, region="casa", deleted=True)])
    assert [r.id for r in market.page(field_values={"region": ("casa",)}).rows] == [live]
    assert [r.id for r in market.page(deleted=True).rows] == [gone]


# --- T5 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "display", "cells", "headers"),
    [
        ("ar", "labels", ["الدار البيضاء", "أركان, زيتون", "a"], ["الجهة", "المحاصيل", "البائع"]),
        ("fr", "labels", ["Casablanca", "Argan, Olive", "a"], ["Région", "Cultures", "Vendeur"]),
        ("fr", "values", ["casa", "argan olive", "a"], ["Région", "Cultures", "Vendeur"]),
    ],
    ids=["arabic-labels", "french-labels", "values"],
)
def test_cells_in_the_chosen_language(
    market: Market, language: str, display: str, cells: list[str], headers: list[str]
) -> None:
    market.store(ROWS[:1])
    page = market.page(columns=("region", "crops", "seller"), language=language, display=display)
    assert page.cells == [cells]
    assert [c.label for c in page.columns] == headers


# --- T6 -------------------------------------------------------------------------------------------


def _cursor(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"field_values": {"seller": ("a",)}}, "invalid_field"),
        ({"field_values": {"nowhere": ("a",)}}, "invalid_field"),
        ({"columns": ("nowhere",)}, "invalid_field"),
        ({"sort": "field"}, "invalid_sort"),
        ({"sort": "field", "sort_field": "meta/instanceID/x"}, "invalid_field"),
        ({"language": "de"}, "invalid_language"),
        ({"cursor": "not base64 at all!"}, "invalid_cursor"),
        ({"cursor": _cursor({"sort": ["region", "asc"], "key": "casa", "id": 1})}, "invalid_cursor"),
        ({"cursor": _cursor({"sort": [None, "asc"], "key": 5, "id": 1})}, "invalid_cursor"),
    ],
    ids=[
        "text-field",
        "unknown-field",
        "unknown-column",
        "no-sort-field",
        "unknown-sort-field",
        "language",
        "garbage-cursor",
        "other-sort-cursor",
        "bad-key-cursor",
    ],
)
def test_bad_queries_are_400(market: Market, query: dict[str, Any], code: str) -> None:
    with pytest.raises(table.ApiError) as caught:
        market.page(**query)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_an_earlier_release_cursor_still_reads(market: Market) -> None:
    ids = market.store(ROWS)
    legacy = _cursor([(T0 + timedelta(hours=1)).isoformat(), ids[1]])
    assert [r.id for r in market.page(cursor=legacy).rows] == ids[2:]


@pytest.mark.parametrize(
    "query",
    ["reviewState=approved,nope", "sort=size", "order=up", "display=both", "limit=0", "filters=x", "colour=red"],
    ids=["state", "sort", "order", "display", "limit", "filters-raw", "unknown"],
)
def test_bad_parameters_are_400_through_the_api(market: Market, app: Flask, personas: Personas, query: str) -> None:
    path = f"/v1/projects/{personas.project_id}/forms/market/submissions?{query}"
    response = app.test_client().get(path, headers=personas.analyst.headers)
    assert response.status_code == 400, response.get_data(as_text=True)


def test_the_api_filters_sorts_and_links_the_next_page(market: Market, app: Flask, personas: Personas) -> None:
    ids = market.store(ROWS)
    client = app.test_client()
    path = (
        f"/v1/projects/{personas.project_id}/forms/market/submissions"
        "?filter.region=casa,tanger&sort=field&sortField=region&order=desc&columns=region&lang=fr&limit=2"
    )
    first = client.get(path, headers=personas.analyst.headers)
    assert [item["cells"] for item in first.get_json()] == [["Tanger"], ["Casablanca"]]
    assert (first.headers["X-Total-Count"], first.headers.get("X-Total-Count-Capped")) == ("3", None)
    following = first.headers["Link"]
    assert following.startswith("<http://") and following.endswith('>; rel="next"')
    second = client.get(following[1 : following.index(">")], headers=personas.analyst.headers)
    assert [item["instanceId"] for item in second.get_json()] == [
        market.session.get(Submission, ids[0]).instance_id  # type: ignore[union-attr]
    ]
    assert "Link" not in second.headers and "X-Next-Cursor" not in second.headers


# --- T8 -------------------------------------------------------------------------------------------


def test_without_a_limit_every_row_streams_past_the_batch_and_the_page_cap(
    market: Market, app: Flask, personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "STREAM_BATCH", 2)  # five rows: three batches
    monkeypatch.setattr(table, "COUNT_CAP", 3)  # the whole list is counted exactly, past the table's cap
    ids = market.store(ROWS)
    instance = {pk: market.session.get(Submission, pk).instance_id for pk in ids}  # type: ignore[union-attr]
    client = app.test_client()
    path = f"/v1/projects/{personas.project_id}/forms/market/submissions"
    whole = client.get(path + "?columns=region&lang=fr&order=desc", headers=personas.analyst.headers)
    assert whole.status_code == 200
    assert [item["instanceId"] for item in whole.get_json()] == [instance[pk] for pk in reversed(ids)]
    assert [item["cells"] for item in whole.get_json()][:2] == [[None], ["Tanger"]]
    assert whole.headers["X-Total-Count"] == "5"
    assert "Link" not in whole.headers and "X-Total-Count-Capped" not in whole.headers
    kept = client.get(path + "?reviewState=approved", headers=personas.analyst.headers)
    assert [item["instanceId"] for item in kept.get_json()] == [instance[ids[0]], instance[ids[3]]]
    assert client.get(path + "?deleted=true", headers=personas.analyst.headers).get_json() == []
    # With a limit the keyset pages and their Link stay.
    paged = client.get(path + "?limit=2", headers=personas.analyst.headers)
    assert len(paged.get_json()) == 2 and paged.headers["Link"].endswith('>; rel="next"')


def test_the_whole_list_reads_one_batch_at_a_time(
    market: Market, app: Flask, personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "STREAM_BATCH", 2)
    market.store(ROWS)
    reads: list[int] = []
    page_of = table.submissions_table

    def counted(*args: Any, **kwargs: Any) -> table.TablePage:
        page = page_of(*args, **kwargs)
        reads.append(len(page.rows))
        return page

    monkeypatch.setattr(table, "submissions_table", counted)
    path = f"/v1/projects/{personas.project_id}/forms/market/submissions"
    response = app.test_client().get(path, headers=personas.analyst.headers, buffered=False)
    assert response.is_streamed and reads == [2]  # the first batch (and the count) before answering
    chunks = iter(response.response)
    first = [next(chunks), next(chunks)]
    assert first[0].startswith(b"[{") and reads == [2]  # its rows are written before the next batch is read
    rest = b"".join(chunks)
    response.close()
    assert reads == [2, 2, 1] and len(json.loads(b"".join(first) + rest)) == 5


def test_the_whole_list_refuses_a_bad_query_before_it_starts(market: Market, app: Flask, personas: Personas) -> None:
    path = f"/v1/projects/{personas.project_id}/forms/market/submissions?filter.seller=a"
    response = app.test_client().get(path, headers=personas.analyst.headers)
    assert (response.status_code, response.get_json()["details"]["problem"]) == (400, "invalid_field")


# --- T7 -------------------------------------------------------------------------------------------


def test_saved_columns_are_per_user(market: Market, app: Flask, personas: Personas) -> None:
    market.store(ROWS[:1])
    client = app.test_client()
    base = f"/v1/projects/{personas.project_id}/forms/market/submissions"
    put = client.put(
        base + "-columns", json={"paths": ["crops", "region"], "language": "ar"}, headers=personas.analyst.headers
    )
    assert put.status_code == 200, put.get_data(as_text=True)
    assert client.get(base + "-columns", headers=personas.analyst.headers).get_json() == {
        "paths": ["crops", "region"], "language": "ar", "display": "labels", "saved": True,
    }  # fmt: skip
    assert client.get(base + "-columns", headers=personas.manager.headers).get_json()["saved"] is False
    listed = client.get(base, headers=personas.analyst.headers).get_json()
    assert listed[0]["cells"] == ["أركان, زيتون", "الدار البيضاء"]
    assert client.get(base, headers=personas.manager.headers).get_json()[0]["cells"] == []
    again = client.put(
        base + "-columns", json={"paths": ["seller"], "display": "values"}, headers=personas.analyst.headers
    )
    assert again.get_json() == {"paths": ["seller"], "language": None, "display": "values", "saved": True}


@pytest.mark.parametrize(
    "body",
    [{"paths": ["nowhere"]}, {"paths": ["region"], "language": "de"}, {"paths": ["region"], "display": "x"}, {}],
    ids=["unknown-path", "language", "display", "no-paths"],
)
def test_bad_columns_are_400_and_change_nothing(
    market: Market, app: Flask, personas: Personas, body: dict[str, Any]
) -> None:
    client = app.test_client()
    path = f"/v1/projects/{personas.project_id}/forms/market/submissions-columns"
    assert client.put(path, json=body, headers=personas.analyst.headers).status_code == 400
    assert client.get(path, headers=personas.analyst.headers).get_json()["saved"] is False
