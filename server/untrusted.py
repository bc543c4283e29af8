"""Values from devices' messages (status, meta, command replies) made safe to store and to serve.

A device may send any JSON: a string with a NUL (PostgreSQL refuses it) or a lone surrogate (no
database encodes it), ``NaN`` (PostgreSQL's JSON refuses it, and the API could not serve it back),
numbers beyond a float, nesting thousands deep. Whatever of that reaches the registry goes through
here; one bad message is that message's problem, never the listener's.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["load_json", "safe_float", "safe_int", "safe_json", "safe_text"]

_MAX_DEPTH = 6
_MAX_ITEMS = 64
_MAX_TEXT = 2000


def load_json(payload: bytes | str | None) -> Any:
    """Parse ``payload`` as JSON; None when it is empty, not JSON or nested too deeply."""
    if not payload:
        return None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def safe_text(value: object, limit: int = _MAX_TEXT) -> str | None:
    """``value`` as storable text of at most ``limit`` characters, or None if it is no string."""
    if not isinstance(value, str):
        return None
    text = value[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]
    return text.replace("\x00", "")


def safe_float(value: object) -> float | None:
    """``value`` as a finite float, or None (booleans, strings, NaN and out-of-range ints too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def safe_int(value: object, bits: int = 32) -> int | None:
    """``value`` as an integer a signed ``bits``-bit column holds (an INTEGER: 32), or None."""
    number = safe_float(value)
    if number is None or not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
        return None
    return int(number)


def safe_json(value: object, depth: int = 0) -> Any:
    """``value`` with every string storable, every number finite (else None), bounded in size and depth."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, int) and -(2**63) < value < 2**63:
            return value
        return safe_float(value)
    if isinstance(value, str):
        return safe_text(value)
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, list | tuple):
        return [safe_json(v, depth + 1) for v in value[:_MAX_ITEMS]]
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return {safe_text(str(k), 200) or "": safe_json(v, depth + 1) for k, v in items}
    return None
