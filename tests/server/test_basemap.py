"""Tests of server/web/basemap.py and the vendored offline base map it built."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from kits.errors import ConfigError
from server.web import STATIC_DIR
from server.web.basemap import REGION, build, clip_ring, decode_topology

VENDORED = Path(STATIC_DIR) / "vendor" / "basemap" / "nordic.geojson"


def _inside(point: tuple[float, float], ring: list[list[float]]) -> bool:
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _country_at(data: dict[str, Any], point: tuple[float, float]) -> str | None:
    for feature in data["features"]:
        for polygon in feature["geometry"]["coordinates"]:
            if _inside(point, polygon[0]) and not any(_inside(point, hole) for hole in polygon[1:]):
                return str(feature["properties"]["name"])
    return None


def test_the_vendored_map_has_the_region_small_and_credited() -> None:
    """Test that the vendored outlines hold the Nordic and Baltic countries, stay inside the region,
    are small enough to serve, name their source, and put Aarhus in Denmark and Tallinn in Estonia
    (and the Kattegat in no country: the sea)."""
    data = json.loads(VENDORED.read_text())
    names = {f["properties"]["name"] for f in data["features"]}
    assert {"Denmark", "Norway", "Sweden", "Finland", "Estonia", "Latvia", "Lithuania"} <= names
    assert VENDORED.stat().st_size < 600_000
    assert "Natural Earth" in data["attribution"]
    west, south, east, north = REGION
    for feature in data["features"]:
        for polygon in feature["geometry"]["coordinates"]:
            for ring in polygon:
                assert ring[0] == ring[-1] and len(ring) >= 4
                assert all(west <= x <= east and south <= y <= north for x, y in ring)
    assert _country_at(data, (10.2107, 56.1572)) == "Denmark"  # the demo's Open Lab, Aarhus
    assert _country_at(data, (24.7536, 59.4370)) == "Estonia"
    assert _country_at(data, (11.5, 57.0)) is None  # the Kattegat


def test_clip_ring_cuts_at_the_region_edge() -> None:
    """Test that a square half outside the region is cut at its edge, one wholly outside vanishes,
    and an empty region is refused with the order it expects."""
    square = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)]
    clipped = clip_ring(square, (2.0, -10.0, 10.0, 10.0))
    assert sorted(clipped) == sorted([(2.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 4.0)])
    assert clip_ring(square, (5.0, 5.0, 6.0, 6.0)) == []
    with pytest.raises(ValueError, match=r"west < east"):
        clip_ring(square, (6.0, 0.0, 5.0, 1.0))


def test_a_quantized_topology_decodes_with_reversed_arcs() -> None:
    """Test that delta-encoded, quantized arcs decode to degrees, a negative index reverses its arc,
    and build() closes the ring."""
    topology = {
        "type": "Topology",
        "transform": {"scale": [0.5, 0.5], "translate": [10.0, 55.0]},
        "arcs": [[[0, 0], [4, 0], [0, 4]], [[0, 0], [0, 4], [4, 0]]],  # (10,55)->(12,55)->(12,57); reversed
        "objects": {
            "countries": {
                "type": "GeometryCollection",
                "geometries": [{"type": "Polygon", "arcs": [[0, ~1]], "properties": {"name": "Square"}}],
            }
        },
    }
    [country] = decode_topology(topology)
    assert country["polygons"][0][0] == [(10.0, 55.0), (12.0, 55.0), (12.0, 57.0), (10.0, 57.0), (10.0, 55.0)]
    [feature] = build(topology)["features"]
    ring = feature["geometry"]["coordinates"][0][0]
    assert ring[0] == ring[-1] == [10.0, 55.0]


def test_not_a_topology_is_refused_with_what_to_use() -> None:
    """Test that a GeoJSON file (or anything but a TopoJSON topology) is refused naming the file to use."""
    with pytest.raises(ConfigError, match=r"countries-10m\.json"):
        decode_topology({"type": "FeatureCollection", "features": []})
