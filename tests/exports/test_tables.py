"""Table planning and option parsing.

Rules checked:
- T1 the union of versions keeps the current order; an old-only field goes after its preceding sibling.
- T2 an old-version record exports its removed field; a new record leaves it empty; FormVersion says which.
- T3 repeats sharing a name get ``~1``, ``~2`` file names; headers in a table are unique.
- T4 filters by date, review state, version, submitter and field value; bad filters name the parameter.
- T5 ``options_from_query`` parses every option and names the bad parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exports.options import ExportOptionError, ExportOptions, options_from_query
from exports.tables import merge_fields, plan_tables
from forms.schema import Field, FormSchema
from tests.exports.coop_fixture import SCHEMAS, coop_schema, coop_values, export_files, record, table_dicts


def test_union_of_versions_places_old_fields_after_their_sibling() -> None:
    paths = [f.path for f in merge_fields(SCHEMAS) if f.kind == "question"]
    assert paths[:7] == ["coop_name", "phone", "region", "activities", "founded", "location", "revenue"]


def test_old_field_first_in_its_group_goes_right_after_the_group() -> None:
    old = FormSchema(
        "f", "1", "f", fields=(Field("g", "g", "group"), Field("g/a", "a", "question"), Field("b", "b", "question"))
    )
    new = FormSchema(
        "f", "2", "f", fields=(Field("g", "g", "group"), Field("b", "b", "question"), Field("c", "c", "question"))
    )
    assert [f.path for f in merge_fields((old, new))] == ["g", "g/a", "b", "c"]


def test_old_version_record_exports_its_removed_field() -> None:
    old = record("uuid:v1", coop_values("uuid:v1", phone="0612345678", revenue=""), form_version="1")
    new = record("uuid:v2", coop_values("uuid:v2"))
    rows = table_dicts(export_files([old, new])["coop.csv"])
    assert [(r["FormVersion"], r["phone"], r["revenue"]) for r in rows] == [
        ("1", "0612345678", ""),
        ("2", "", "125000.5"),
    ]


def test_only_current_version_has_no_removed_columns() -> None:
    header = export_files([], schemas=(coop_schema("2"),))["coop.csv"].splitlines()[0]
    assert "phone" not in header.split(",")


def test_repeats_sharing_a_name_get_numbered_files_and_headers_stay_unique() -> None:
    schema = FormSchema(
        "f",
        "1",
        "f",
        fields=(
            Field("a", "a", "group"),
            Field("a/item", "item", "repeat"),
            Field("a/item/name", "name", "question", repeat="a/item"),
            Field("b", "b", "group"),
            Field("b/item", "item", "repeat"),
            Field("b/item/name", "name", "question", repeat="b/item"),
            Field("x", "x", "group"),
            Field("x/name", "name", "question"),
            Field("y", "y", "group"),
            Field("y/name", "name", "question"),
        ),
    )
    plan = plan_tables([schema], ExportOptions(group_paths=False))
    assert [t.file_name for t in plan.tables] == ["f.csv", "f-item.csv", "f-item~1.csv"]
    assert plan.tables[0].headers[1:3] == ["name", "name~2"]


def _at(day: int, **kw: object) -> object:
    return record(f"uuid:{day}", coop_values(f"uuid:{day}"), submission_date=datetime(2024, 5, day, tzinfo=UTC), **kw)


FILTER_RECORDS = [
    _at(1, review_state="approved", submitter="coach1"),
    _at(2, review_state="hasIssues", submitter="coach2", form_version="1"),
    _at(3, submitter="coach1"),
]


@pytest.mark.parametrize(
    ("options", "keys"),
    [
        (ExportOptions(since=datetime(2024, 5, 2, tzinfo=UTC)), ["uuid:2", "uuid:3"]),
        (ExportOptions(until=datetime(2024, 5, 2, tzinfo=UTC)), ["uuid:1"]),
        (ExportOptions(review_states=frozenset({"approved", "received"})), ["uuid:1", "uuid:3"]),
        (ExportOptions(versions=frozenset({"1"})), ["uuid:2"]),
        (ExportOptions(submitters=frozenset({"coach1"})), ["uuid:1", "uuid:3"]),
        (ExportOptions(field_equals=(("meta/instanceID", "uuid:3"),)), ["uuid:3"]),
    ],
    ids=["since-inclusive", "until-exclusive", "review-state", "version", "submitter", "field-value"],
)
def test_filters(options: ExportOptions, keys: list[str]) -> None:
    assert [r["KEY"] for r in table_dicts(export_files(FILTER_RECORDS, options)["coop.csv"])] == keys  # type: ignore[arg-type]


def test_filter_on_a_repeat_field_is_refused() -> None:
    with pytest.raises(ExportOptionError) as err:
        plan_tables(SCHEMAS, ExportOptions(field_equals=(("details/members/name", "x"),)))
    assert err.value.field == "field.details/members/name"


def test_options_from_query_reads_every_option() -> None:
    got = options_from_query(
        {
            "labels": "labels",
            "lang": "ar",
            "headers": "labels",
            "group_paths": "false",
            "separator": "/",
            "split_select_multiple": "1",
            "split_geopoint": "no",
            "since": "2024-05-01",
            "until": "2024-06-01T00:00:00+01:00",
            "review_state": ["approved", "hasIssues,received"],
            "version": "1,2",
            "submitter": "coach1",
            "field.region": "r1",
            "include_edits": "true",
            "include_deleted": "on",
            "include_rejected": "yes",
            "bom": "true",
            "clean": "false",
            "geojson_field": "location",
            "format": "csv",
        },
        ignore={"format"},
    )
    assert got == ExportOptions(
        labels="labels",
        lang="ar",
        headers="labels",
        group_paths=False,
        separator="/",
        split_select_multiple=True,
        split_geopoint=False,
        since=datetime(2024, 5, 1, tzinfo=UTC),
        until=datetime.fromisoformat("2024-06-01T00:00:00+01:00"),
        review_states=frozenset({"approved", "hasIssues", "received"}),
        versions=frozenset({"1", "2"}),
        submitters=frozenset({"coach1"}),
        field_equals=(("region", "r1"),),
        include_edits=True,
        include_deleted=True,
        include_rejected=True,
        bom=True,
        clean=False,
        geojson_field="location",
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"labels": "names"}, "labels"),
        ({"bom": "maybe"}, "bom"),
        ({"since": "last week"}, "since"),
        ({"since": "2024-06-01", "until": "2024-05-01"}, "until"),
        ({"review_state": "lost"}, "review_state"),
        ({"field.": "x"}, "field."),
        ({"lang": ""}, "lang"),
        ({"separator": ","}, "separator"),
        ({"groupPaths": "true"}, "groupPaths"),
        ({"bom": ["true", "false"]}, "bom"),
    ],
    ids=[
        "labels",
        "bool",
        "date",
        "until-before-since",
        "review-state",
        "field-path",
        "empty-lang",
        "comma-sep",
        "unknown",
        "twice",
    ],
)
def test_options_from_query_names_the_bad_parameter(query: dict[str, str | list[str]], field: str) -> None:
    with pytest.raises(ExportOptionError) as err:
        options_from_query(query)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
