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
still the one to adopt.

A record saying ``up`` is a lease: each member says ``up`` again every ``heartbeat_s`` and the
others count it up only while they have heard it within ``lease_s`` (by their own clock, from when
the record reached them, so clocks need not agree). A member that vanished without its will being
published (the broker restarted from its persistence file, which keeps retained records but sends
no wills; a connection the broker still holds open) leaves an ``up`` that is never renewed: once
its lease runs out it is adopted and its record cleared, as if it said ``down``. A member gone
quiet but alive (frozen past its lease) takes its session back when it reconnects: nothing is lost.

If two members adopt at once (their views differ for a moment) nothing is
lost: the session and its messages pass from one to the other, the loser's acks are dropped, the
broker redelivers and the store overwrites.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway._mqtt import Will
from kits.errors import SuitcaseError

__all__ = ["DOWN", "UP", "GroupMembership", "records_filter"]

log = logging.getLogger(__name__)

UP = b"up"
DOWN = b"down"
_ROOT = "suitcase/gateways"
_RETRY_S = 2.0
HEARTBEAT_S = 30.0
LEASE_S = 3 * HEARTBEAT_S  # three missed renewals


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
        heartbeat_s: how often this member renews its ``up`` (:meth:`tick`).
        lease_s: how long another member's ``up`` counts without a renewal (> ``heartbeat_s``).
        clock: monotonic seconds (injected by tests).
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
        heartbeat_s: float = HEARTBEAT_S,
        lease_s: float = LEASE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not heartbeat_s < lease_s:
            raise SuitcaseError(
                f"a group record's lease ({lease_s} s) must be longer than its heartbeat ({heartbeat_s} s)"
            )
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
        self._heartbeat_s = heartbeat_s
        self._lease_s = lease_s
        self._clock = clock
        self._renewed: dict[str, float] = {}  # when each member's `up` last reached us
        self._said_up: float | None = None  # when we last said `up` (None: not on this connection)
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
        """How many members are up (their lease running), this one included."""
        return self._live

    @property
    def expired(self) -> set[str]:
        """The members whose record says ``up`` but whose lease ran out."""
        with self._lock:
            return self._expired(self._clock())

    def _expired(self, now: float) -> set[str]:
        return {
            m
            for m, state in self._records.items()
            if state == UP and m != self.client_id and now - self._renewed.get(m, now) > self._lease_s
        }

    def _up(self, now: float) -> set[str]:
        """The members up now (lock held): an unexpired ``up``, and this one."""
        fresh = {m for m, state in self._records.items() if state == UP} - self._expired(now)
        return fresh | {self.client_id}

    @property
    def adopting(self) -> set[str]:
        """The members whose sessions this member is adopting now."""
        with self._lock:
            return set(self._adopting)

    def connected(self) -> None:
        """Say ``up`` (called on each accepted connection, before subscribing)."""
        self._say_up()

    def _say_up(self) -> None:
        self._said_up = self._clock() if self._publish(self.topic, UP, True) else None

    def tick(self) -> None:
        """Renew this member's ``up`` when due, and adopt members whose lease ran out (called often,
        from the gateway's worker loop; cheap when there is nothing to do)."""
        now = self._clock()
        if self._said_up is not None and now - self._said_up >= self._heartbeat_s:
            self._say_up()
        with self._lock:
            expired = self._expired(now) - self._adopting
            self._live = len(self._up(now))
        if expired and not self._closed:
            self.evaluate()

    def on_message(self, topic: str, payload: bytes) -> None:
        """Take a member's record (its retained state, or a change); adopt if it is ours to adopt."""
        member = topic[len(self.prefix) :]
        if not member or "/" in member:
            return
        now = self._clock()
        with self._lock:
            if payload:
                self._records[member] = payload
                self._renewed[member] = now
            else:
                self._records.pop(member, None)
                self._renewed.pop(member, None)
            self._live = len(self._up(now))
        if member == self.client_id and payload != UP:
            # Our own will, published while we were away, or a record cleared by an adopter that
            # finished as we came back: we are up.
            self._say_up()
        self.evaluate()

    def evaluate(self) -> None:
        """Adopt every member whose record says ``down`` or whose lease ran out, if this member is
        the one to."""
        now = self._clock()
        with self._lock:
            if self._closed:
                return
            if min(self._up(now)) != self.client_id:
                return
            expired = self._expired(now)
            todo = [
                m
                for m, state in sorted(self._records.items())
                if (state == DOWN or m in expired) and m != self.client_id and m not in self._adopting
            ]
            self._adopting.update(todo)
        for member in todo:
            why = "its lease ran out" if member in expired else "its record says down"
            log.info("gateway %s adopts the session of %s (%s)", self.client_id, member, why)
            if not self._adopt(member):
                self.done(member, drained=False)

    def done(self, member: str, *, drained: bool) -> None:
        """An adoption ended: clear the member's record if its session is empty, else look again later."""
        with self._lock:
            self._adopting.discard(member)
            if self._closed:
                return
            gone = self._records.get(member) == DOWN or member in self._expired(self._clock())
            if drained and gone:
                self._records.pop(member, None)
                self._renewed.pop(member, None)
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
