"""A line chart as a small standalone SVG (no plotting library in the install): growth curves of
the fleet benchmarks, log-scaled fleet size on x."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

__all__ = ["line_chart"]

_COLOURS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400")


def line_chart(
    path: Path,
    title: str,
    x_label: str,
    y_label: str,
    series: dict[str, list[tuple[float, float]]],
    *,
    log_x: bool = True,
    width: int = 640,
    height: int = 400,
) -> Path:
    """Write ``series`` (name -> [(x, y)]) as an SVG line chart at ``path``; return the path."""
    left, right, top, bottom = 70, 170, 40, 50
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    xs = [math.log10(x) if log_x else x for x, _ in points] or [0.0, 1.0]
    ys = [y for _, y in points] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys) * 1.1 or 1.0
    if x1 == x0:
        x1 = x0 + 1

    def sx(x: float) -> float:
        value = math.log10(x) if log_x else x
        return left + (value - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="16" y="{(top + height - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {(top + height - bottom) / 2})">{escape(y_label)}</text>',
    ]
    for x in sorted({x for x, _ in points}):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:,.0f}</text>'
            f'<line x1="{sx(x):.1f}" y1="{height - bottom}" x2="{sx(x):.1f}" '
            f'y2="{height - bottom + 4}" stroke="#333"/>'
        )
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        parts.append(
            f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:,.3g}</text>'
            f'<line x1="{left}" y1="{sy(y):.1f}" x2="{width - right}" y2="{sy(y):.1f}" stroke="#ddd"/>'
        )
    for index, (name, values) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        good = [(x, y) for x, y in values if math.isfinite(y)]
        if good:
            line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
            parts.extend(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}"/>' for x, y in good
            )
        ly = top + 10 + index * 18
        parts.append(
            f'<rect x="{width - right + 12}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{width - right + 30}" y="{ly + 1}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")
    return path
