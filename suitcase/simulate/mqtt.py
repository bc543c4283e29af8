"""A minimal MQTT 3.1.1 client on asyncio streams: what a simulated agent needs, and no more.

Thousands of simulated devices share one event loop per process, so each holds one socket, one
reader task and a dict of QoS 1 publishes waiting for their PUBACK: no thread, no paho client.
It speaks CONNECT (credentials, a retained Last Will), PUBLISH at QoS 0/1, PINGREQ and DISCONNECT,
and acknowledges any QoS 1 message it is sent (it subscribes to nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

from kits.errors import SuitcaseError

__all__ = ["MqttClient", "MqttError", "Will"]

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_PINGREQ, _PINGRESP, _DISCONNECT = 0xC0, 0xD0, 0xE0
_REFUSED = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class MqttError(SuitcaseError):
    """The connection was refused or lost."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


class MqttClient:
    """One device's connection. ``connect`` then ``publish``; ``abort`` drops the socket without a
    DISCONNECT (the broker then publishes the Will), ``close`` ends cleanly."""

    def __init__(
        self, host: str, port: int, client_id: str, *, keepalive: int = 60, source: str | None = None
    ) -> None:
        self.host, self.port, self.client_id, self.keepalive = host, port, client_id, keepalive
        # A source address of its own: one address pair has only ~28,000 ephemeral ports.
        self.source = source
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._next_id = 0
        self.lost: asyncio.Event = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self.lost.is_set()

    async def connect(
        self, username: str, password: str, will: Will | None, *, timeout: float = 30.0
    ) -> None:
        """Open the socket and log in.

        Raises:
            MqttError: refused, or no CONNACK within ``timeout``.
        """
        self.lost = asyncio.Event()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, local_addr=(self.source, 0) if self.source else None
                ),
                timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise MqttError(f"cannot reach the broker at {self.host}:{self.port}: {exc}") from exc
        self._reader, self._writer = reader, writer
        flags = 0x02 | 0x80 | 0x40  # clean session, user name, password
        payload = _string(self.client_id)
        if will is not None:
            flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
            payload += _string(will.topic) + struct.pack("!H", len(will.payload)) + will.payload
        payload += _string(username) + _string(password)
        variable = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive)
        body = variable + payload
        writer.write(bytes([_CONNECT]) + _remaining(len(body)) + body)
        try:
            kind, data = await asyncio.wait_for(self._packet(), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.abort()
            raise MqttError(f"no answer to CONNECT from {self.host}:{self.port}: {exc!r}") from exc
        if kind != _CONNACK or len(data) != 2 or data[1] != 0:
            self.abort()
            code = data[1] if len(data) == 2 else -1
            raise MqttError(f"the broker refused {username}: {_REFUSED.get(code, f'code {code}')}")
        self._task = asyncio.create_task(self._read())
        self._pinger = asyncio.create_task(self._ping())

    async def _packet(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = (await self._reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await self._reader.readexactly(1))[0]
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return head, (await self._reader.readexactly(length)) if length else b""

    async def _read(self) -> None:
        try:
            while True:
                head, data = await self._packet()
                kind = head & 0xF0
                if kind == _PUBACK and len(data) >= 2:
                    future = self._waiting.pop(struct.unpack("!H", data[:2])[0], None)
                    if future is not None and not future.done():
                        future.set_result(None)
                elif kind == _PUBLISH and (head >> 1) & 0x03 == 1 and self._writer is not None:
                    topic_len = struct.unpack("!H", data[:2])[0]
                    ident = data[2 + topic_len : 4 + topic_len]
                    self._writer.write(bytes([_PUBACK, 2]) + ident)
        except (OSError, asyncio.IncompleteReadError, struct.error):
            pass
        finally:
            self._lose()

    async def _ping(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while not self.lost.is_set():
                await asyncio.sleep(self.keepalive * 0.75)
                if self._writer is not None:
                    self._writer.write(bytes([_PINGREQ, 0]))

    def _lose(self) -> None:
        self.lost.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(MqttError("the connection was lost"))
        self._waiting.clear()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, timeout: float = 60.0
    ) -> None:
        """Publish; at QoS 1 return once the broker acknowledged it.

        Raises:
            MqttError: the connection is lost or the PUBACK did not come within ``timeout``.
        """
        if self._writer is None or self.lost.is_set():
            raise MqttError("not connected")
        head = _PUBLISH | (qos << 1) | (1 if retain else 0)
        body = _string(topic)
        future: asyncio.Future[None] | None = None
        if qos:
            self._next_id = self._next_id % 65535 + 1
            body += struct.pack("!H", self._next_id)
            future = asyncio.get_running_loop().create_future()
            self._waiting[self._next_id] = future
        body += payload
        self._writer.write(bytes([head]) + _remaining(len(body)) + body)
        if future is not None:
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError as exc:
                raise MqttError(f"no PUBACK within {timeout:.0f} s") from exc

    def abort(self) -> None:
        """Drop the connection without DISCONNECT: the broker publishes the Will."""
        if self._writer is not None:
            transport = self._writer.transport
            transport.abort()
        self._stop_tasks()
        self._lose()

    async def close(self) -> None:
        """DISCONNECT cleanly (no Will) and close the socket."""
        if self._writer is not None and not self.lost.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(bytes([_DISCONNECT, 0]))
                await self._writer.drain()
        if self._writer is not None:
            self._writer.close()
        self._stop_tasks()
        self._lose()

    def _stop_tasks(self) -> None:
        for task in (self._task, self._pinger):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._writer = None
