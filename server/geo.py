"""Location blurring for public pages: a private address is shown as the centre of a ~500 m cell.

Snapping to a fixed grid (rather than adding random noise) gives the same point on every request,
so the true location cannot be recovered by averaging many requests.
"""

from __future__ import annotations

import math

__all__ = ["blur"]

_M_PER_DEG_LAT = 111_320.0


def blur(lat: float, lon: float, cell_m: float = 500.0) -> tuple[float, float]:
    """Return the centre of the ``cell_m`` grid cell holding (``lat``, ``lon``)."""
    if cell_m <= 0:
        return lat, lon
    dlat = cell_m / _M_PER_DEG_LAT
    lat_c = (math.floor(lat / dlat) + 0.5) * dlat
    dlon = cell_m / (_M_PER_DEG_LAT * max(math.cos(math.radians(lat_c)), 0.01))
    lon_c = (math.floor(lon / dlon) + 0.5) * dlon
    return round(max(-90.0, min(90.0, lat_c)), 5), round(((lon_c + 180.0) % 360.0) - 180.0, 5)
