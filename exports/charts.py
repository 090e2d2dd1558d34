"""The dashboard's small charts as SVG documents and its figures as CSV: no chart library, no script.

A trend is a column per period, in time order from left to right in every language (a time axis
reads the same way in Arabic dashboards as in French ones; the labels stay in their own direction).
Each column carries a ``<title>`` with its period and figure; the chart a text alternative. The
caller gives the formatting, so figures read as the page does (``1 234``, ``48 %``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

BAR = "#31a354"
TARGET = "#a3241a"


def bar_chart_svg(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    formatted: Callable[[float], str],
    target: float | None = None,
    chart_id: str = "chart",
    width: int = 480,
    height: int = 200,
) -> str:
    """Columns for ``(label, value)`` points (None: no figure, drawn as an empty slot), with a target line."""
    if not points:
        return ""
    top = max([v for _, v in points if v is not None] + ([target] if target else []) + [0.0])
    top = top or 1.0
    left, bottom, head = 22, 34, 14
    plot = height - bottom - head
    slot = (width - left * 2) / len(points)
    bar = min(max(2.0, slot * 0.7), 48.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title" class="chart" direction="ltr">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<line x1="{left}" y1="{head + plot}" x2="{width - left}" y2="{head + plot}" stroke="#555" stroke-width="1"/>',
    ]
    longest = max(len(label) for label, _ in points)
    every = max(1, math.ceil((longest * 6 + 6) / slot))  # labels never overlap (about 6 units a character)
    for i, (label, value) in enumerate(points):
        x = left + i * slot + (slot - bar) / 2
        if value is not None:
            h = plot * value / top
            parts.append(
                f'<rect x="{x:.1f}" y="{head + plot - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{BAR}">'
                f"<title>{escape(label)}: {escape(formatted(value))}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{head + plot + 14}" font-size="10" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    if target:
        y = head + plot - plot * target / top
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - left}" y2="{y:.1f}" stroke="{TARGET}" '
            f'stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
        parts.append(
            f'<text x="{width - left}" y="{max(10.0, y - 3):.1f}" font-size="10" text-anchor="end" '
            f'fill="{TARGET}">{escape(formatted(target))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def progress_svg(progress: float | None, *, label: str, width: int = 200, height: int = 10) -> str:
    """A thin bar filled to ``progress`` (capped at the full width; beyond the target it stays full)."""
    share = min(max(progress or 0.0, 0.0), 1.0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="progress" '
        f'aria-label="{escape(label, {chr(34): "&quot;"})}" preserveAspectRatio="none">'
        f'<rect width="{width}" height="{height}" fill="#e3e7eb"/>'
        f'<rect width="{width * share:.1f}" height="{height}" fill="{BAR}"/></svg>'
    )


def figures_csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A chart's figures as CSV text (UTF-8 with a byte order mark, so Excel reads Arabic labels)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
    return out.getvalue()
