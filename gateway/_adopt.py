"""Adopting a dead member's session: what Mosquitto queued for it reaches the store through a live one.

Mosquitto 2.0 hands each message of a shared subscription to one member, round robin, whether
that member is connected or not, and keeps it in that member's session: a member that dies keeps
its share of new messages and the ones it had not acknowledged, until a client with its client
id resumes the session (mosquitto ``subs__shared_process``; a session that ends frees its
messages, none go to the other members). So a live member of the group *adopts* it:

- connect with the dead member's client id, clean start off and a session that never expires
  (as the member itself would: a member restarted meanwhile takes the session over again, and
  loses nothing, whichever of the two holds it);
- UNSUBSCRIBE from the group's filter at once, so no further message is routed to it;
- receive what the session holds (the unacknowledged ones again, then the queued ones), each
  written by the adopter's own pipeline and acknowledged after the write, as its own;
- once the unsubscription is acknowledged and everything received is acknowledged, a PINGREQ:
  Mosquitto sends the queued messages an acknowledgement releases before it answers a later
  PINGREQ, so a PINGRESP with nothing before it means the session is empty; then DISCONNECT (MQTT
  5: the empty session expires at once).

A connection that ends otherwise (the member came back, another adopter took over, the broker
went away) ends the adoption undrained: whoever holds the session has its messages.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from gateway._mqtt import (
    _PINGREQ_PACKET,
    _UNSUBACK,
    MqttSession,
    disconnect_packet,
    unsubscribe_packet,
)

__all__ = ["AdoptedSession"]

log = logging.getLogger(__name__)

DRAINED = "drained"


class AdoptedSession(MqttSession):
    """One connection that drains a dead member's session into the adopter's pipeline.

    Takes :class:`MqttSession`'s arguments (``client_id`` is the dead member's, ``topic_filter``
    the group's filter, ``also_subscribe`` the filters to drop as well) and ``on_done``, called
    from the network thread with True once the session is empty, False if the connection ended
    first.
    """

    _RECONNECTS = False

    def __init__(self, *args: object, on_done: Callable[[bool], None], **kwargs: object) -> None:
        kwargs.setdefault("on_lost", self._lost)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._on_done = on_done
        self._unsubscribed = False
        self._probe: tuple[int, int] | None = None  # (pings to answer, messages delivered then)
        self._pings = 0
        self._pongs = 0
        self._finished = False

    def _after_connack(self, sock: socket.socket, session_present: bool) -> None:
        filters = [self.topic_filter, *(f for f, _ in self._also)]
        self._send(sock, unsubscribe_packet(filters, version=self.version))
        log.info("adopting the session of %s (present: %s)", self.client_id, session_present)

    def _control(self, kind: int, body: bytes) -> None:
        if kind == _UNSUBACK:
            self._unsubscribed = True

    def _pong(self) -> None:
        self._pongs += 1

    def _tick(self, sock: socket.socket) -> str | None:
        if self._held:
            self._probe = None
            return None
        if not self._unsubscribed:
            return None
        if self._probe is None:
            self._pings += 1
            self._probe = (self._pings, self._delivered)
            self._send(sock, _PINGREQ_PACKET)
            return None
        answered, delivered = self._probe
        if self._pongs < answered:
            return None
        if self._delivered != delivered:
            self._probe = None  # more came: acknowledge them, then ask again
            return None
        self._send(sock, disconnect_packet(version=self.version, end_session=True))
        self._finish(True)
        return DRAINED

    def _lost(self, reason: str) -> None:
        if reason != DRAINED:
            log.warning("adoption of %s ended before its session was empty: %s", self.client_id, reason)
        self._finish(reason == DRAINED)

    def _finish(self, drained: bool) -> None:
        if not self._finished:
            self._finished = True
            self._on_done(drained)
