"""A lean MQTT 3.1.1 / 5 subscriber: the gateway's one persistent QoS 1 session, acked by hand.

Why not paho: paho reads each packet with three or more ``recv()`` calls, builds an object per
message and sends each PUBACK with its own ``send()``. Draining a backlog, that per-message work,
not the broker, was the gateway's ceiling (``benchmarks/bench_gateway.py``). This client reads
the socket in large chunks, parses every PUBLISH of a chunk in one pass and sends a batch's
PUBACKs in one ``sendall``.

It does only what the gateway needs (docs/architecture.md, "Delivery guarantees" 2 and 3):

- a persistent session: a fixed client id, clean session / clean start off, with MQTT 5 a session
  that never expires and the Receive Maximum the gateway declares;
- one QoS 1 subscription, renewed on every connection;
- no automatic acknowledgement: :meth:`MqttSession.ack` sends PUBACKs once the caller has
  written the messages. A message can only be acked on the connection it arrived on: each
  connection has a *generation*, and acks of an older one are dropped (the broker redelivers
  those messages on the new connection; the idempotent sinks absorb the duplicate);
- keep-alive pings, and reconnection with bounded exponential backoff after any loss;
- TLS when given a context (:func:`kits.tls.client_context`: the broker's certificate and host
  name are checked). A TLS connection is used by one thread at a time (OpenSSL's objects are not
  thread-safe): it is non-blocking, and every read and write holds the send lock.

It never publishes, and never receives QoS 2 (the subscription's QoS 1 caps what the broker sends).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Delivery", "MqttError", "MqttSession", "MqttTlsError", "Will"]

log = logging.getLogger(__name__)

# One message: topic, payload, packet id (0 for QoS 0), QoS.
Delivery = tuple[str, bytes, int, int]

_READ_SIZE = 256 * 1024
_TICK_S = 0.25  # how often the network thread looks at keep-alive and stop while idle
_SESSION_NEVER_EXPIRES = 0xFFFFFFFF

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 1, 2, 3, 4
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK = 8, 9, 10, 11
_PINGREQ, _PINGRESP, _DISCONNECT = 12, 13, 14

_PINGREQ_PACKET = b"\xc0\x00"
_DISCONNECT_PACKET = b"\xe0\x00"
_SUBSCRIBE_MID = 1

# MQTT 5 property identifiers by the size of their value (OASIS MQTT 5.0, 2.2.2.2).
_PROP_BYTE = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_PROP_TWO = frozenset({0x13, 0x21, 0x22, 0x23})
_PROP_FOUR = frozenset({0x02, 0x11, 0x18, 0x27})
_PROP_VARINT = frozenset({0x0B})
_PROP_STRING = frozenset({0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F})
_PROP_PAIR = frozenset({0x26})
_SERVER_KEEP_ALIVE = 0x13

MqttVersion = Literal["3.1.1", "5"]


@dataclass(frozen=True, slots=True)
class Will:
    """A Last Will the broker publishes (QoS 1) when the connection ends without DISCONNECT.

    Attributes:
        topic: where.
        payload: what.
        retain: published retained.
        delay_s: MQTT 5 only: wait this long, and publish nothing if the session is resumed meanwhile.
    """

    topic: str
    payload: bytes
    retain: bool = True
    delay_s: int = 0


class MqttError(Exception):
    """The broker broke the protocol, or refused the connection or the subscription."""


class MqttTlsError(MqttError, OSError):
    """The broker's certificate was not accepted (wrong CA, wrong host name, expired), or TLS failed."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """Return (value, position after it), or None if ``data`` ends inside it."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MqttError("malformed variable byte integer (more than 4 bytes)")


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    version: MqttVersion,
    keepalive: int,
    username: str | None = None,
    password: str | None = None,
    receive_maximum: int | None = None,
    will: Will | None = None,
) -> bytes:
    """Return a CONNECT that resumes the persistent session of ``client_id``."""
    flags = 0  # clean session / clean start off
    if will is not None:
        flags |= 0x04 | 0x08 | (0x20 if will.retain else 0)  # a will, at QoS 1
    if username is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    level = 5 if version == "5" else 4
    body = _string("MQTT") + bytes([level, flags]) + struct.pack(">H", keepalive)
    if version == "5":
        props = b"\x11" + struct.pack(">I", _SESSION_NEVER_EXPIRES)
        if receive_maximum is not None:
            props += b"\x21" + struct.pack(">H", receive_maximum)
        body += _varint(len(props)) + props
    body += _string(client_id)
    if will is not None:
        if version == "5":
            will_props = b"\x18" + struct.pack(">I", will.delay_s) if will.delay_s else b""
            body += _varint(len(will_props)) + will_props
        body += _string(will.topic) + struct.pack(">H", len(will.payload)) + will.payload
    if username is not None:
        body += _string(username)
        if password is not None:
            body += _string(password)
    return _packet(_CONNECT, 0, body)


