"""The device's health beyond its sensors, for ``meta``: disk space, outbox size, storage writes
per hour, Wi-Fi signal (:class:`kits.wire.Diagnostics`).

Every source is a path argument, so tests point them at files they write; off a Pi (no
``/proc/net/wireless``, no ``/proc/self/io``) the figure is None, never an error.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from kits.wire import Diagnostics

__all__ = ["DiagnosticsProbe", "read_card_written", "read_wifi", "read_write_bytes"]

_WINDOW_S = 3600.0
_MIN_SPAN_S = 60.0  # a rate over less than a minute says little


def read_wifi(path: Path = Path("/proc/net/wireless")) -> tuple[str, float, float] | None:
    """The first wireless interface's name, link quality and signal level (dBm), or None."""
    try:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()[2:]
    except OSError:
        return None
    for line in lines:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) < 3:
            continue
        try:
            quality, level = float(fields[1].rstrip(".")), float(fields[2].rstrip("."))
        except ValueError:
            continue
        if level > 0:  # some drivers report an unsigned byte: 256 - |dBm|
            level -= 256
        return name.strip(), quality, level
    return None


def read_write_bytes(path: Path = Path("/proc/self/io")) -> int | None:
    """Bytes this process has caused to be written to storage (``write_bytes``), or None."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "write_bytes":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def read_card_written(path: Path = Path("/sys/block/mmcblk0/stat")) -> int | None:
    """Bytes written to the SD card since boot (its sectors written x 512), or None off a Pi."""
    try:
        fields = path.read_text(encoding="ascii").split()
        return int(fields[6]) * 512
    except (OSError, ValueError, IndexError):
        return None


class DiagnosticsProbe:
    """Measures the figures each time ``meta`` is built; the write rate over the last hour.

    Args:
        state_dir: where the outbox lives (its disk is the one measured); None (outbox in
            memory): the root file system is measured.
        outbox_file: the outbox's SQLite file (its -wal and -shm are counted with it).
        io: the process's I/O counters, used where there is no SD card (``card``: its block
            device's counters, every process's writes); wireless: the kernel's wireless table.
        monotonic: a clock that never jumps (injected by tests).
    """

    def __init__(
        self,
        state_dir: Path | None,
        outbox_file: Path | None,
        *,
        io: Path = Path("/proc/self/io"),
        card: Path = Path("/sys/block/mmcblk0/stat"),
        wireless: Path = Path("/proc/net/wireless"),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = state_dir
        self.outbox_file = outbox_file
        self.io = io
        self.card = card
        self.wireless = wireless
        self._monotonic = monotonic
        self._writes: deque[tuple[float, int]] = deque(maxlen=4096)

    def _outbox_bytes(self) -> int | None:
        if self.outbox_file is None:
            return None
        total = 0
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                total += Path(f"{self.outbox_file}{suffix}").stat().st_size
            except OSError:
                continue
        return total

    def _writes_per_h(self) -> tuple[float | None, str | None]:
        written, source = read_card_written(self.card), "sd_card"
        if written is None:
            written, source = read_write_bytes(self.io), "agent"
        if written is None:
            return None, None
        now = self._monotonic()
        self._writes.append((now, written))
        while len(self._writes) > 2 and now - self._writes[1][0] >= _WINDOW_S:
            self._writes.popleft()
        first_t, first = self._writes[0]
        span = now - first_t
        return (round((written - first) * 3600.0 / span, 1) if span >= _MIN_SPAN_S else None), source

    def snapshot(self) -> Diagnostics:
        """The figures now."""
        free = total = None
        try:
            usage = shutil.disk_usage(self.state_dir if self.state_dir is not None else Path("/"))
            free, total = usage.free, usage.total
        except OSError:
            pass
        wifi = read_wifi(self.wireless)
        writes, source = self._writes_per_h()
        return Diagnostics(
            disk_free_bytes=free,
            disk_total_bytes=total,
            outbox_bytes=self._outbox_bytes(),
            writes_per_h=writes,
            writes_source=source,
            wifi_interface=wifi[0] if wifi else None,
            wifi_quality=wifi[1] if wifi else None,
            wifi_dbm=wifi[2] if wifi else None,
        )
