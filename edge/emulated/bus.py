"""An emulated I2C bus: what ``busio.I2C`` offers the Adafruit drivers, backed by chip emulators.

It stands in for Raspberry Pi I2C hardware only (STYLE.md, "Tests"): the real Adafruit drivers
run unchanged on top of it. A transfer to an address with no chip fails like Linux i2c-dev does,
with ``OSError(121, "Remote I/O error")`` (the chip did not acknowledge its address). Chips behind
an emulated TCA9548A multiplexer (:meth:`EmulatedI2C.attach_behind`) answer while their channel is
open, as on a real bus; two chips answering at one address garble the transfer (``EIO``).
"""

from __future__ import annotations

import errno
import os
import threading
from types import TracebackType
from typing import Any

from edge.emulated.chip import Chip
from edge.emulated.tca9548a import Tca9548aEmulator

__all__ = ["Chip", "EmulatedI2C"]


def _nack(address: int) -> OSError:
    return OSError(errno.EREMOTEIO, f"{os.strerror(errno.EREMOTEIO)} (no ACK from {address:#04x})")


class EmulatedI2C:
    """An I2C bus of emulated chips, by 7-bit address.

    Thread-safe: ``try_lock``/``unlock`` guard a transaction as on a real bus, and each
    transfer is atomic.
    """

    def __init__(self, chips: dict[int, Chip] | None = None) -> None:
        self._chips: dict[int, Chip] = dict(chips or {})
        self._bus_lock = threading.Lock()
        self._transfer_lock = threading.RLock()
        self._closed = False
        self._failing: dict[int, int] = {}
        self._corrupting: dict[int, int] = {}
        self._hubs = self._find_hubs()  # the multiplexers on the bus, routed to on every transfer

    # --- wiring and faults, for scenarios and tests

    def fail(self, address: int, transfers: int = 1) -> None:
        """Make the next ``transfers`` transfers to ``address`` fail with EIO (a glitch on the bus)."""
        with self._transfer_lock:
            self._failing[address] = transfers

    def corrupt(self, address: int, reads: int = 1) -> None:
        """Flip the lowest bit of the last byte of the next ``reads`` reads from ``address``.

        On a Sensirion part this breaks the last word's CRC; on a PMSA003I the frame checksum.
        """
        with self._transfer_lock:
            self._corrupting[address] = reads

    def _glitch(self, address: int) -> None:
        left = self._failing.get(address, 0)
        if left > 0:
            self._failing[address] = left - 1
            raise OSError(errno.EIO, f"{os.strerror(errno.EIO)} (emulated glitch at {address:#04x})")

    def _mangle(self, address: int, data: bytes) -> bytes:
        left = self._corrupting.get(address, 0)
        if left <= 0 or not data:
            return data
        self._corrupting[address] = left - 1
        return data[:-1] + bytes([data[-1] ^ 0x01])

    def attach(self, address: int, chip: Chip) -> None:
        """Plug ``chip`` in at ``address``."""
        with self._transfer_lock:
            self._chips[address] = chip
            self._hubs = self._find_hubs()

    def detach(self, address: int) -> Chip | None:
        """Unplug the chip at ``address`` (as a loose cable would) and return it."""
        with self._transfer_lock:
            chip = self._chips.pop(address, None)
            self._hubs = self._find_hubs()
            return chip

    def chip_at(self, address: int) -> Chip | None:
        """The chip plugged in at ``address`` on the bus itself, if any."""
        with self._transfer_lock:
            return self._chips.get(address)

    def attach_behind(self, mux: int, channel: int, address: int, chip: Chip) -> None:
        """Plug ``chip`` in at ``address`` on ``channel`` of the multiplexer at ``mux``.

        Raises:
            ValueError: no emulated multiplexer at ``mux``.
        """
        with self._transfer_lock:
            hub = self._chips.get(mux)
            if not isinstance(hub, Tca9548aEmulator):
                raise ValueError(f"no emulated TCA9548A at {mux:#04x}: attach one there first")
            hub.channels[channel][address] = chip

    def _find_hubs(self) -> list[Tca9548aEmulator]:
        return [c for c in self._chips.values() if isinstance(c, Tca9548aEmulator)]

    # --- busio.I2C

    def try_lock(self) -> bool:
        """Take the bus for a transaction; False if another holder has it."""
        return self._bus_lock.acquire(blocking=False)

    def unlock(self) -> None:
        """Release the bus."""
        self._bus_lock.release()

    def scan(self) -> list[int]:
        """Return the addresses that acknowledge, in ascending order."""
        self._check_open()
        with self._transfer_lock:
            behind = {a for hub in self._hubs for a in hub.open_addresses()}
            return sorted(set(self._chips) | behind)

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        """Write ``buffer[start:end]`` to the chip at ``address``.

        Raises:
            OSError: errno 121 (EREMOTEIO), no chip at ``address``.
        """
        data = bytes(memoryview(buffer)[start:end])
        with self._transfer_lock:
            chip = self._chip(address)
            self._glitch(address)
            chip.write(data)

    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        """Read ``len(buffer[start:end])`` bytes from the chip at ``address`` into that slice.

        Raises:
            OSError: errno 121 (EREMOTEIO), no chip at ``address``.
        """
        view = memoryview(buffer)[start:end]
        with self._transfer_lock:
            chip = self._chip(address)
            self._glitch(address)
            view[:] = self._mangle(address, chip.read(len(view)))

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: Any,
        buffer_in: Any,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
        stop: bool = False,
    ) -> None:
        """Write then read with a repeated start, as one atomic transfer.

        Raises:
            OSError: errno 121 (EREMOTEIO), no chip at ``address``.
        """
        data = bytes(memoryview(buffer_out)[out_start:out_end])
        view = memoryview(buffer_in)[in_start:in_end]
        with self._transfer_lock:
            chip = self._chip(address)
            self._glitch(address)
            chip.write(data)
            view[:] = self._mangle(address, chip.read(len(view)))

    def deinit(self) -> None:
        """Release the bus; further transfers fail."""
        self._closed = True

    def __enter__(self) -> EmulatedI2C:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.deinit()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the emulated I2C bus was deinitialised: create a new one")

    def _chip(self, address: int) -> Chip:
        self._check_open()
        if not self._hubs:  # no multiplexer: one chip or none
            chip = self._chips.get(address)
            if chip is None:
                raise _nack(address)
            return chip
        answering = [self._chips[address]] if address in self._chips else []
        for hub in self._hubs:
            answering += [chip for _, chip in hub.open_chips(address)]
        if not answering:
            raise _nack(address)
        if len(answering) > 1:
            raise OSError(
                errno.EIO,
                f"{os.strerror(errno.EIO)} ({len(answering)} chips answer at {address:#04x} at once)",
            )
        return answering[0]
