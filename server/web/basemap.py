"""Build the offline base map: Natural Earth country outlines, clipped to the Nordic/Baltic region.

The pages' maps draw this GeoJSON under their markers when no tiles can be had (no tiles URL,
the browser offline, tiles failing), so a marker has a coastline and borders around it without
internet. The source is the npm package ``world-atlas`` (Natural Earth 1:10m Admin 0 countries,
public domain, as TopoJSON, ISC); the result is vendored in ``static/vendor/basemap/``.

Rebuild (see that folder's README)::

    cd "$(mktemp -d)" && npm pack world-atlas@2 && tar xzf world-atlas-*.tgz
    python -m server.web.basemap package/countries-10m.json server/web/static/vendor/basemap/nordic.geojson
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kits.errors import ConfigError

__all__ = ["REGION", "build", "clip_ring", "decode_topology"]

# west, south, east, north (degrees): Denmark, Norway, Sweden, Finland, the Baltic states and the
# Baltic Sea's southern coast.
REGION = (3.0, 53.0, 32.5, 71.5)
_DIGITS = 3  # about 100 m: finer than the 1:10m source's own accuracy

Point = tuple[float, float]


def decode_topology(topology: dict[str, Any], name: str = "countries") -> list[dict[str, Any]]:
    """The GeoJSON features of the TopoJSON object ``name`` (quantized arcs decoded).

    Raises:
        ConfigError: not a TopoJSON topology with that object.
    """
    if topology.get("type") != "Topology" or name not in topology.get("objects", {}):
        raise ConfigError(
            f"not a TopoJSON topology with an object {name!r}: use world-atlas's countries-10m.json"
        )
    transform = topology.get("transform")
    arcs: list[list[Point]] = []
    for arc in topology["arcs"]:
        x = y = 0.0
        points: list[Point] = []
        for position in arc:
            if transform:
                x, y = x + position[0], y + position[1]
                (sx, sy), (tx, ty) = transform["scale"], transform["translate"]
                points.append((x * sx + tx, y * sy + ty))
            else:
                points.append((float(position[0]), float(position[1])))
        arcs.append(points)

    def ring(indexes: Sequence[int]) -> list[Point]:
        out: list[Point] = []
        for i in indexes:
            points = arcs[i] if i >= 0 else arcs[~i][::-1]
            out.extend(points if not out else points[1:])
        return out

    features = []
    for geometry in topology["objects"][name]["geometries"]:
        kind = geometry.get("type")
        if kind == "Polygon":
            polygons = [[ring(r) for r in geometry["arcs"]]]
        elif kind == "MultiPolygon":
            polygons = [[ring(r) for r in polygon] for polygon in geometry["arcs"]]
        else:
            continue
        props = geometry.get("properties", {})
        features.append({"name": str(props.get("name", "")), "polygons": polygons})
    return features


def clip_ring(points: Sequence[Point], region: tuple[float, float, float, float]) -> list[Point]:
    """Clip a closed ring to the rectangle ``region`` (Sutherland-Hodgman); [] when nothing is left."""
    west, south, east, north = region
    if not west < east or not south < north:
        raise ValueError(f"region {region} is empty: it must be (west, south, east, north) with west < east")
    # Each edge of the rectangle: is a point inside it, and where does a segment cross it.
    edges: list[tuple[Callable[[Point], bool], Callable[[Point, Point], Point]]] = [
        (lambda p: p[0] >= west, lambda a, b: _at_x(a, b, west)),
        (lambda p: p[0] <= east, lambda a, b: _at_x(a, b, east)),
        (lambda p: p[1] >= south, lambda a, b: _at_y(a, b, south)),
        (lambda p: p[1] <= north, lambda a, b: _at_y(a, b, north)),
    ]
    out = list(points)
    for inside, cross in edges:
        source, out = out, []
        if not source:
            break
        previous = source[-1]
        for point in source:
            if inside(point):
                if not inside(previous):
                    out.append(cross(previous, point))
                out.append(point)
            elif inside(previous):
                out.append(cross(previous, point))
            previous = point
    return out if len(out) >= 3 else []


def _at_x(a: Point, b: Point, x: float) -> Point:
    t = (x - a[0]) / (b[0] - a[0])
    return (x, a[1] + t * (b[1] - a[1]))


def _at_y(a: Point, b: Point, y: float) -> Point:
    t = (y - a[1]) / (b[1] - a[1])
    return (a[0] + t * (b[0] - a[0]), y)


def _rounded(points: Sequence[Point]) -> list[list[float]]:
    out: list[list[float]] = []
    for x, y in points:
        p = [round(x, _DIGITS), round(y, _DIGITS)]
        if not out or p != out[-1]:
            out.append(p)
    if out and out[0] != out[-1]:
        out.append(out[0])  # GeoJSON rings are closed
    return out


def build(topology: dict[str, Any], region: tuple[float, float, float, float] = REGION) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the countries of ``topology`` clipped to ``region``."""
    features = []
    for country in decode_topology(topology):
        polygons = []
        for polygon in country["polygons"]:
            rings = [_rounded(clip_ring(r, region)) for r in polygon]
            if rings and len(rings[0]) >= 4:
                polygons.append([r for r in rings if len(r) >= 4])
        if polygons:
            features.append(
                {
                    "type": "Feature",
                    "properties": {"name": country["name"]},
                    "geometry": {"type": "MultiPolygon", "coordinates": polygons},
                }
            )
    return {
        "type": "FeatureCollection",
        "bbox": list(region),
        "attribution": "Natural Earth (public domain), via world-atlas",
        "features": sorted(features, key=lambda f: f["properties"]["name"]),
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m server.web.basemap COUNTRIES_TOPOJSON OUT_GEOJSON", file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    result = build(json.loads(source.read_text()))
    target.write_text(json.dumps(result, separators=(",", ":")) + "\n")
    print(f"{target}: {len(result['features'])} countries, {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