def subscribe_packet(
    topic_filter: str,
    *,
    version: MqttVersion,
    mid: int = _SUBSCRIBE_MID,
    also: Sequence[tuple[str, int]] = (),
) -> bytes:
    """Return a SUBSCRIBE to ``topic_filter`` at QoS 1, and to each of ``also`` (filter, QoS)."""
    body = struct.pack(">H", mid) + (b"\x00" if version == "5" else b"") + _string(topic_filter) + b"\x01"
    for extra, qos in also:
        body += _string(extra) + bytes([qos])
    return _packet(_SUBSCRIBE, 2, body)


def unsubscribe_packet(topic_filters: Sequence[str], *, version: MqttVersion, mid: int = 2) -> bytes:
    """Return an UNSUBSCRIBE from ``topic_filters``."""
    body = struct.pack(">H", mid) + (b"\x00" if version == "5" else b"")
    body += b"".join(_string(f) for f in topic_filters)
    return _packet(_UNSUBSCRIBE, 2, body)


def publish_packet(topic: str, payload: bytes, *, version: MqttVersion, retain: bool = False) -> bytes:
    """Return a QoS 0 PUBLISH."""
    body = _string(topic) + (b"\x00" if version == "5" else b"") + payload
    return _packet(_PUBLISH, 1 if retain else 0, body)


def disconnect_packet(*, version: MqttVersion, will: bool = False, end_session: bool = False) -> bytes:
    """Return a DISCONNECT; with MQTT 5, ``will`` asks the broker to publish the Last Will anyway
    and ``end_session`` sets the session to expire at once (both are ignored with 3.1.1)."""
    if version != "5" or not (will or end_session):
        return _DISCONNECT_PACKET
    props = b"\x11\x00\x00\x00\x00" if end_session else b""
    return _packet(_DISCONNECT, 0, bytes([0x04 if will else 0x00]) + _varint(len(props)) + props)


def puback_packets(mids: Sequence[int]) -> bytes:
    """Return the PUBACKs of ``mids``, back to back (4 bytes each, reason omitted: success)."""
    return struct.pack(f">{len(mids)}I", *[0x40020000 | mid for mid in mids])


def _properties(data: bytes, pos: int) -> tuple[dict[int, int], int]:
    """Parse MQTT 5 properties at ``pos``; return the integer ones and the position after them."""
    parsed = _read_varint(data, pos)
    if parsed is None:
        raise MqttError("properties truncated")
    length, pos = parsed
    end = pos + length
    found: dict[int, int] = {}
    while pos < end:
        prop = data[pos]
        pos += 1
        if prop in _PROP_BYTE:
            found[prop] = data[pos]
            pos += 1
        elif prop in _PROP_TWO:
            found[prop] = struct.unpack_from(">H", data, pos)[0]
            pos += 2
        elif prop in _PROP_FOUR:
            found[prop] = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        elif prop in _PROP_VARINT:
            value = _read_varint(data, pos)
            if value is None:
                raise MqttError("property truncated")
            found[prop], pos = value
        elif prop in _PROP_STRING:
            pos += 2 + struct.unpack_from(">H", data, pos)[0]
        elif prop in _PROP_PAIR:
            pos += 2 + struct.unpack_from(">H", data, pos)[0]
            pos += 2 + struct.unpack_from(">H", data, pos)[0]
        else:
            raise MqttError(f"unknown MQTT 5 property 0x{prop:02x}")
    if pos != end:
        raise MqttError("properties overrun their length")
    return found, end


