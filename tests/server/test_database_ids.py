"""Ids in URLs and queries stay within the stores' signed 64-bit keys (server/database_ids.py)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from server.database_ids import MAX_DATABASE_ID, DatabaseIdConverter, parse_database_id

ID_PATTERN = re.compile(DatabaseIdConverter.regex)


@given(
    st.one_of(st.integers(min_value=0, max_value=10**25), st.integers(MAX_DATABASE_ID - 1000, MAX_DATABASE_ID + 1000))
)
def test_the_url_pattern_matches_exactly_the_ids_the_stores_hold(value: int) -> None:
    # In the regex, not only in to_python: Werkzeug answers 405 when to_python refuses (see the module).
    assert bool(ID_PATTERN.fullmatch(str(value))) == (value <= MAX_DATABASE_ID)
    assert (parse_database_id(str(value)) == value) == (value <= MAX_DATABASE_ID)


def test_only_ascii_digits_name_an_id() -> None:
    assert [parse_database_id(t) for t in ("12", "١٢", "²", "-1", " 1", "")] == [12, None, None, None, None, None]
