"""How the suite is split between CI's two runs and ordered within one (``tests/conftest.py``).

Rules:
- S1: with PostgreSQL set, the ``backend`` fixture's SQLite case is left out (the run without PostgreSQL ran
  it), its PostgreSQL case is kept.
- S2: a SQLite case that a ``skipif`` or a ``postgres_only`` mark could skip without PostgreSQL is kept: the
  run with PostgreSQL may be the only one that runs it.
- S3: a test with no ``backend`` parameter is not left out on that account.
- S4: the long scenarios and the browser stories come first; the order is otherwise the collection's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import _long_first, _sqlite_case_of_the_first_run


@dataclass
class _CallSpec:
    params: dict[str, Any]


@dataclass
class _Item:
    """What the collection helpers read from a pytest item: its name, parameters and marks."""

    name: str
    params: dict[str, Any] | None = None
    marks: list[str] = field(default_factory=list)

    @property
    def callspec(self) -> _CallSpec:
        if self.params is None:
            raise AttributeError("callspec")  # as a pytest item that is not parametrized
        return _CallSpec(self.params)

    def iter_markers(self, name: str) -> Iterator[pytest.Mark]:
        return (getattr(pytest.mark, mark).mark for mark in self.marks if mark == name)

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return next(self.iter_markers(name), None)


@pytest.mark.parametrize(
    ("item", "left_out"),
    [
        (_Item("sqlite case", {"backend": "sqlite"}), True),
        (_Item("postgresql case", {"backend": "postgresql"}), False),
        (_Item("sqlite case with other parameters", {"backend": "sqlite", "persona": "admin"}), True),
        (_Item("sqlite case under a skipif", {"backend": "sqlite"}, ["skipif"]), False),
        (_Item("sqlite case marked postgres_only", {"backend": "sqlite"}, ["postgres_only"]), False),
        (_Item("no parameters"), False),
        (_Item("a store parameter of another name", {"backend_name": "sqlite"}), False),
    ],
    ids=lambda value: value.name if isinstance(value, _Item) else str(value),
)
def test_s1_s2_s3_which_sqlite_cases_the_postgresql_run_leaves_out(item: _Item, left_out: bool) -> None:
    assert _sqlite_case_of_the_first_run(item) is left_out  # type: ignore[arg-type]


def test_s4_long_scenarios_and_browser_stories_come_first_in_collection_order() -> None:
    items = [
        _Item("a"),
        _Item("relay", marks=["one_store_per_run"]),
        _Item("b"),
        _Item("console", marks=["browser"]),
        _Item("c"),
        _Item("keep-alive", marks=["one_store_per_run"]),
    ]
    _long_first(items)  # type: ignore[arg-type]
    assert [item.name for item in items] == ["relay", "console", "keep-alive", "a", "b", "c"]