class PacketReader:
    """Splits a byte stream into packets; PUBLISHes become :data:`Delivery` tuples.

    Args:
        version: the protocol of the connection (MQTT 5 PUBLISHes carry properties).
    """

    def __init__(self, version: MqttVersion) -> None:
        self.v5 = version == "5"
        self._rest = b""

    def feed(self, data: bytes) -> tuple[list[Delivery], list[tuple[int, int, bytes]]]:
        """Take the next bytes of the stream; return the complete messages and control packets.

        Control packets are (type, flags, body). A packet cut at the end of ``data`` is kept
        until the next call.

        Raises:
            MqttError: the stream is not MQTT.
        """
        if self._rest:
            data = self._rest + data
        messages: list[Delivery] = []
        control: list[tuple[int, int, bytes]] = []
        try:
            pos = self._split(data, messages.append, control)
        except (IndexError, UnicodeDecodeError, struct.error) as exc:
            raise MqttError(f"malformed packet from the broker ({exc})") from exc
        self._rest = data[pos:]
        return messages, control

    def _split(
        self, data: bytes, append: Callable[[Delivery], None], control: list[tuple[int, int, bytes]]
    ) -> int:
        v5 = self.v5
        size = len(data)
        pos = 0
        while size - pos >= 2:
            header = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length >= 0x80:
                parsed = _read_varint(data, pos + 1)
                if parsed is None:
                    break
                length, start = parsed
            end = start + length
            if end > size:
                break
            if header >> 4 == _PUBLISH:
                qos = (header >> 1) & 3
                at = start + 2 + ((data[start] << 8) | data[start + 1])
                # A topic that is not UTF-8 is that message's fault (dead-lettered as a bad
                # topic), never the connection's: dropping it would loop on the redelivery.
                topic = data[start + 2 : at].decode(errors="replace")
                mid = 0
                if qos:
                    if qos != 1:
                        raise MqttError("the broker sent a QoS 2 message on a QoS 1 subscription")
                    mid = (data[at] << 8) | data[at + 1]
                    at += 2
                if v5:
                    plen = data[at]
                    if plen < 0x80:
                        at += 1 + plen
                    else:
                        _, at = _properties(data, at)
                if at > end:
                    raise MqttError("PUBLISH shorter than its topic and header")
                append((topic, data[at:end], mid, qos))
            else:
                control.append((header >> 4, header & 0x0F, data[start:end]))
            pos = end
        return pos


