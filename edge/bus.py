"""Open the I2C bus a device config asks for: the Pi's own (Blinka) or an emulated one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from edge.drivers.base import I2CBus
from kits.errors import ConfigError
from kits.models import DeviceSensor

__all__ = ["open_board_bus", "open_bus"]


def open_board_bus() -> I2CBus:
    """Return the Raspberry Pi's I2C bus (SDA on pin 3, SCL on pin 5) through Blinka.

    Raises:
        ConfigError: not on a board with I2C, or I2C is not enabled.
    """
    try:
        import board

        bus: I2CBus = board.I2C()
    except (ImportError, NotImplementedError, RuntimeError, ValueError, AttributeError, OSError) as exc:
        raise ConfigError(
            f"cannot open the board's I2C bus ({type(exc).__name__}: {exc}): run the agent on a "
            "Raspberry Pi with I2C enabled (`sudo raspi-config` > Interface Options > I2C), "
            'or, to try it on a laptop, set `bus = "emulated"` in the agent\'s config file '
            "(edge.toml; `bus: emulated` in a device config YAML)"
        ) from exc
    return bus


def open_bus(
    bus: Literal["board", "emulated"],
    sensors: Sequence[DeviceSensor],
    *,
    scenario: str = "office-day",
    clock: Callable[[], float],
    seed: int = 0,
) -> I2CBus:
    """Open the ``board`` bus, or build an emulated bus with ``sensors`` measuring ``scenario``.

    Raises:
        ConfigError: the bus cannot be opened, or the scenario or a part cannot be emulated.
    """
    if bus == "board":
        return open_board_bus()
    from edge.emulated import build_bus

    return build_bus(list(sensors), scenario, clock=clock, seed=seed)
