"""Times at the API boundary: parse ISO 8601 or epoch seconds, format as ISO 8601 UTC."""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["iso", "parse_time"]


def iso(epoch: float) -> str:
    """Format UTC epoch seconds as ISO 8601 with a ``Z``, to the millisecond."""
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Parse ``text`` as UTC epoch seconds (``1718000000.5``) or ISO 8601 (``2024-06-10T06:13:20Z``).

    An ISO time without a UTC offset is taken as UTC.

    Raises:
        ValueError: ``text`` is neither; the message shows both accepted forms.
    """
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{text!r} is not a time: epoch seconds must be a finite number >= 0")
        return value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (e.g. 2024-06-10T06:13:20Z) "
            "or UTC epoch seconds (e.g. 1718000000)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
