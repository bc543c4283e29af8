"""Helpers the driver modules share: error translation, option checks and probes for scans."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from edge.drivers.base import I2CBus
from kits.errors import ConfigError, SensorError

__all__ = [
    "CRC_FIX",
    "WIRING_HINT",
    "bad_data",
    "check_options",
    "crc8",
    "did_not_answer",
    "locked",
    "probe_address",
    "read_register",
    "sensirion_command",
]

WIRING_HINT = "check the wiring on pins 3/5 (SDA/SCL) or run `suitcase edge scan`"

T = TypeVar("T")


def did_not_answer(part: str, address: int, exc: BaseException) -> SensorError:
    """The error of a sensor that does not acknowledge its address."""
    return SensorError(f"sensor {part} at {address:#04x} did not answer ({exc}): {WIRING_HINT}")


def bad_data(part: str, address: int, exc: BaseException, fix: str) -> SensorError:
    """The error of a sensor whose answer is corrupt (CRC, checksum, impossible value)."""
    return SensorError(f"sensor {part} at {address:#04x} returned corrupt data ({exc}): {fix}")


CRC_FIX = (
    "a noisy or long cable corrupts I2C words: use a cable under 50 cm, check the pull-ups; "
    "the reading is retried"
)


def check_options(
    part: str, options: Mapping[str, Any], allowed: Mapping[str, Callable[[Any], T]]
) -> dict[str, T]:
    """Validate a driver's ``options`` against ``allowed`` (name -> converter).

    Raises:
        ConfigError: an unknown option, or a value its converter refuses.
    """
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"sensor {part}: unknown options {unknown}: this part takes {known}")
    out: dict[str, T] = {}
    for key, value in options.items():
        try:
            out[key] = allowed[key](value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"sensor {part}: option {key}={value!r} is invalid ({exc}): correct it"
            ) from exc
    return out


@contextmanager
def locked(i2c: I2CBus) -> Iterator[I2CBus]:
    """Hold the bus for one transaction."""
    while not i2c.try_lock():
        pass
    try:
        yield i2c
    finally:
        i2c.unlock()


def probe_address(i2c: I2CBus, address: int) -> bool:
    """Return whether anything acknowledges ``address`` (an empty write, as adafruit_bus_device)."""
    with locked(i2c):
        try:
            i2c.writeto(address, b"")
        except OSError:
            try:
                i2c.readfrom_into(address, bytearray(1))
            except OSError:
                return False
    return True


def read_register(i2c: I2CBus, address: int, register: bytes, length: int) -> bytes | None:
    """Write ``register`` and read ``length`` bytes with a repeated start; None if no answer."""
    buf = bytearray(length)
    with locked(i2c):
        try:
            i2c.writeto_then_readfrom(address, register, buf)
        except OSError:
            return None
    return bytes(buf)


def crc8(data: bytes) -> int:
    """Sensirion's CRC-8 (polynomial 0x31, init 0xFF) of one 16-bit word."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) if crc & 0x80 else crc << 1
    return crc & 0xFF


def sensirion_command(i2c: I2CBus, address: int, command: int, words: int) -> list[int] | None:
    """Send a 16-bit Sensirion command and read ``words`` CRC-checked words; None if no valid answer."""
    buf = bytearray(words * 3)
    with locked(i2c):
        try:
            i2c.writeto(address, bytes([command >> 8, command & 0xFF]))
            i2c.readfrom_into(address, buf)
        except OSError:
            return None
    out = []
    for i in range(0, len(buf), 3):
        if crc8(bytes(buf[i : i + 2])) != buf[i + 2]:
            return None
        out.append(buf[i] << 8 | buf[i + 1])
    return out
