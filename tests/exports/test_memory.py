"""Streaming: memory does not grow with the number of submissions (nothing is timed).

Rule checked:
- M1 the peak traced memory of ``write_csv_zip`` over 20,000 generated submissions is less than 1.5×
  the peak over 2,000 (a writer that kept rows would need ~10×). Output goes to a non-seekable sink
  that keeps only a byte count, so the test measures the exporter, not the output buffer.
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator

from exports.csv_zip import write_csv_zip
from exports.options import ExportOptions
from exports.records import ExportRecord
from tests.exports.coop_fixture import SCHEMAS, coop_values, record


class _CountingSink(io.RawIOBase):
    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.size += len(data)
        return len(data)


def _generated(n: int) -> Iterator[ExportRecord]:
    for i in range(n):
        instance = f"uuid:{i:08d}"
        yield record(instance, coop_values(instance, revenue=f"{i},5", coop_name=f" Coop {i} "))


def _peak(n: int) -> tuple[int, int]:
    sink = _CountingSink()
    tracemalloc.start()
    try:
        summary = write_csv_zip(SCHEMAS, _generated(n), ExportOptions(split_select_multiple=True), sink)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.records_exported == n
    assert summary.changes[("coop.csv", "revenue", "number")] == n
    return peak, sink.size


def test_peak_memory_does_not_grow_with_submissions() -> None:
    small_peak, small_size = _peak(2_000)
    big_peak, big_size = _peak(20_000)
    assert big_size > 5 * small_size  # the big export really wrote ~10× more
    assert big_peak < 1.5 * small_peak, (small_peak, big_peak)
