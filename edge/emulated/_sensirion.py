"""The command protocol of Sensirion I2C parts, shared by the SHT4x, SCD4x and SGP40 emulators.

A transfer writes a 16-bit command, big-endian, optionally followed by argument words each with
its CRC-8; a later read returns the reply words, each followed by its CRC-8 (polynomial 0x31, init
0xFF). A read with no reply pending is not acknowledged, as on the chips.
"""

from __future__ import annotations

import errno
import os

__all__ = ["SensirionChip", "crc8", "encode_words"]


def crc8(data: bytes) -> int:
    """Sensirion's CRC-8 of ``data`` (polynomial 0x31, init 0xFF, no final XOR)."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) if crc & 0x80 else crc << 1
    return crc & 0xFF


def encode_words(words: list[int]) -> bytes:
    """Encode 16-bit words as the chip sends them: MSB, LSB, CRC for each."""
    out = bytearray()
    for word in words:
        pair = bytes([(word >> 8) & 0xFF, word & 0xFF])
        out += pair + bytes([crc8(pair)])
    return bytes(out)


class SensirionChip:
    """Base of a Sensirion command-set emulator: subclasses implement :meth:`command`."""

    def __init__(self) -> None:
        self._reply = b""
        self.commands: list[int] = []

    def write(self, data: bytes) -> None:
        """Handle a write transfer: a command and its argument words."""
        if not data:
            return  # an address probe
        if len(data) < 2:
            raise OSError(errno.EREMOTEIO, f"{os.strerror(errno.EREMOTEIO)} (incomplete command)")
        code = data[0] << 8 | data[1]
        args: list[int] = []
        for i in range(2, len(data) - 2, 3):
            word = data[i : i + 2]
            if crc8(word) != data[i + 2]:
                # The chip ignores a command whose argument CRC is wrong and NACKs it.
                raise OSError(errno.EREMOTEIO, f"{os.strerror(errno.EREMOTEIO)} (argument CRC mismatch)")
            args.append(word[0] << 8 | word[1])
        self.commands.append(code)
        del self.commands[:-64]
        reply = self.command(code, args)
        self._reply = encode_words(reply) if reply is not None else b""

    def read(self, length: int) -> bytes:
        """Handle a read transfer: the reply of the last command, once."""
        if not self._reply:
            raise OSError(errno.EREMOTEIO, f"{os.strerror(errno.EREMOTEIO)} (no reply pending)")
        out, self._reply = self._reply[:length], b""
        return out.ljust(length, b"\xff")

    def command(self, code: int, args: list[int]) -> list[int] | None:
        """Execute ``code``; return the reply words, or None for a command without reply.

        Raises:
            OSError: the chip does not acknowledge the command (unknown, or not in this state).
        """
        raise NotImplementedError

    @staticmethod
    def nack(why: str) -> OSError:
        """The error of a command the chip does not acknowledge."""
        return OSError(errno.EREMOTEIO, f"{os.strerror(errno.EREMOTEIO)} ({why})")
