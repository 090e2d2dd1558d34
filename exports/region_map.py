"""A choropleth of Morocco's 12 regions as one SVG document: no tile server, no script, any screen.

Douar offices reach no tile server, so the dashboard draws its map itself: region outlines (given by
the caller, from an open dataset) are simplified once, projected (equirectangular, longitudes scaled
by the cosine of the map's mean latitude) and filled by the figure of each region in five classes of
one hue, darker for more. Every region carries a ``<title>`` (its name and figure), the map a text
alternative, and regions without a figure are hatched, not left white, so "no data" never reads as
"zero". Breakdown keys are matched to regions by their official number, their name or their label,
whatever spelling a form used (``marrakech_safi``, ``Marrakech-Safi``, ``7``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

Point = tuple[float, float]
# Five classes of one green (light to dark), readable by colour-blind people and in grey print.
PALETTE = ("#e5f5e0", "#a1d99b", "#74c476", "#31a354", "#006d2c")
NO_DATA = "url(#fs-no-data)"


@dataclass(frozen=True, slots=True)
class RegionShape:
    """One region: its official number (1-12), names, and outline rings as (longitude, latitude)."""

    code: int
    name_fr: str
    name_ar: str
    rings: tuple[tuple[Point, ...], ...]

    def name(self, language: str) -> str:
        """The region's name in ``language`` (Arabic, else French)."""
        return self.name_ar if language == "ar" else self.name_fr


@dataclass(frozen=True, slots=True)
class Frame:
    """The map's projection: equirectangular, longitudes scaled by the cosine of the mean latitude."""

    scale_x: float
    min_x: float
    min_y: float
    unit: float
    width: int
    height: int

    @staticmethod
    def around(shapes: Sequence[RegionShape], width: int) -> Frame | None:
        """The frame that fits every outline into ``width`` pixels (None without outlines)."""
        points = [p for s in shapes for ring in s.rings for p in ring]
        if not points:
            return None
        mean_lat = (min(p[1] for p in points) + max(p[1] for p in points)) / 2
        scale_x = math.cos(math.radians(mean_lat))
        xs = [p[0] * scale_x for p in points]
        ys = [-p[1] for p in points]
        min_x, min_y = min(xs), min(ys)
        unit = width / max(max(xs) - min_x, max(ys) - min_y)
        return Frame(scale_x, min_x, min_y, unit, width, round((max(ys) - min_y) * unit))

    def xy(self, point: Point) -> tuple[float, float]:
        """The pixel position of a (longitude, latitude)."""
        return (point[0] * self.scale_x - self.min_x) * self.unit, (-point[1] - self.min_y) * self.unit

    def text(self, point: Point) -> str:
        """The pixel position as SVG path text."""
        x, y = self.xy(point)
        return f"{x:.1f},{y:.1f}"


def _outline(shape: RegionShape, frame: Frame) -> str:
    return " ".join("M" + " L".join(frame.text(p) for p in ring) + " Z" for ring in shape.rings if len(ring) > 2)


def simplify(ring: Sequence[Point], tolerance: float) -> tuple[Point, ...]:
    """Ramer-Douglas-Peucker: drop points closer than ``tolerance`` to the line of their neighbours."""
    if len(ring) < 4:
        return tuple(ring)
    keep = [False] * len(ring)
    keep[0] = keep[-1] = True
    stack = [(0, len(ring) - 1)]
    while stack:
        first, last = stack.pop()
        (x1, y1), (x2, y2) = ring[first], ring[last]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy)
        farthest, index = 0.0, -1
        for i in range(first + 1, last):
            px, py = ring[i]
            if length == 0:
                distance = math.hypot(px - x1, py - y1)
            else:
                distance = abs(dy * px - dx * py + x2 * y1 - y2 * x1) / length
            if distance > farthest:
                farthest, index = distance, i
        if index >= 0 and farthest > tolerance:
            keep[index] = True
            stack.extend(((first, index), (index, last)))
    return tuple(p for p, kept in zip(ring, keep, strict=True) if kept)


def _folded(text: str) -> str:
    """Letters and digits only, without accents, lower case: 'Béni Mellal-Khénifra' -> 'benimellalkhenifra'."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]", "", plain.lower())


# Spellings in use that the dataset writes otherwise (folded): the official "Dakhla-Oued Ed-Dahab".
ALIASES = {"dakhlaouededdahab": 12, "dakhlaoueddahab": 12, "eddakhlaouededdahab": 12, "loriental": 2}


def match_regions(keys: Mapping[str, str | None], shapes: Sequence[RegionShape]) -> dict[str, int]:
    """Map breakdown keys (with their labels) to region numbers; keys that name no region are left out."""
    by_name = {_folded(s.name_fr): s.code for s in shapes}
    by_name.update({alias: code for alias, code in ALIASES.items() if any(s.code == code for s in shapes)})
    out: dict[str, int] = {}
    for key, label in keys.items():
        if key.strip().isdigit() and 1 <= int(key) <= len(shapes):
            out[key] = int(key)
            continue
        for text in (key, label or ""):
            folded = _folded(text)
            if not folded:
                continue
            code = by_name.get(folded)
            if code is None:
                # A shortened key ('tanger_tetouan', 'oriental'): the one region whose name starts with it.
                found = [c for name, c in by_name.items() if name.startswith(folded) or folded.startswith(name)]
                code = found[0] if len(found) == 1 else None
            if code is not None:
                out[key] = code
                break
    return out


def classes(values: Sequence[float]) -> list[float]:
    """Upper bounds of five equal-width classes over ``values`` (a single value makes one class)."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [high]
    step = (high - low) / len(PALETTE)
    return [low + step * (i + 1) for i in range(len(PALETTE))]


