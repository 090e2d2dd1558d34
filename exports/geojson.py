"""The GeoJSON export: one Point Feature per exported submission that has a valid geopoint, streamed.

The point is ``options.geojson_field`` or the first geopoint outside repeats. Coordinates are
``[longitude, latitude]`` (RFC 7946 order) or ``[longitude, latitude, altitude]`` when the altitude
is not 0 (Collect sends 0 when it does not know it). ``properties`` are the root table's columns, as in
the CSV; the Feature ``id`` is the ``KEY``. Submissions without a usable point are left out of this
file only and counted as ``excluded:no_geopoint``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO

from exports.cleaning import CleaningReport
from exports.options import ExportOptionError, ExportOptions
from exports.records import ExportRecord
from exports.rows import ExportSummary, export_rows, summarise
from exports.tables import ExportPlan, plan_tables
from forms.schema import FormSchema

_HEAD = b'{"type":"FeatureCollection","features":['
_TAIL = b"]}\n"


def _point(plan: ExportPlan, cells: list[str]) -> list[float] | None:
    table = plan.tables[0]
    parts: list[str] = []
    for col, cell in zip(table.columns, cells, strict=True):
        if col.path != plan.geopoint_path:
            continue
        if col.kind == "geo_part":
            parts.append(cell)
        elif col.kind == "value":
            parts = cell.split()
    try:
        numbers = [float(p) for p in parts if p != ""]
    except ValueError:
        return None
    if len(numbers) < 2:
        return None
    point = [numbers[1], numbers[0]]
    if len(numbers) > 2 and numbers[2] != 0:
        point.append(numbers[2])
    return point


def iter_geojson(
    schemas: Sequence[FormSchema],
    records: Iterable[ExportRecord],
    options: ExportOptions,
    on_done: Callable[[ExportSummary], None] | None = None,
) -> Iterator[bytes]:
    """Return an iterator of the FeatureCollection's UTF-8 bytes; bad options raise now, records lazily."""
    plan = plan_tables(schemas, options)
    if plan.geopoint_path is None:
        raise ExportOptionError("geojson_field", "the form has no geopoint question outside repeats")

    def chunks() -> Iterator[bytes]:
        report = CleaningReport()
        counts: Counter[int] = Counter()
        headers = plan.tables[0].headers
        yield _HEAD
        first = True
        for index, cells in export_rows(plan, options, records, report):
            if index != 0:
                continue
            point = _point(plan, cells)
            if point is None:
                report.exclude("no_geopoint")
                continue
            props = dict(zip(headers, cells, strict=True))
            feature = {
                "type": "Feature",
                "id": props["KEY"],
                "geometry": {"type": "Point", "coordinates": point},
                "properties": props,
            }
            yield (b"" if first else b",") + b"\n" + json.dumps(feature, ensure_ascii=False).encode("utf-8")
            first = False
            counts[0] += 1
        yield _TAIL
        if on_done is not None:
            on_done(summarise(plan, counts, report))

    return chunks()


def write_geojson(
    schemas: Sequence[FormSchema], records: Iterable[ExportRecord], options: ExportOptions, out: BinaryIO
) -> ExportSummary:
    """Write the GeoJSON FeatureCollection of ``records`` to ``out`` and return the summary."""
    done: list[ExportSummary] = []
    for chunk in iter_geojson(schemas, records, options, on_done=done.append):
        out.write(chunk)
    return done[0]
