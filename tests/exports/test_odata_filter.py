"""``$filter`` parsing and evaluation (``exports.odata_filter``), without a server.

Rules:
- F1 OData's precedence: ``not`` over comparisons, ``and`` over ``or``; parentheses group.
- F2 ``null`` equals only ``null``; an ordering comparison with ``null`` is false; a number compares with
  a number or a numeric text, never with other text; date-times compare as instants whatever their
  offset; dates compare with date-times.
- F3 ``year() .. second()`` read a date-time in UTC; ``now()`` is the given instant; ``contains()``,
  ``startswith()``, ``endswith()`` read text.
- F4 ``''`` in a literal is a quote; member paths are split on ``/`` and ``$root/Submissions/...`` kept.
- F5 what does not parse is a ``FilterError`` naming the place, including input nested too deep or too
  long (never a RecursionError).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exports.odata_filter import MAX_DEPTH, FilterError, parse_filter

ROW: dict[tuple[str, ...], Any] = {
    ("region",): "souss",
    ("age",): 34,
    ("income",): 1.5,
    ("sex",): None,
    ("name",): "Aït Baha l'ancienne",
    ("__system", "submissionDate"): "2026-12-05T08:30:00.000Z",
    ("$root", "Submissions", "region"): "draa",
}


def holds(text: str) -> bool:
    return parse_filter(text, now=datetime(2026, 12, 6, tzinfo=UTC)).matches(lambda path: ROW.get(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("region eq 'souss' or age gt 50 and sex eq 'f'", True),
        ("(region eq 'souss' or age gt 50) and sex eq 'f'", False),
        ("not (region eq 'draa')", True),
        ("not region eq 'souss' or age eq 34", True),
        ("sex eq null", True),
        ("sex ne null", False),
        ("sex lt 'm'", False),
        ("age eq '34'", True),
        ("region gt 3", False),
        ("age ne 'x'", True),
        ("income gt 1.25 and income lt 2", True),
        ("__system/submissionDate gt 2026-12-05T09:00:00+01:00", True),
        ("__system/submissionDate lt 2026-12-06", True),
        ("year(__system/submissionDate) eq 2026 and month(__system/submissionDate) eq 12", True),
        ("hour(__system/submissionDate) eq 8 and minute(__system/submissionDate) eq 30", True),
        ("__system/submissionDate lt now()", True),
        ("contains(name, 'Baha') and startswith(name, 'Aït') and endswith(name, 'ancienne')", True),
        ("name eq 'Aït Baha l''ancienne'", True),
        ("$root/Submissions/region eq 'draa'", True),
        ("unknown eq null", True),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_f1_to_f4_evaluation(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_f4_paths_are_collected() -> None:
    parsed = parse_filter("$root/Submissions/a/b eq 1 and __system/reviewState eq 'approved'")
    assert parsed.paths == {("$root", "Submissions", "a", "b"), ("__system", "reviewState")}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("region eq", "ends too early"),
        ("region eq 'x' garbage", "unexpected"),
        ("region eq 'open", "unexpected character"),
        ("length(region) eq 1", "unknown function"),
        ("$it/region eq 1", "only $root/Submissions"),
        ("$root/Submissions eq 1", "not a member path"),
        ("(" * (MAX_DEPTH + 1) + "a eq 1" + ")" * (MAX_DEPTH + 1), "nested"),
        ("not " * (MAX_DEPTH + 1) + "a eq 1", "nested"),
        ("a eq 1 and " * 2000 + "a eq 1", "longer than"),
    ],
    ids=["empty", "short", "trailing", "quote", "function", "it", "bare-root", "parens", "nots", "long"],
)
def test_f5_errors(text: str, words: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    assert words in str(caught.value)


@given(st.text(max_size=200))
def test_f5_any_text_parses_or_is_a_filter_error(text: str) -> None:
    try:
        parsed = parse_filter(text)
    except FilterError:
        return
    parsed.matches(lambda path: ROW.get(path))