def _fill(value: float | None, bounds: Sequence[float]) -> str:
    if value is None:
        return NO_DATA
    for colour, bound in zip(PALETTE, bounds, strict=False):
        if value <= bound + 1e-12:
            return colour
    return PALETTE[-1]


def render_svg(
    shapes: Sequence[RegionShape],
    values: Mapping[int, float | None],
    *,
    language: str,
    title: str,
    formatted: Callable[[float], str],
    no_data: str,
    width: int = 480,
) -> str:
    """The choropleth as an SVG document: one ``<path>`` per region, a legend, text alternatives."""
    frame = Frame.around(shapes, width)
    if frame is None:
        return ""
    height = frame.height
    legend_height = 28
    known = [v for v in values.values() if v is not None]
    bounds = classes(known)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + legend_height}" role="img" '
        f'aria-labelledby="fs-map-title" class="region-map">',
        f'<title id="fs-map-title">{escape(title)}</title>',
        '<defs><pattern id="fs-no-data" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4f4f4"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" stroke-width="2"/></pattern></defs>',
    ]
    for shape in shapes:
        value = values.get(shape.code)
        path = _outline(shape, frame)
        label = f"{shape.name(language)}: {formatted(value) if value is not None else no_data}"
        parts.append(
            f'<path d="{path}" fill="{_fill(value, bounds)}" stroke="#555" stroke-width="0.6" '
            f"data-region={quoteattr(str(shape.code))}><title>{escape(label)}</title></path>"
        )
    # Legend: the five classes (or one) with their upper bounds, and the hatch for no data.
    x = 4.0
    y = height + 8
    lower = min(known) if known else 0.0
    for colour, bound in zip(PALETTE, bounds, strict=False):
        text = f"{formatted(lower)}–{formatted(bound)}" if len(bounds) > 1 else formatted(bound)
        parts.append(
            f'<rect x="{x:.0f}" y="{y}" width="12" height="12" fill="{colour}" stroke="#555" stroke-width="0.5"/>'
        )
        parts.append(f'<text x="{x + 15:.0f}" y="{y + 10}" font-size="9">{escape(text)}</text>')
        x += 15 + 6.2 * len(text) + 8
        lower = bound
    parts.append(
        f'<rect x="{x:.0f}" y="{y}" width="12" height="12" fill="{NO_DATA}" stroke="#555" stroke-width="0.5"/>'
    )
    parts.append(f'<text x="{x + 15:.0f}" y="{y + 10}" font-size="9">{escape(no_data)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class MapPoint:
    """A point to draw: (longitude, latitude), its text alternative and the page it opens."""

    lon: float
    lat: float
    title: str
    href: str


def parse_geopoint(text: str | None) -> tuple[float, float] | None:
    """(longitude, latitude) of an ODK geopoint ``"lat lon [alt [accuracy]]"``; None if it is not one."""
    parts = (text or "").split()
    if len(parts) < 2:
        return None
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat + lon):
        return None
    return lon, lat


def render_points_svg(
    shapes: Sequence[RegionShape],
    points: Sequence[MapPoint],
    *,
    language: str,
    title: str,
    width: int = 640,
) -> str:
    """Points over the region outlines as one SVG document; each point links to its page.

    Points outside the outlines' frame (a phone's GPS in another country) are still drawn, at the edge,
    so no submission disappears from the map; the caller says how many there are.
    """
    frame = Frame.around(shapes, width)
    if frame is None:
        return ""
    parts = [
        # Not role="img": the points are links a keyboard reaches (an image's children are hidden).
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {frame.height}" '
        f'aria-labelledby="fs-points-title" class="point-map">',
        f'<title id="fs-points-title">{escape(title)}</title>',
    ]
    for shape in shapes:
        parts.append(
            f'<path d="{_outline(shape, frame)}" fill="#f3f5f7" stroke="#555" stroke-width="0.6">'
            f"<title>{escape(shape.name(language))}</title></path>"
        )
    for point in points:
        x, y = frame.xy((point.lon, point.lat))
        x, y = min(max(x, 6.0), width - 6.0), min(max(y, 6.0), frame.height - 6.0)
        parts.append(
            f"<a href={quoteattr(point.href)}><title>{escape(point.title)}</title>"
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="#a3241a" fill-opacity="0.8" '
            'stroke="#fff" stroke-width="1"/></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
