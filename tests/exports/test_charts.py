"""The dashboard's charts and CSV, pure.

Rules:
- C1 one column per period with a figure, an empty slot for none, each with a title naming its figure;
- C2 a target draws a line at its height (columns are scaled so the target fits);
- C3 the CSV starts with a byte order mark (Excel reads Arabic labels) and writes no figure as an empty cell.
"""

from __future__ import annotations

import csv
import io
import re

from exports.charts import bar_chart_svg, figures_csv, progress_svg


def test_c1_a_column_per_figure_with_its_title() -> None:
    svg = bar_chart_svg([("2026-01", 2.0), ("2026-02", None), ("2026-03", 4.0)], title="T", formatted=str)
    assert svg.count("<rect ") == 2
    assert "<title>2026-03: 4.0</title>" in svg and "2026-02" in svg
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert heights[1] == 2 * heights[0]


def test_c2_the_target_line_fits() -> None:
    svg = bar_chart_svg([("2026-Q1", 1.0)], title="T", formatted=str, target=2.0, height=200)
    (y,) = re.findall(r'<line x1="[0-9.]+" y1="([0-9.]+)" x2="[0-9.]+" y2="[0-9.]+" stroke="#a3241a"', svg)
    (h,) = re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)
    assert float(y) >= 14 and float(h) * 2 == 200 - 34 - 14  # the column is half the target's height
    assert bar_chart_svg([], title="T", formatted=str) == ""


def test_c3_csv_with_bom_and_empty_cells() -> None:
    text = figures_csv(("key", "label", "value"), [("07", "مراكش - آسفي", 0.5), (None, None, None)])
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows == [["key", "label", "value"], ["07", "مراكش - آسفي", "0.5"], ["", "", ""]]
    assert 'width="100.0"' in progress_svg(0.5, label="50 %") and 'width="200.0"' in progress_svg(1.7, label="x")
