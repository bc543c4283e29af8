"""Logging helpers of the agent: the device's context on every line, and rate-limited lines."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["AgentLog", "LogTail", "RateLimit", "device_log"]

AgentLog = logging.LoggerAdapter[logging.Logger]


class _ContextAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefix every message with ``org/device`` and pass both as ``extra`` for structured logs."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('org')}/{extra.get('device')}] {msg}", kwargs


def device_log(logger: logging.Logger, org: str, device: str) -> AgentLog:
    """``logger`` with the device's org and name on every line."""
    return _ContextAdapter(logger, {"org": org, "device": device})


class RateLimit:
    """At most ``burst`` lines per ``window_s`` seconds; the next line says how many were held back.

    A flood of bad messages (a misbehaving server, a fuzzing peer) must not flood the SD card's log.

    Args:
        burst: lines let through per window.
        window_s: the window.
        clock: a monotonic clock (injected by tests).
    """

    def __init__(
        self, burst: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._in_window = 0
        self.suppressed = 0

    def allow(self) -> int | None:
        """None to hold this line back; else how many were held back since the last line let through."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self.window_s:
                self._window_start, self._in_window = now, 0
            if self._in_window >= self.burst:
                self.suppressed += 1
                return None
            self._in_window += 1
            held, self.suppressed = self.suppressed, 0
            return held

    def log(self, logger: logging.Logger | AgentLog, level: int, msg: str, *args: object) -> bool:
        """Log ``msg`` unless over the rate; return whether it was logged."""
        held = self.allow()
        if held is None:
            return False
        if held:
            msg += f" ({held} similar lines held back in the last {self.window_s:g} s)"
        logger.log(level, msg, *args)
        return True


class LogTail(logging.Handler):
    """The agent's last log lines, kept in memory for the ``logs`` command.

    Attached to the ``edge`` logger while the agent runs; keeps the lines of its own device (and
    those of the edge modules that log without one), each cut to ``width`` characters. It sees
    what the agent's log level lets through, as the log file would.
    """

    def __init__(self, device: str, lines: int = 500, width: int = 400) -> None:
        super().__init__()
        self.device = device
        self.width = width
        self._lines: deque[str] = deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "device", self.device) != self.device:
            return
        try:
            line = self.format(record)
        except Exception:  # a bad format argument must not lose the line, nor raise into the caller
            line = f"{record.levelname} {record.name}: {record.msg!r:.200}"
        self._lines.append(line if len(line) <= self.width else f"{line[: self.width - 3]}...")

    def last(self, count: int) -> list[str]:
        """The last ``count`` lines, oldest first."""
        lines = list(self._lines)
        return lines[-count:] if count > 0 else []
