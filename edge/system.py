"""What the agent asks of the Pi it runs on: clock sync, boot id, CPU temperature, the ACT LED.

Each has a path argument so tests point it at a temporary folder; none fails off a Pi.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from kits.wire import MIN_VALID_TIME

__all__ = ["blink_act_led", "boot_id", "clock_synced", "cpu_temperature"]

log = logging.getLogger(__name__)


def clock_synced(timesync_dir: Path = Path("/run/systemd/timesync")) -> bool:
    """Whether the system clock is synchronised.

    With systemd-timesyncd (Raspberry Pi OS), its ``synchronized`` flag file; otherwise a clock
    after 2020. A Pi without RTC boots with fake-hwclock's last saved time, which is after 2020
    but wrong: that is why the flag is preferred.
    """
    if timesync_dir.is_dir():
        return (timesync_dir / "synchronized").exists()
    return time.time() >= MIN_VALID_TIME


def boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    """This boot's id (monotonic times are comparable only within one boot)."""
    try:
        return path.read_text().strip()
    except OSError:
        return f"process-{time.time_ns()}"


def cpu_temperature(path: Path = Path("/sys/class/thermal/thermal_zone0/temp")) -> float | None:
    """The SoC temperature in Cel, or None where there is no thermal zone."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def blink_act_led(seconds: float, leds: Path = Path("/sys/class/leds")) -> str:
    """Blink the Pi's ACT LED for ``seconds`` so staff can find the device; return what happened.

    Raises:
        OSError: no ACT LED, or no permission to drive it (run the agent as root or in group gpio).
    """
    led = next((leds / name for name in ("ACT", "led0") if (leds / name).is_dir()), None)
    if led is None:
        raise OSError(f"no ACT LED under {leds}: not a Raspberry Pi")
    trigger = led / "trigger"
    current = trigger.read_text()
    before = current[current.index("[") + 1 : current.index("]")] if "[" in current else current.strip()
    trigger.write_text("timer")

    def restore() -> None:
        try:
            trigger.write_text(before)
        except OSError as exc:
            log.warning("could not restore the ACT LED trigger %r: %s", before, exc)

    timer = threading.Timer(seconds, restore)
    timer.daemon = True
    timer.start()
    return f"blinking {led.name} for {seconds:g} s"
