"""Summaries of repeated measurements: median and spread over rounds, latency percentiles, ratios.

Pure functions over lists of floats, so the report's arithmetic is tested without timing anything.
Percentiles use linear interpolation between closest ranks (numpy's default, "type 7").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` (0..1) percentile of ``values`` by linear interpolation."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(ordered[lower])
    weight = position - lower
    return float(ordered[lower] * (1.0 - weight) + ordered[upper] * weight)


def median(values: Sequence[float]) -> float:
    """Return the median of ``values``."""
    return percentile(values, 0.5)


@dataclass(frozen=True, slots=True)
class Spread:
    """Median of a figure over rounds, with min, max and interquartile range."""

    median: float
    minimum: float
    maximum: float
    q1: float
    q3: float
    rounds: int

    @property
    def relative_spread(self) -> float:
        """Return (max - min) / median: how much the rounds disagree."""
        return (self.maximum - self.minimum) / self.median if self.median else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def spread(values: Sequence[float]) -> Spread:
    """Summarise one figure measured over several rounds."""
    return Spread(
        median=median(values),
        minimum=float(min(values)),
        maximum=float(max(values)),
        q1=percentile(values, 0.25),
        q3=percentile(values, 0.75),
        rounds=len(values),
    )


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles in milliseconds over every request of every measured round."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def latency(seconds: Sequence[float]) -> Latency:
    """Summarise request latencies given in seconds."""
    return Latency(
        count=len(seconds),
        p50_ms=percentile(seconds, 0.50) * 1000.0,
        p95_ms=percentile(seconds, 0.95) * 1000.0,
        p99_ms=percentile(seconds, 0.99) * 1000.0,
        max_ms=float(max(seconds)) * 1000.0,
    )


def rate(count: int, seconds: float) -> float:
    """Return ``count / seconds``, or 0 when nothing was timed."""
    return count / seconds if seconds > 0 else 0.0


def ratio(value: float, reference: float) -> float | None:
    """Return ``value / reference``, or ``None`` when the reference is missing or zero."""
    if reference <= 0:
        return None
    return value / reference


def growth_exponent(sizes: Sequence[float], costs: Sequence[float]) -> float | None:
    """Fit cost ~ size**k by least squares on logs and return k (1.0 = linear), ``None`` if undefined.

    Used by the cost model: k near 1 means time grows linearly with the size, near 0 means flat.
    """
    points = [(math.log(s), math.log(c)) for s, c in zip(sizes, costs, strict=True) if s > 0 and c > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    denominator = sum((x - mean_x) ** 2 for x, _ in points)
    if denominator == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / denominator
