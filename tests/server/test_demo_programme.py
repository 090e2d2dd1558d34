"""The demo's synthetic programme: the figures a programme officer expects, from the example forms' fields.

Rules: the generated submissions parse against the published example forms; the demo's indicator
definitions are valid for those forms; computed over the generated data they give the programme's
figures (4,230 beneficiaries, 48 % women, 64 % rural, 53 % NEET, 705 cooperatives with 3,525 members,
412 women entrepreneurs) within the generator's rounding; the generator is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exports.indicators import IndicatorRow, check_against_form, compute, parse_definition
from forms.convert import convert_upload
from forms.schema import FormSchema
from forms.submission import flatten_values, parse_submission
from server import demo_programme as demo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "forms"
GENERATORS: dict[str, Callable[[], list[tuple[str, bytes]]]] = {
    demo.BENEFICIARY_FORM[0]: demo.beneficiary_submissions,
    demo.COOP_FORM[0]: demo.cooperative_submissions,
    demo.ENTREPRENEUR_FORM[0]: demo.entrepreneur_submissions,
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, FormSchema]:
    return {f: convert_upload((EXAMPLES / f"{f}.xlsx").read_bytes(), f"{f}.xlsx").schema for f in GENERATORS}


@pytest.fixture(scope="module")
def rows(schemas: dict[str, FormSchema]) -> dict[str, list[IndicatorRow]]:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    out: dict[str, list[IndicatorRow]] = {}
    for form_id, make in GENERATORS.items():
        parsed = [parse_submission(xml, schemas[form_id]) for _, xml in make()]
        out[form_id] = [IndicatorRow(dict(flatten_values(p.values)), at) for p in parsed]
    return out


EXPECTED = {
    "beneficiaries": 4230,
    "women_share": 0.48,
    "rural_share": 0.64,
    "neet_share": 0.53,
    "cooperatives": 705,
    "cooperative_members": 3525,
    "women_entrepreneurs": 412,
}


@pytest.mark.parametrize("name", list(EXPECTED), ids=list(EXPECTED))
def test_the_demo_indicators_give_the_programme_figures(
    name: str, schemas: dict[str, FormSchema], rows: dict[str, list[IndicatorRow]]
) -> None:
    definition = parse_definition(name, demo.INDICATORS[name])
    assert check_against_form(definition, [schemas[definition.source_name]]) == ()
    value = compute(definition, rows[definition.source_name]).overall.value(definition.measure)
    assert value == pytest.approx(EXPECTED[name], abs=0.001)


def test_regions_programmes_and_cohorts(rows: dict[str, list[IndicatorRow]]) -> None:
    beneficiaries = rows[demo.BENEFICIARY_FORM[0]]
    regions = {r.values.get("location/region") for r in beneficiaries} - {None, ""}
    assert len(regions) == 12
    montija = [r for r in beneficiaries if r.values.get("programme") == "al_montija"]
    assert len(montija) == 50
    assert {(r.values["beneficiary/sex"], r.values["location/area"]) for r in montija} == {("female", "rural")}
    assert {r.values.get("location/commune") for r in montija} == {"Bouizate", "Ouled Salmane"}
    assert sum(1 for r in beneficiaries if r.values.get("programme") == "women_empowerment_center") == 230
    assert sum(1 for r in beneficiaries if r.values.get("programme") == "femmpact") == 60


def test_the_generator_is_deterministic() -> None:
    assert demo.beneficiary_submissions()[:5] == demo.beneficiary_submissions()[:5]
    assert len({i for i, _ in demo.beneficiary_submissions()}) == demo.BENEFICIARIES