class MqttSession:
    """One persistent QoS 1 subscription, acknowledged by hand, kept connected in a thread.

    Args:
        host: the broker's host.
        port: its port.
        client_id: the fixed client id of the session.
        topic_filter: what to subscribe to, at QoS 1.
        deliver: called from the network thread with (generation, received_at, messages) for
            every chunk of messages read; must be quick (queue them).
        version: ``"3.1.1"`` or ``"5"``.
        keepalive: seconds; the broker's Server Keep Alive (MQTT 5) overrides it.
        username: the broker user, if any.
        password: its password.
        receive_maximum: with MQTT 5, the most unacknowledged messages the broker may send.
        on_connected: called (network thread) with ``session_present`` after each accepted CONNECT.
        on_subscribed: called (network thread) once the subscription is acknowledged.
        on_lost: called (network thread) with a reason when a connection ends unasked.
        clock: UTC epoch seconds, the ``received_at`` of each chunk.
        reconnect_min_s: first wait before reconnecting; doubles on each failure.
        reconnect_max_s: the longest wait.
        max_held: stop reading the socket while this many delivered messages of the current
            connection are not yet released (:meth:`release`); TCP then holds the broker back. The
            broker's own window is not enough: Mosquitto 2.0.11 resuming a session with a queued
            backlog sends all of it after the first PUBACK, whatever the Receive Maximum.
        on_fatal: called with the exception that ended the network thread.
        tls: connect with TLS using this context (None: plain TCP).
        will: the Last Will of every connection.
        also_subscribe: further (filter, QoS) subscriptions made with ``topic_filter``.
        generations: gives each new connection its generation; sessions that share it (one
            gateway's) never share a generation, so an ack finds its connection.
        linger_s: after a read that found less than half a chunk, wait this long (seconds, or a
            function giving them) before reading again, so that a slow stream arrives in chunks
            of many messages instead of a wake-up of every thread per message (0: read at once).
    """

    # Reconnect after a loss (a gateway's own session); False: the first connection is the last.
    _RECONNECTS = True

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        topic_filter: str,
        deliver: Callable[[int, float, list[Delivery]], None],
        *,
        version: MqttVersion = "3.1.1",
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
        receive_maximum: int | None = None,
        on_connected: Callable[[bool], None] | None = None,
        on_subscribed: Callable[[], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 10.0,
        max_held: int | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        tls: ssl.SSLContext | None = None,
        will: Will | None = None,
        also_subscribe: Sequence[tuple[str, int]] = (),
        generations: Callable[[], int] | None = None,
        linger_s: float | Callable[[], float] = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.topic_filter = topic_filter
        self.version = version
        self.keepalive = keepalive
        self._deliver = deliver
        self._connect_packet = connect_packet(
            client_id,
            version=version,
            keepalive=keepalive,
            username=username,
            password=password,
            receive_maximum=receive_maximum if version == "5" else None,
            will=will,
        )
        self._will = will
        self._also = tuple(also_subscribe)
        self._next_generation = generations or itertools.count(1).__next__
        self._delivered = 0  # messages delivered, all connections (network thread)
        self._linger = linger_s if callable(linger_s) else (lambda: linger_s)
        self._on_connected = on_connected
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._on_fatal = on_fatal
        self._clock = clock
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._send_lock = threading.Lock()  # guards _sock, _generation, _last_sent and every send
        self._sock: socket.socket | None = None
        self._generation = 0
        self._last_sent = 0.0
        self._stopping = threading.Event()
        self._disconnecting = threading.Event()  # stop() sent DISCONNECT: deliver nothing more
        self._thread: threading.Thread | None = None
        self._max_held = max_held
        self._tls = tls
        self._held = 0  # delivered and not released, of the current generation
        self._released = threading.Condition()  # guards _held

    @property
    def generation(self) -> int:
        """The current connection's number; messages of older connections cannot be acked."""
        return self._generation

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Connect (TCP and CONNECT) now, then serve the session in a background thread.

        Raises:
            OSError: the broker cannot be reached.
        """
        if self._thread is not None:
            raise MqttError(f"session {self.client_id} is already running")
        self._stopping.clear()
        self._disconnecting.clear()
        self._open()
        self._thread = threading.Thread(target=self._run_guarded, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, *, will: bool = False) -> None:
        """Send DISCONNECT (the session stays on the broker), wait for the broker to close the
        connection, and stop the thread.

        The broker reads a connection's packets in order and closes it after DISCONNECT, so once it
        has closed, every PUBACK sent before has counted. Closing at once could lose them: Mosquitto
        reads a packet per round, and a new connection with the same client id (a restart) takes
        the session over, drops the old connection's unread packets and sends the acknowledged
        messages again.

        Args:
            timeout: how long to wait for the broker's close, then for the network thread.
            will: have the Last Will published all the same (MQTT 5 asks the broker, which
                honours its delay; with 3.1.1 it is published here, before DISCONNECT).
        """
        self._disconnecting.set()
        with self._send_lock:
            sock, self._sock = self._sock, None
            if sock is not None:
                try:
                    if will and self._will is not None and self.version != "5":
                        w = self._will
                        last = publish_packet(w.topic, w.payload, version=self.version, retain=w.retain)
                        self._write(sock, last)
                    self._write(sock, disconnect_packet(version=self.version, will=will))
                except OSError:
                    _shutdown(sock)
                    sock = None
        thread, self._thread = self._thread, None
        if sock is not None and thread is not None and thread.is_alive():
            thread.join(timeout)  # the network thread reads until the broker closes
        self._stopping.set()
        if sock is not None:
            _shutdown(sock)
        if thread is not None:
            thread.join(timeout)

    # ------------------------------------------------------------------ acks (any thread)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Publish at QoS 0 on the current connection; False (nothing sent) if there is none."""
        packet = publish_packet(topic, payload, version=self.version, retain=retain)
        with self._send_lock:
            sock = self._sock
            if sock is None:
                return False
            try:
                self._write(sock, packet)
            except OSError as exc:
                log.warning("MQTT session %s: publishing to %s failed: %s", self.client_id, topic, exc)
                return False
            self._last_sent = time.monotonic()
        return True

    def release(self, generation: int, count: int) -> None:
        """Say that ``count`` delivered messages of connection ``generation`` are done with."""
        with self._released:
            if generation == self._generation:
                self._held = max(self._held - count, 0)
                self._released.notify()

    def ack(self, generation: int, mids: Sequence[int]) -> bool:
        """PUBACK ``mids``, received on connection ``generation``, in one write.

        Returns:
            False, sending nothing, when that connection is gone (the broker redelivers those
            messages on the next one) or the write failed (the connection is then closed).
        """
        if not mids:
            return True
        packets = puback_packets(mids)
        with self._send_lock:
            sock = self._sock
            if sock is None or generation != self._generation:
                return False
            try:
                self._write(sock, packets)
            except OSError as exc:
                log.warning("MQTT session %s: sending %d PUBACKs failed: %s", self.client_id, len(mids), exc)
                self._sock = None
                _shutdown(sock)
                return False
            self._last_sent = time.monotonic()
        return True

    # ------------------------------------------------------------------ network thread

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=max(self.keepalive, 1))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self._tls is not None:
                sock = self._handshake(sock, self._tls)
            self._write(sock, self._connect_packet)
        except OSError:
            sock.close()
            raise
        with self._send_lock, self._released:
            self._sock = sock
            self._generation = self._next_generation()  # before any message of it can arrive
            self._held = 0
            self._last_sent = time.monotonic()
        return sock

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """Wrap ``sock`` in TLS (handshake blocking, bounded by the socket's timeout), then non-blocking."""
        try:
            wrapped = context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raise MqttTlsError(
                f"the certificate of broker {self.host}:{self.port} was not accepted "
                f"({exc.verify_message}): check that the gateway's CA file "
                "(SUITCASE_GATEWAY_MQTT_CA_FILE) is the CA that signed it and that the host name "
                "(SUITCASE_GATEWAY_MQTT_HOST) is one the certificate names"
            ) from exc
        except ssl.SSLError as exc:
            raise MqttTlsError(
                f"TLS with broker {self.host}:{self.port} failed ({exc.reason or exc}): check that "
                "SUITCASE_GATEWAY_MQTT_PORT is the broker's TLS listener, and the client certificate "
                "if the broker asks for one"
            ) from exc
        wrapped.setblocking(False)
        return wrapped

    def _write(self, sock: socket.socket, data: bytes) -> None:
        """Send all of ``data``; the caller holds the send lock (or owns ``sock`` alone)."""
        if not isinstance(sock, ssl.SSLSocket):
            sock.sendall(data)
            return
        view = memoryview(data)
        deadline = time.monotonic() + max(self.keepalive, 1)
        while view:
            try:
                view = view[sock.send(view) :]
                continue
            except ssl.SSLWantWriteError:
                events = select.POLLOUT
            except ssl.SSLWantReadError:
                events = select.POLLIN
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"sending to broker {self.host}:{self.port} timed out")
            poller = select.poll()
            poller.register(sock, events)
            poller.poll(min(left, _TICK_S) * 1000)

    def _read(self, sock: socket.socket) -> bytes | None:
        """Read what has arrived; None when a TLS record is still incomplete (nothing to read yet).

        A TLS read returns one record, and Mosquitto writes a record per packet: the records that
        have arrived are read together, so a chunk (and its acks) holds many messages, as in TCP.
        """
        if not isinstance(sock, ssl.SSLSocket):
            return sock.recv(_READ_SIZE)
        chunks: list[bytes] = []
        size = 0
        with self._send_lock:  # one thread at a time in the TLS connection
            while size < _READ_SIZE:
                try:
                    data = sock.recv(_READ_SIZE - size)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                if not data:  # closed: end with what came before it (the next read sees the end)
                    if not chunks:
                        return b""
                    break
                chunks.append(data)
                size += len(data)
        return b"".join(chunks) if chunks else None

    def _send(self, sock: socket.socket, packet: bytes) -> None:
        with self._send_lock:
            if self._sock is not sock:
                raise OSError("connection closed")
            self._write(sock, packet)
            self._last_sent = time.monotonic()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the thread's death must reach the owner, never pass unseen
            if self._on_fatal is None:
                log.critical("MQTT session %s: the network thread died", self.client_id, exc_info=exc)
            else:
                self._on_fatal(exc)

    def _run(self) -> None:
        delay = self._reconnect_min_s
        sock = self._sock
        while not self._stopping.is_set():
            if sock is None:
                try:
                    sock = self._open()
                except OSError as exc:
                    log.warning(
                        "MQTT session %s: cannot reach %s:%s (%s); retrying in %.0f s",
                        self.client_id,
                        self.host,
                        self.port,
                        exc,
                        delay,
                    )
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self._reconnect_max_s)
                    continue
            accepted = False
            try:
                accepted, reason = self._serve(sock)
            except (MqttError, OSError) as exc:
                reason = str(exc)
            except Exception as exc:  # a bug must not kill the session silently: log, reconnect
                log.exception("MQTT session %s: unexpected error", self.client_id)
                reason = f"unexpected error ({exc!r})"
            with self._send_lock:
                if self._sock is sock:
                    self._sock = None
            sock.close()
            sock = None
            if self._stopping.is_set() or self._disconnecting.is_set():
                break
            if accepted:
                delay = self._reconnect_min_s
            if self._on_lost is not None:
                self._on_lost(reason)
            if not self._RECONNECTS:
                break
            self._stopping.wait(delay)
            if not accepted:
                delay = min(delay * 2, self._reconnect_max_s)
        with self._send_lock:  # a connection opened while stop() ran
            sock, self._sock = self._sock, None
        if sock is not None:
            _shutdown(sock)
            sock.close()

    def _serve(self, sock: socket.socket) -> tuple[bool, str]:
        """Read ``sock`` until the connection ends; return (CONNECT accepted, why it ended)."""
        reader = PacketReader(self.version)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        keepalive = self.keepalive
        accepted = False
        ping_sent = 0.0
        opened = time.monotonic()
        limit = self._max_held if self._max_held is not None else 1 << 62
        tls = isinstance(sock, ssl.SSLSocket)  # decrypted bytes may wait in it, unseen by poll
        while not self._stopping.is_set():
            if self._held >= limit and not self._disconnecting.is_set():
                with self._released:  # hold the broker back until the caller catches up
                    self._released.wait_for(
                        lambda: self._held < limit or self._stopping.is_set(), timeout=_TICK_S
                    )
                ping_sent = 0.0  # a PINGRESP waits unread in the socket meanwhile
            elif (tls and sock.pending()) or poller.poll(_TICK_S * 1000):  # type: ignore[attr-defined]
                try:
                    data = self._read(sock)
                except OSError as exc:
                    return accepted, f"connection lost ({exc})"
                if data is None:
                    continue
                if not data:
                    return accepted, "the broker closed the connection"
                messages, control = reader.feed(data)
                if messages and not self._disconnecting.is_set():  # after DISCONNECT: sent again
                    with self._released:
                        self._held += len(messages)
                    self._delivered += len(messages)
                    self._deliver(self._generation, self._clock(), messages)
                    if len(data) < _READ_SIZE // 2:
                        linger = self._linger()
                        if linger > 0:
                            self._stopping.wait(linger)
                for kind, _flags, body in control:
                    if kind == _CONNACK:
                        keepalive = self._connack(sock, body)
                        accepted = True
                    elif kind == _SUBACK:
                        self._suback(body)
                    elif kind == _PINGRESP:
                        ping_sent = 0.0
                        self._pong()
                    elif kind == _DISCONNECT:
                        code = body[0] if body else 0
                        return accepted, f"the broker disconnected (reason 0x{code:02x})"
                    else:
                        self._control(kind, body)
            if accepted:
                ended = self._tick(sock)
                if ended is not None:
                    return accepted, ended
            now = time.monotonic()
            if not accepted and now - opened > max(keepalive, 1):
                return False, "no CONNACK from the broker"
            if ping_sent and now - ping_sent > max(keepalive, 1):
                return accepted, f"no PINGRESP within {keepalive} s"
            if accepted and keepalive and not ping_sent and now - self._last_sent >= keepalive / 2:
                ping_sent = now
                self._send(sock, _PINGREQ_PACKET)
        return accepted, "stopping"

    def _connack(self, sock: socket.socket, body: bytes) -> int:
        """Check the CONNACK, subscribe; return the keep-alive to use."""
        if len(body) < 2:
            raise MqttError("malformed CONNACK")
        session_present, code = bool(body[0] & 1), body[1]
        keepalive = self.keepalive
        if self.version == "5" and len(body) > 2:
            props, _ = _properties(body, 2)
            keepalive = props.get(_SERVER_KEEP_ALIVE, keepalive)
        if code != 0:
            raise MqttError(
                f"broker {self.host}:{self.port} refused session {self.client_id} (code 0x{code:02x}): "
                "check the gateway's username, password and client id"
            )
        log.info("MQTT session %s connected (session present: %s)", self.client_id, session_present)
        if self._on_connected is not None:
            self._on_connected(session_present)
        self._after_connack(sock, session_present)
        return keepalive

    # ------------------------------------------------------------------ hooks (network thread)

    def _after_connack(self, sock: socket.socket, session_present: bool) -> None:
        """Subscribe (every connection: the broker may have lost the session)."""
        self._send(sock, subscribe_packet(self.topic_filter, version=self.version, also=self._also))

    def _control(self, kind: int, body: bytes) -> None:
        """A control packet the session itself does not handle (UNSUBACK)."""

    def _pong(self) -> None:
        """A PINGRESP arrived."""

    def _tick(self, sock: socket.socket) -> str | None:
        """After each read or idle tick of an accepted connection; a reason ends the connection."""
        return None

    def _suback(self, body: bytes) -> None:
        pos = 2
        if self.version == "5":
            _, pos = _properties(body, pos)
        codes = body[pos:]
        if not codes or any(code >= 0x80 for code in codes):
            log.error(
                "broker refused the subscription of %s to %s (codes %s): check its ACL",
                self.client_id,
                self.topic_filter,
                list(codes),
            )
            return
        if self._on_subscribed is not None:
            self._on_subscribed()


def _shutdown(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock`` and close it for good."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
