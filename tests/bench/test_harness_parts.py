"""The bench harness's pure parts: statistics, targets, report rendering and payload generation.

Nothing here times anything: these check the arithmetic and the shapes the benchmarks rely on.
"""

from __future__ import annotations

import json
import re

import pytest

from bench import export, ingest
from bench.cost_model import programme_scale, render_cost_model
from bench.load import PreparedRequest, split_round_robin
from bench.payloads import (
    REPEAT_INSTANCES,
    build_bench_xlsform,
    generate_submissions,
    multipart_body,
    push_body,
)
from bench.report import format_number, format_ratio, render_markdown
from bench.results import BenchmarkResult, Figure, Reference, Target, not_available
from bench.stats import growth_exponent, latency, median, percentile, ratio, spread

ARABIC = re.compile("[\u0600-\u06ff]")
FRENCH_ACCENTS = re.compile("[éèàçîïôûâ]")


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([1, 2, 3, 4], 0.5, 2.5),
        ([5], 0.99, 5.0),
        ([1, 2, 3, 4, 5], 0.0, 1.0),
        ([1, 2, 3, 4, 5], 1.0, 5.0),
        ([10, 20, 30, 40, 50], 0.95, 48.0),
        ([3, 1, 2], 0.5, 2.0),
    ],
    ids=["even-median", "single", "min", "max", "p95-interpolated", "unsorted"],
)
def test_percentile_interpolates_between_closest_ranks(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == pytest.approx(expected)


def test_percentile_refuses_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_spread_reports_median_min_max_and_iqr() -> None:
    summary = spread([100.0, 90.0, 110.0, 95.0, 105.0])
    assert (summary.median, summary.minimum, summary.maximum) == (100.0, 90.0, 110.0)
    assert (summary.q1, summary.q3, summary.rounds) == (95.0, 105.0, 5)
    assert summary.relative_spread == pytest.approx(0.2)


def test_latency_is_reported_in_milliseconds() -> None:
    summary = latency([0.001 * i for i in range(1, 101)])
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("sizes", "costs", "expected"),
    [
        ([1, 10, 100], [2, 20, 200], 1.0),
        ([1, 10, 100], [5, 5, 5], 0.0),
        ([1, 10, 100], [1, 100, 10000], 2.0),
    ],
    ids=["linear", "flat", "quadratic"],
)
def test_growth_exponent_fits_the_power_law(sizes: list[float], costs: list[float], expected: float) -> None:
    assert growth_exponent(sizes, costs) == pytest.approx(expected)


def test_growth_exponent_needs_two_points_and_ratio_needs_a_reference() -> None:
    assert growth_exponent([10], [1]) is None
    assert ratio(5, 0) is None
    assert ratio(5, 20) == 0.25
    assert median([4, 1, 3]) == 3


@pytest.mark.parametrize(
    ("target", "measured", "reference", "expected"),
    [
        (Target("≥ 1,000 req/s", 1000), 1200, None, "PASS"),
        (Target("≥ 1,000 req/s", 1000), 999, None, "FAIL"),
        (Target("≥ 25% of raw", 0.25, "ratio_at_least"), 300, 1000, "PASS"),
        (Target("≥ 25% of raw", 0.25, "ratio_at_least"), 200, 1000, "FAIL"),
        (Target("≤ 1.25× the 10k peak", 120, "at_most"), 100, None, "PASS"),
    ],
    ids=["rate-pass", "rate-fail", "ratio-pass", "ratio-fail", "at-most"],
)
def test_figure_status_follows_its_target(
    target: Target, measured: float, reference: float | None, expected: str
) -> None:
    figure = Figure(
        "f",
        "req/s",
        spread([measured]),
        reference=Reference("raw", reference, "rows/s") if reference else None,
        target=target,
    )
    assert figure.status == expected


@pytest.mark.parametrize(
    ("target", "measured", "reference", "expected"),
    [
        (export.RATE_TARGET, 12_597, 67_295, "FAIL"),
        (export.RATE_TARGET, 20_500, 67_295, "PASS"),
        (ingest.ONE_CLIENT_TARGET, 183, 746, "FAIL"),
        (ingest.ONE_CLIENT_TARGET, 230, 746, "PASS"),
        (ingest.many_clients_target(8), 272, 1_905, "FAIL"),
        (ingest.many_clients_target(8), 480, 1_905, "PASS"),
    ],
    ids=["export-0.19x", "export-0.30x", "ingest-1-0.25x", "ingest-1-0.31x", "ingest-8-0.14x", "ingest-8-0.25x"],
)
def test_issue_21_targets_judge_the_ratio_to_the_raw_reference(
    target: Target, measured: float, reference: float, expected: str
) -> None:
    """Issue 21's acceptance is a ratio to the raw database of the same run, whatever the absolute rate."""
    figure = Figure(
        "f", "submissions/s", spread([measured]), reference=Reference("raw", reference, "rows/s"), target=target
    )
    assert figure.status == expected
    assert "issue 21" in target.text


def _results() -> dict[str, object]:
    ok = BenchmarkResult("formlist", "OpenRosa formList")
    ok.figures.append(
        Figure(
            "formList, 8 clients (200)",
            "req/s",
            spread([1100.0, 1300.0, 1200.0]),
            latency=latency([0.002, 0.004, 0.010]),
            reference=Reference("formList SELECT", 12000.0, "queries/s"),
            target=Target("≥ 1,000 requests/s", 1000),
        )
    )
    missing = not_available("push", "JSON push", "the push route is not registered yet")
    meta = {
        "cpu": "Test CPU",
        "cores": 2,
        "ram_gib": 8.0,
        "os": "Linux",
        "versions": {"python": "3.11"},
        "date": "2026-01-01 00:00 UTC",
        "commit": "abc1234",
        "settings": {"workers": 5, "threads": 4, "rounds": 3, "warmup": 1},
    }
    return {"meta": meta, "benchmarks": {"formlist": ok.as_dict(), "push": missing.as_dict()}}


