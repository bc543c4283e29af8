"""A gateway's view of its shared-subscription group: who is up, and who adopts a member that died.

Each member keeps a retained record at ``suitcase/gateways/{group}/{client_id}``: ``up``, published
on each of its connections, and ``down``, its Last Will, which the broker publishes when the
connection ends without a DISCONNECT (killed, frozen past its keep-alive, cut off) or when the
member stops (``Gateway.stop``). With MQTT 5 the will waits ``will_delay_s``: a member restarted
within it (a supervisor's restart) resumes its own session and no one adopts it.

Every member subscribes to the group's records. For each member whose record is ``down``, the live
member with the lowest client id adopts its session (``gateway/_adopt.py``): the dead member's
share, queued or unacknowledged, is written through the adopter and no more is routed to it. Once
the session is empty the adopter clears the record. An adoption that ends before (the member came
back, the broker went away) is tried again while the record stays ``down`` and this member is
still the one to adopt. If two members adopt at once (their views differ for a moment) nothing is
lost: the session and its messages pass from one to the other, the loser's acks are dropped, the
broker redelivers and the store overwrites.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway._mqtt import Will
from kits.errors import SuitcaseError

__all__ = ["DOWN", "UP", "GroupMembership", "records_filter"]

log = logging.getLogger(__name__)

UP = b"up"
DOWN = b"down"
_ROOT = "suitcase/gateways"
_RETRY_S = 2.0


def records_filter(group: str) -> str:
    """The filter of every member's record in ``group``."""
    return f"{_ROOT}/{group}/+"


class GroupMembership:
    """One member's view of its group, and the adoptions it starts.

    Args:
        group: the shared-subscription group.
        client_id: this member's client id.
        adopt: start adopting the session of the member named; False if it could not start
            (tried again later). The adoption calls :meth:`done` when it ends.
        publish: publish (topic, payload, retained) at QoS 0 on this member's connection.
        will_delay_s: how long the broker waits before publishing a dead member's ``down``.
        retry_s: how long after an adoption that ended undrained to look again.
    """

    def __init__(
        self,
        group: str,
        client_id: str,
        *,
        adopt: Callable[[str], bool],
        publish: Callable[[str, bytes, bool], bool],
        will_delay_s: int = 0,
        retry_s: float = _RETRY_S,
    ) -> None:
        if not client_id or any(c in client_id for c in "/+#"):
            raise SuitcaseError(
                f"client id {client_id!r} of a gateway in group {group} holds '/', '+' or '#': "
                "its group record needs one topic level; use letters, digits and dashes"
            )
        self.group = group
        self.client_id = client_id
        self.prefix = f"{_ROOT}/{group}/"
        self.filter = records_filter(group)
        self.topic = self.prefix + client_id
        self.will = Will(self.topic, DOWN, retain=True, delay_s=will_delay_s)
        self._adopt = adopt
        self._publish = publish
        self._retry_s = retry_s
        self._records: dict[str, bytes] = {}
        self._adopting: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._timers: list[threading.Timer] = []
        self._live = 1

    @property
    def records(self) -> dict[str, bytes]:
        """Each member's last record, as this member has seen them."""
        with self._lock:
            return dict(self._records)

    @property
    def live(self) -> int:
        """How many members are up, this one included."""
        return self._live

    @property
    def adopting(self) -> set[str]:
        """The members whose sessions this member is adopting now."""
        with self._lock:
            return set(self._adopting)

    def connected(self) -> None:
        """Say ``up`` (called on each accepted connection, before subscribing)."""
        self._publish(self.topic, UP, True)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Take a member's record (its retained state, or a change); adopt if it is ours to adopt."""
        member = topic[len(self.prefix) :]
        if not member or "/" in member:
            return
        with self._lock:
            if payload:
                self._records[member] = payload
            else:
                self._records.pop(member, None)
            self._live = len({m for m, state in self._records.items() if state == UP} | {self.client_id})
        if member == self.client_id and payload != UP:
            # Our own will, published while we were away, or a record cleared by an adopter that
            # finished as we came back: we are up.
            self._publish(self.topic, UP, True)
        self.evaluate()

    def evaluate(self) -> None:
        """Adopt every member whose record says ``down``, if this member is the one to."""
        with self._lock:
            if self._closed:
                return
            up = {m for m, state in self._records.items() if state == UP} | {self.client_id}
            if min(up) != self.client_id:
                return
            todo = [
                m
                for m, state in sorted(self._records.items())
                if state == DOWN and m != self.client_id and m not in self._adopting
            ]
            self._adopting.update(todo)
        for member in todo:
            log.info("gateway %s adopts the session of %s (its record says down)", self.client_id, member)
            if not self._adopt(member):
                self.done(member, drained=False)

    def done(self, member: str, *, drained: bool) -> None:
        """An adoption ended: clear the member's record if its session is empty, else look again later."""
        with self._lock:
            self._adopting.discard(member)
            if self._closed:
                return
            if drained and self._records.get(member) == DOWN:
                self._records.pop(member, None)
            else:
                drained = False
        if drained:
            log.info("gateway %s drained the session of %s", self.client_id, member)
            self._publish(self.prefix + member, b"", True)
            return
        timer = threading.Timer(self._retry_s, self.evaluate)
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def close(self) -> None:
        """Start no more adoptions."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
