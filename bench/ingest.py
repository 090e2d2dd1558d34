"""Benchmark placeholder for ingest (its endpoint has not landed yet)."""

from __future__ import annotations

from bench.harness import Context, EndpointMissing
from bench.results import BenchmarkResult

NAME = "ingest"
TITLE = "ingest"


def run(context: Context) -> BenchmarkResult:
    """Report the benchmark as not available until its endpoint lands."""
    raise EndpointMissing("not measured yet")
