"""Indicator definitions and the reference computation (exports.indicators), without a store.

Rules:
- I1 a definition names its source, measure, filters, breakdowns, target and review states; every bad part
  is refused with a stable code naming it;
- I2 a missing value equals nothing (eq/in/contains false, ne/not_in true); number comparisons skip text;
- I3 a share counts matching rows among the rows that pass the filters; a rejected row never counts;
- I4 figures by breakdown and period add up to the overall figure (additive measures);
- I5 a field that no version of the form has, or that sits in a repeat, is refused; one that some
  versions lack is reported with those versions.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.indicators import (
    Condition,
    IndicatorError,
    IndicatorRow,
    check_against_form,
    compute,
    matches,
    parse_definition,
    period_key,
)
from forms.schema import Field, FormSchema

WOMEN = {
    "title": {"fr": "Part des femmes", "ar": "نسبة النساء", "en": "Share of women"},
    "source": {"form": "benef"},
    "measure": {"kind": "share", "where": [{"field": "sexe", "op": "eq", "value": "femme"}]},
    "breakdowns": ["region"],
    "target": 0.48,
}


def test_i1_a_definition_reads_back_as_it_was_given() -> None:
    definition = parse_definition("women_share", WOMEN)
    assert definition.measure == "share" and definition.target == 0.48
    assert definition.where == (Condition("sexe", "eq", "femme"),)
    assert definition.review_states == ("received", "has_issues", "approved")
    assert parse_definition("women_share", definition.to_json()) == definition
    assert definition.title("ar") == "نسبة النساء" and definition.fields() == ("sexe", "region")


@pytest.mark.parametrize(
    ("name", "change", "code", "where"),
    [
        ("Women", {}, "bad_name", "name"),
        ("w", {"title": {"de": "Frauen"}}, "bad_title", "title"),
        ("w", {"source": {"table": "x"}}, "bad_source", "source"),
        ("w", {"measure": {"kind": "median"}}, "bad_measure", "measure"),
        ("w", {"measure": {"kind": "share"}}, "bad_measure", "measure.where"),
        ("w", {"measure": {"kind": "sum"}}, "bad_field", "measure.field"),
        ("w", {"measure": {"kind": "count", "where": [{"field": "a", "value": "b"}]}}, "bad_measure", "measure.where"),
        ("w", {"filters": [{"field": "age", "op": "gt", "value": "vingt"}]}, "bad_value", "filters[0].value"),
        ("w", {"filters": [{"field": "age", "op": "like", "value": "2"}]}, "bad_operator", "filters[0].op"),
        ("w", {"target": 1.5}, "bad_target", "target"),
        ("w", {"review_states": ["rejected"]}, "bad_review_states", "review_states"),
        ("w", {"colour": "red"}, "unknown_key", "colour"),
    ],
    ids=[
        "name",
        "title-language",
        "source",
        "measure-kind",
        "share-without-where",
        "sum-without-field",
        "where-on-count",
        "number-op-text",
        "unknown-op",
        "share-target-over-1",
        "rejected-counts",
        "unknown-key",
    ],
)
def test_i1_bad_parts_are_named(name: str, change: dict[str, object], code: str, where: str) -> None:
    with pytest.raises(IndicatorError) as caught:
        parse_definition(name, {**WOMEN, **change})
    assert (caught.value.code, caught.value.field) == (code, where)


@pytest.mark.parametrize(
    ("op", "value", "given", "expected"),
    [
        ("eq", "femme", None, False),
        ("ne", "femme", None, True),
        ("in", ("a", "b"), None, False),
        ("not_in", ("a", "b"), None, True),
        ("contains", "b", None, False),
        ("contains", "b", "a b c", True),
        ("contains", "b", "ab c", False),
        ("gt", 18.0, "20", True),
        ("gt", 18.0, "vingt", False),
        ("le", 18.0, "18", True),
        ("lt", 18.0, None, False),
    ],
    ids=[
        "eq-missing",
        "ne-missing",
        "in-missing",
        "not-in-missing",
        "contains-missing",
        "contains-choice",
        "contains-is-whole-choice",
        "gt-number",
        "gt-text",
        "le-equal",
        "lt-missing",
    ],
)
def test_i2_missing_values_and_numbers(op: str, value: object, given: str | None, expected: bool) -> None:
    assert matches(Condition("f", op, value), given) is expected  # type: ignore[arg-type]


def _row(sexe: str | None, region: str, state: str = "received", month: int = 1) -> IndicatorRow:
    values = {"region": region} | ({"sexe": sexe} if sexe is not None else {})
    return IndicatorRow(values, datetime(2026, month, 15, tzinfo=UTC), state)


def test_i3_share_among_counted_rows_and_rejected_never_counts() -> None:
    definition = parse_definition("women_share", WOMEN)
    rows = [_row("femme", "01"), _row("homme", "01"), _row("femme", "02"), _row("femme", "02", "rejected")]
    figures = compute(definition, rows, by="region")
    assert figures.overall.value("share") == pytest.approx(2 / 3)
    assert figures.cells[("01", None)].value("share") == 0.5
    assert figures.cells[("02", None)].rows == 1


def test_period_keys() -> None:
    assert period_key(datetime(2026, 11, 2, tzinfo=UTC), "quarter") == "2026-Q4"
    assert period_key("2026-03-31", "month") == "2026-03"
    assert period_key("31/03/2026", "month") is None


rows_strategy = st.lists(
    st.builds(
        _row,
        st.sampled_from(["femme", "homme", None]),
        st.sampled_from(["01", "02", "03"]),
        st.sampled_from(["received", "has_issues", "approved", "rejected"]),
        st.integers(1, 12),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(rows_strategy)
def test_i4_cells_add_up_to_the_overall_figure(rows: list[IndicatorRow]) -> None:
    definition = parse_definition("women_share", WOMEN)
    figures = compute(definition, rows, by="region", period="quarter")
    assert sum(c.rows for c in figures.cells.values()) == figures.overall.rows
    assert sum(c.matched for c in figures.cells.values()) == figures.overall.matched
    assert figures.overall.rows == sum(1 for r in rows if r.review_state != "rejected")


def _schema(version: str, *paths: str, repeat: str | None = None) -> FormSchema:
    fields = tuple(
        Field(path=p, name=p.rsplit("/", 1)[-1], kind="question", repeat=repeat if p.startswith(f"{repeat}/") else None)
        for p in paths
    )
    return FormSchema(form_id="benef", version=version, title="t", fields=fields)


def test_i5_fields_checked_against_every_version() -> None:
    definition = parse_definition("women_share", WOMEN)
    notes = check_against_form(definition, [_schema("1", "sexe", "region"), _schema("2", "sexe")])
    assert [(n.field, n.missing_from, n.in_current) for n in notes] == [("region", ("2",), False)]
    with pytest.raises(IndicatorError) as unknown:
        check_against_form(definition, [_schema("1", "sexe")])
    assert unknown.value.code == "unknown_field" and unknown.value.field == "region"
    in_repeat = parse_definition("women_share", {**WOMEN, "breakdowns": ["m/region"]})
    with pytest.raises(IndicatorError) as repeated:
        check_against_form(in_repeat, [_schema("1", "sexe", "m/region", repeat="m")])
    assert repeated.value.code == "repeat_field"
