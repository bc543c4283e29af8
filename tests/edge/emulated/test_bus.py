"""Tests of edge/emulated/bus.py: the busio.I2C semantics the Adafruit drivers rely on."""

from __future__ import annotations

import errno

import pytest
from adafruit_bus_device.i2c_device import I2CDevice  # type: ignore[import-untyped]

from edge.emulated.bus import EmulatedI2C


class Echo:
    """A chip that remembers the last write and reads back a counter."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.counter = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def read(self, length: int) -> bytes:
        out = bytes((self.counter + i) & 0xFF for i in range(length))
        self.counter += length
        return out


def test_a_missing_address_fails_like_linux() -> None:
    """Test that every transfer to an empty address raises OSError errno 121 (Remote I/O error)."""
    bus = EmulatedI2C()
    with pytest.raises(OSError) as caught:
        bus.writeto(0x40, b"\x00")
    assert caught.value.errno == errno.EREMOTEIO == 121
    with pytest.raises(OSError):
        bus.readfrom_into(0x40, bytearray(2))
    with pytest.raises(OSError):
        bus.writeto_then_readfrom(0x40, b"\x00", bytearray(1))


def test_scan_lists_attached_addresses_in_order() -> None:
    """Test that scan reports what is plugged in, and a detached chip disappears."""
    bus = EmulatedI2C({0x77: Echo(), 0x29: Echo()})
    bus.attach(0x44, Echo())
    assert bus.scan() == [0x29, 0x44, 0x77]
    bus.detach(0x44)
    assert bus.scan() == [0x29, 0x77]


def test_start_and_end_slice_the_buffers() -> None:
    """Test busio's start/end keyword semantics on writes and reads."""
    chip = Echo()
    bus = EmulatedI2C({0x10: chip})
    bus.writeto(0x10, b"abcdef", start=1, end=4)
    assert chip.written[-1] == b"bcd"
    buf = bytearray(b"......")
    bus.readfrom_into(0x10, buf, start=2, end=5)
    assert buf == bytearray(b"..\x00\x01\x02.")
    out = bytearray(4)
    bus.writeto_then_readfrom(0x10, b"xyz", out, out_start=2, in_start=1, in_end=3)
    assert chip.written[-1] == b"z"
    assert out == bytearray([0, 3, 4, 0])


def test_adafruit_bus_device_probes_and_locks_through_the_bus() -> None:
    """Test that I2CDevice's probe (an empty write) finds a chip and refuses an empty address."""
    bus = EmulatedI2C({0x77: Echo()})
    device = I2CDevice(bus, 0x77)
    with device:
        assert not bus.try_lock()  # held by the device for the transaction
    assert bus.try_lock()
    bus.unlock()
    with pytest.raises(ValueError, match="No I2C device at address: 0x76"):
        I2CDevice(bus, 0x76)


def test_deinit_closes_the_bus() -> None:
    """Test that the context manager deinitialises the bus and later transfers fail."""
    with EmulatedI2C({0x10: Echo()}) as bus:
        assert bus.scan() == [0x10]
    with pytest.raises(ValueError, match="deinitialised"):
        bus.scan()
