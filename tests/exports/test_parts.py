"""Records read in parts by forked helper processes (``exports.parts``) and the CSV zip made from them.

Rules checked:
- P1 ``in_processes`` yields every part's result in part order, each computed in a helper process
  (never the caller), helper ``k`` taking parts ``k``, ``k + n``, …; each helper calls ``finish`` once
  after its last part.
- P2 a part that raises ends the iteration with ``PartFailed`` naming the part and the error; a helper
  that dies is reported with its exit code; either way no helper is left behind.
- P3 closing the iteration early kills the helpers (none left running).
- P4 a CSV zip made from records in parts (any split, 1 to 3 processes, BOM, dirty values that the
  cleaning report counts, formula-like cells, superseded and deleted versions) has exactly the members
  and summary of the zip made from the same records in one process; the records' ``close`` is called.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import time
import zipfile
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exports.csv_zip import iter_csv_zip
from exports.options import ExportOptions
from exports.parts import PartFailed, SplitRecords, in_processes
from exports.records import ExportRecord
from exports.rows import ExportSummary
from tests.exports.coop_fixture import SCHEMAS, coop_values, record


def _export_helpers() -> list[multiprocessing.process.BaseProcess]:
    """The export helpers still alive (other children, such as a form converter, are not this test's)."""
    return [p for p in multiprocessing.active_children() if p.name.startswith("export-part-")]


def _pid_and_part(part: int) -> tuple[int, int]:
    return os.getpid(), part


def test_results_come_in_part_order_from_helper_processes() -> None:
    results = list(in_processes(list(range(7)), _pid_and_part, 3))
    assert [part for _, part in results] == list(range(7))
    pids = [pid for pid, _ in results]
    assert os.getpid() not in pids
    assert len(set(pids)) == 3
    # Helper k takes parts k, k + 3, k + 6.
    assert pids[0] == pids[3] == pids[6] and pids[1] == pids[4] and pids[2] == pids[5]
    assert _export_helpers() == []


def test_each_helper_finishes_once_after_its_last_part(tmp_path: Path) -> None:
    def work(part: int) -> int:
        (tmp_path / f"part-{part}-{os.getpid()}").touch()
        return part

    def finish() -> None:
        parts = sorted(int(p.name.split("-")[1]) for p in tmp_path.glob(f"part-*-{os.getpid()}"))
        (tmp_path / f"finished-{os.getpid()}").write_text(",".join(map(str, parts)))

    assert list(in_processes(list(range(5)), work, 2, finish)) == list(range(5))
    finished = sorted(p.read_text() for p in tmp_path.glob("finished-*"))
    assert finished == ["0,2,4", "1,3"]


def _fails_on_three(part: int) -> int:
    if part == 3:
        raise ValueError("part three is broken")
    return part


def test_a_failing_part_is_raised_and_no_helper_is_left() -> None:
    seen = []
    with pytest.raises(PartFailed, match=r"part 4: ValueError: part three is broken"):
        for result in in_processes(list(range(6)), _fails_on_three, 2):
            seen.append(result)
    assert seen == [0, 1, 2]
    assert _export_helpers() == []


def _dies_on_one(part: int) -> int:
    if part == 1:
        os._exit(7)
    return part


def test_a_helper_that_dies_is_reported_with_its_exit_code() -> None:
    with pytest.raises(PartFailed, match=r"ended before part 2 \(exit code 7\)"):
        list(in_processes(list(range(4)), _dies_on_one, 2))
    assert _export_helpers() == []


def test_stopping_early_kills_the_helpers(tmp_path: Path) -> None:
    def slow(part: int) -> int:
        if part > 0:
            time.sleep(30)
            (tmp_path / f"finished-{part}").touch()  # only a helper left running gets here
        return part

    results = in_processes(list(range(4)), slow, 2)
    assert next(results) == 0
    results.close()  # what a client that goes away does to the response
    assert _export_helpers() == []
    assert list(tmp_path.iterdir()) == []  # killed, not waited for


class ListParts(SplitRecords[tuple[int, int]]):
    """Records held in a list, handed out in the given slices (the split a store makes by submission id)."""

    def __init__(self, records: Sequence[ExportRecord], cuts: Sequence[int], processes: int) -> None:
        self.records = list(records)
        bounds = [0, *cuts, len(self.records)]
        self.parts = list(pairwise(bounds))
        self.processes = processes
        self.closed = 0

    def __iter__(self) -> Iterator[ExportRecord]:
        return iter(self.records)

    def split(self) -> list[tuple[int, int]]:
        return self.parts

    def read(self, part: tuple[int, int]) -> Iterator[ExportRecord]:
        assert os.getpid() != PARENT, "parts are read in helper processes"
        return iter(self.records[part[0] : part[1]])

    def close(self) -> None:
        self.closed += 1


PARENT = os.getpid()


def _records() -> list[ExportRecord]:
    out = []
    for i in range(9):
        instance = f"uuid:p{i}"
        values = coop_values(instance)
        if i % 3 == 1:
            values = coop_values(instance, revenue="1 250,5", coop_name="  Coopérative   Atlas ", founded="08/03/2019")
        if i % 4 == 2:
            values = coop_values(instance, coop_name='=HYPERLINK("http://x")', revenue="-2.5")
        out.append(record(instance, values, current=i != 5, deleted=i == 7, edits=i % 2))
    return out


def _zip(records: object, options: ExportOptions) -> tuple[dict[str, bytes], ExportSummary]:
    done: list[ExportSummary] = []
    data = b"".join(iter_csv_zip(SCHEMAS, records, options, on_done=done.append))  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # every member's CRC holds
        return {name: zf.read(name) for name in zf.namelist()}, done[0]


RECORDS = _records()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(RECORDS)), min_size=1, max_size=4).map(sorted),
    processes=st.integers(min_value=1, max_value=3),
    bom=st.booleans(),
)
def test_a_zip_made_in_parts_is_the_zip_made_in_one_process(cuts: list[int], processes: int, bom: bool) -> None:
    options = ExportOptions(bom=bom)
    expected, expected_summary = _zip(iter(RECORDS), options)
    split = ListParts(RECORDS, cuts, processes)
    members, summary = _zip(split, options)
    assert list(members) == list(expected)
    for name, data in expected.items():
        assert members[name] == data, name
    assert summary == expected_summary
    assert split.closed >= 1  # once every helper has its first part, and when the zip ends
    assert _export_helpers() == []


def test_the_records_are_really_read_in_parts() -> None:
    """The comparison above is not one process against itself: the parts are read by helpers."""

    class Watched(ListParts):
        def __iter__(self) -> Iterator[ExportRecord]:
            raise AssertionError("a split of two parts or more must not be read in this process")

    members, _ = _zip(Watched(RECORDS, [3, 6], 2), ExportOptions())
    assert members["coop.csv"].count(b"\r\n") == 1 + sum(1 for r in RECORDS if r.current and not r.deleted)
