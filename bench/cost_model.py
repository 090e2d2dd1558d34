"""The cost model section of docs/benchmarks.md (filled from the measured figures)."""

from __future__ import annotations

from typing import Any


def render_cost_model(results: dict[str, Any]) -> str:
    """Return the cost model section."""
    return "## Cost model\n\nNot computed yet.\n"
