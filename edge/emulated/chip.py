"""What a chip emulator is to the emulated bus (one module, so the bus and the multiplexer share it)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Chip"]


class Chip(Protocol):
    """A register-level chip emulator on the bus.

    ``write`` receives the bytes of one write transfer (register pointer first); ``read`` returns
    ``length`` bytes of one read transfer.
    """

    def write(self, data: bytes) -> None: ...
    def read(self, length: int) -> bytes: ...
