"""The shape of a benchmark's outcome: figures with their spread, raw-database reference, ratio and target.

Every figure carries the raw-database reference measured in the same run and the ratio to it, so a
reader can judge the figure on a noisy shared machine. A benchmark whose endpoint has not landed is
kept in the report as ``not available`` with the reason, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bench.stats import Latency, Spread, ratio

Status = Literal["PASS", "FAIL", "INFO", "N/A"]
TargetKind = Literal["at_least", "at_most", "ratio_at_least"]


@dataclass(frozen=True, slots=True)
class Reference:
    """The raw-database figure a server figure is compared with."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Target:
    """An acceptance target: the figure (or its ratio to the reference) must reach ``value``."""

    text: str
    value: float
    kind: TargetKind = "at_least"

    def status(self, measured: float, measured_ratio: float | None) -> Status:
        """Return PASS or FAIL for a measured median (and its ratio to the reference)."""
        if self.kind == "ratio_at_least":
            return "PASS" if measured_ratio is not None and measured_ratio >= self.value else "FAIL"
        if self.kind == "at_most":
            return "PASS" if measured <= self.value else "FAIL"
        return "PASS" if measured >= self.value else "FAIL"


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of a benchmark's table."""

    name: str
    unit: str
    spread: Spread
    latency: Latency | None = None
    reference: Reference | None = None
    target: Target | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Median divided by the raw-database reference (``None`` without one)."""
        return ratio(self.spread.median, self.reference.value) if self.reference else None

    @property
    def status(self) -> Status:
        """PASS/FAIL against the target, INFO when the figure has none."""
        if self.target is None:
            return "INFO"
        return self.target.status(self.spread.median, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the ``results.json`` row)."""
        return {
            "name": self.name,
            "unit": self.unit,
            **self.spread.as_dict(),
            "latency": self.latency.as_dict() if self.latency else None,
            "reference": (
                {"name": self.reference.name, "value": self.reference.value, "unit": self.reference.unit}
                if self.reference
                else None
            ),
            "ratio": self.ratio,
            "target": (
                {"text": self.target.text, "value": self.target.value, "kind": self.target.kind}
                if self.target
                else None
            ),
            "status": self.status,
            "extra": self.extra,
        }


@dataclass
class BenchmarkResult:
    """What one benchmark produced: figures, or why it could not run, plus free-form notes."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    available: bool = True
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # extra series for the cost model

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "title": self.title,
            "available": self.available,
            "reason": self.reason,
            "figures": [f.as_dict() for f in self.figures],
            "notes": self.notes,
            "data": self.data,
        }


def not_available(name: str, title: str, reason: str) -> BenchmarkResult:
    """Return the result of a benchmark that could not run (its endpoint is missing, typically)."""
    return BenchmarkResult(name=name, title=title, available=False, reason=reason)