def test_report_shows_median_spread_reference_ratio_and_status() -> None:
    page = render_markdown(_results())
    row = next(line for line in page.splitlines() if line.startswith("| formList, 8 clients (200)"))
    assert "**1,200 req/s**" in row
    assert "1,100 – 1,300" in row
    assert "formList SELECT: 12,000 queries/s" in row
    assert "0.10×" in row
    assert row.endswith("| PASS |")


def test_report_keeps_a_missing_benchmark_as_not_available() -> None:
    page = render_markdown(_results())
    assert "## JSON push" in page
    assert "**Not available** — the push route is not registered yet." in page
    assert "| JSON push | — | — | — | — | not available |" in page


def test_report_names_the_machine_and_the_commit() -> None:
    page = render_markdown(_results())
    assert "| CPU | Test CPU (2 cores usable) |" in page
    assert "`abc1234`" in page
    assert "## Cost model" in page


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [(28123.4, "rows/s", "28,123 rows/s"), (93.25, "req/s", "93.2 req/s"), (1.5, "s", "1.50 s"), (None, "", "—")],
    ids=["thousands", "tens", "units", "missing"],
)
def test_format_number(value: float | None, unit: str, expected: str) -> None:
    assert format_number(value, unit) == expected


def test_format_ratio() -> None:
    assert format_ratio(0.254) == "0.25×"
    assert format_ratio(None) == "—"


def test_submissions_are_about_two_kilobytes_with_two_repeats_in_french_and_arabic() -> None:
    submissions = list(generate_submissions(50, run_tag="test"))
    sizes = [len(s.xml) for s in submissions]
    assert 1700 <= sum(sizes) / len(sizes) <= 2400
    for sub in submissions:
        text = sub.xml.decode("utf-8")
        assert text.count("<board_members>") == REPEAT_INSTANCES == 2
        assert ARABIC.search(text) and FRENCH_ACCENTS.search(text)
        assert f"<instanceID>{sub.instance_id}</instanceID>" in text
    assert len({s.instance_id for s in submissions}) == 50


def test_generation_is_deterministic_per_tag_and_distinct_across_tags() -> None:
    first = [s.instance_id for s in generate_submissions(5, run_tag="a")]
    again = [s.instance_id for s in generate_submissions(5, run_tag="a")]
    other = [s.instance_id for s in generate_submissions(5, run_tag="b")]
    assert first == again
    assert not set(first) & set(other)


def test_extra_fields_make_bigger_submissions() -> None:
    small = next(generate_submissions(1, run_tag="x")).xml
    large = next(generate_submissions(1, run_tag="x", extra_fields=50)).xml
    assert large.count(b"<x0") == 50
    assert len(large) > len(small) + 50 * 10


def test_bench_xlsform_is_an_xlsx_workbook() -> None:
    assert build_bench_xlsform().startswith(b"PK\x03\x04")


def test_multipart_body_carries_the_xml_as_xml_submission_file() -> None:
    xml = next(generate_submissions(1)).xml
    body = multipart_body(xml, "BOUNDARY")
    assert body.startswith(b'--BOUNDARY\r\nContent-Disposition: form-data; name="xml_submission_file"')
    assert xml in body
    assert body.endswith(b"\r\n--BOUNDARY--\r\n")


def test_push_body_is_a_fieldsync_batch_with_one_item_per_submission() -> None:
    subs = list(generate_submissions(3))
    body = json.loads(push_body(subs, device_id="d1", batch_id="b1"))
    assert body["protocol"] == "fieldsync/2"
    assert [item["instanceId"] for item in body["items"]] == [s.instance_id for s in subs]
    assert body["items"][0]["data"].encode("utf-8") == subs[0].xml


def test_requests_are_dealt_evenly_to_clients() -> None:
    items = [PreparedRequest("GET", f"/{i}") for i in range(10)]
    slices = split_round_robin(items, 3)
    assert [len(s) for s in slices] == [4, 3, 3]
    assert sorted(r.path for s in slices for r in s) == sorted(r.path for r in items)


def test_programme_scale_is_monthly_visits_for_five_years() -> None:
    assert programme_scale(1) == {"monthly": 4_900, "total": 294_000, "rush_rate": 4_900 / (8 * 3600)}
    assert programme_scale(100)["total"] == 29_400_000


def test_cost_model_fits_growth_and_sizes_storage() -> None:
    export = not_available("export", "CSV zip export", "")
    export.available = True
    export.data = {
        "series": {
            "1000": {"seconds": [1.0], "peak_mib": [100.0]},
            "10000": {"seconds": [10.0], "peak_mib": [100.0]},
            "100000": {"seconds": [100.0], "peak_mib": [100.0]},
        },
        "bytes_per_submission": 3000.0,
    }
    text = render_cost_model({"benchmarks": {"export": export.as_dict()}})
    assert "| Export time vs submissions | 1,000 → 1.00 s, 10,000 → 10.00 s, 100,000 → 100.00 s | k = 1.00" in text
    assert "k = 0.00 (0 = flat)" in text
    assert "| 1× | 294,000 (4,900/month) | 882.0 MB |" in text
    assert "| 100× | 29,400,000 (490,000/month) | 88.2 GB |" in text
