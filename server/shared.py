"""State the server replicas share, kept in the registry database (SQLite or PostgreSQL).

Replicas are stateless processes behind a load balancer (docs/architecture.md, "Production"), so
what must hold across them lives in the registry:

- :class:`Lease`: a named lease, one holder at a time until it expires. Taken with one conditional
  ``UPDATE`` (or the ``INSERT`` of a new name, where the primary key lets one replica win), kept
  with :meth:`Lease.keep` inside the transaction whose commit needs it (the row stays locked
  until that commit, so no other replica can take the lease in between), given back at the end.
  The alert round holds ``alerts``: rounds never overlap, so each alert fires once and resolves
  once whichever replicas run the loop.
- :class:`SharedGuessLimiter` and :class:`SharedRateLimiter`: sliding windows of events per client
  (failed login/claim guesses; exports started) as rows of ``rate_events``, counted by every
  replica. The client's key is stored as its SHA-256 only. Rows that left their window are deleted
  at most once per window per replica, so the table holds about one window of events.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from sqlalchemy import Engine, delete, func, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from server.tables import LeaseRow, RateEventRow

__all__ = ["Lease", "SharedGuessLimiter", "SharedRateLimiter", "replica_name"]

log = logging.getLogger(__name__)


def replica_name() -> str:
    """A name for this server process, unique among the replicas (host, pid and a random part)."""
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{secrets.token_hex(4)}"


class Lease:
    """A named lease in the registry, held by one holder at a time.

    Args:
        engine: the registry.
        name: what the lease guards (e.g. ``alerts``).
        holder: who takes it; unique per taker (a replica and a round).
        ttl_s: how long it holds without :meth:`keep`; after that another may take it (a holder
            that died mid-round frees it this way, so this is how long a dead holder blocks).
        clock: UTC epoch seconds now.
    """

    def __init__(
        self, engine: Engine, name: str, holder: str, ttl_s: float, clock: Callable[[], float]
    ) -> None:
        self.engine, self.name, self.holder, self.ttl_s = engine, name, holder[:128], ttl_s
        self._clock = clock

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; False when another holds it."""
        now = self._clock()
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(LeaseRow)
                .where(
                    col(LeaseRow.name) == self.name,
                    or_(col(LeaseRow.holder) == self.holder, col(LeaseRow.expires_at) <= now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl_s)
            )
            if taken.rowcount == 1:
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(LeaseRow).values(name=self.name, holder=self.holder, expires_at=now + self.ttl_s)
                )
        except IntegrityError:  # the name exists and another holds it
            return False
        return True

    def acquire_within(self, wait_s: float, every_s: float = 0.2) -> bool:
        """Take the lease, waiting up to ``wait_s`` (real time) for another holder to give it back."""
        deadline = time.monotonic() + wait_s
        while not self.acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(every_s)
        return True

    def keep(self, session: Session) -> bool:
        """Extend the lease inside ``session``'s transaction; False when another holder took it.

        Call it just before committing work that only the holder may commit: the lease row
        stays locked (PostgreSQL) or the database written (SQLite) until that commit. A lease
        past its expiry that nobody took is still ours (no other holder can have worked
        meanwhile: taking it changes the holder), so a slow step does not lose its work for
        nothing; the expiry only lets others in when the holder stops keeping it.
        """
        now = self._clock()
        kept = session.connection().execute(
            update(LeaseRow)
            .where(col(LeaseRow.name) == self.name, col(LeaseRow.holder) == self.holder)
            .values(expires_at=now + self.ttl_s)
        )
        return bool(kept.rowcount == 1)

    def release(self) -> None:
        """Give the lease back (nothing when it is no longer ours)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(LeaseRow).where(col(LeaseRow.name) == self.name, col(LeaseRow.holder) == self.holder)
            )


class _Window:
    """Events of one kind per client key in a sliding window, as rows of ``rate_events``."""

    def __init__(
        self, engine: Engine, kind: str, limit: int, clock: Callable[[], float], window_s: float
    ) -> None:
        self.engine, self.kind, self.limit, self.window_s = engine, kind, limit, window_s
        self._clock = clock
        self._pruned_at = -float("inf")

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def wait(self, digest: str, now: float) -> float:
        """Seconds until ``digest`` may act again (0: now), from the events in the window."""
        with Session(self.engine) as session:
            times = session.exec(
                select(RateEventRow.at)
                .where(
                    RateEventRow.kind == self.kind,
                    RateEventRow.key == digest,
                    col(RateEventRow.at) > now - self.window_s,
                )
                .order_by(col(RateEventRow.at).desc())
                .limit(self.limit)
            ).all()
        if len(times) < self.limit:
            return 0.0
        return max(1.0, times[-1] + self.window_s - now)

    def add(self, digest: str, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(RateEventRow).values(kind=self.kind, key=digest, at=now))

    def prune(self, now: float) -> None:
        """Delete the events that left the window (of every kind), at most once per window."""
        if now - self._pruned_at < self.window_s:
            return
        self._pruned_at = now
        with self.engine.begin() as conn:
            conn.execute(delete(RateEventRow).where(col(RateEventRow.at) <= now - self.window_s))

    def count(self) -> int:
        """The events kept (all kinds): what pruning bounds."""
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(RateEventRow)).one())


class SharedGuessLimiter:
    """Failed guesses (login passwords, claim and enrollment codes) per client, across replicas.

    The same contract as :class:`server.security.GuessLimiter`, kept in the registry.

    Args:
        engine: the registry.
        limit: failures allowed per ``window_s``.
        clock: UTC epoch seconds now.
    """

    def __init__(
        self, engine: Engine, limit: int, clock: Callable[[], float], window_s: float = 60.0
    ) -> None:
        self._window = _Window(engine, "guess", limit, clock, window_s)
        self._clock = clock

    def retry_after(self, key: str) -> float:
        """Return 0 when ``key`` may guess now, else the seconds until it may."""
        now = self._clock()
        self._window.prune(now)
        return self._window.wait(_Window.digest(key), now)

    def failed(self, key: str) -> None:
        """Count one failed guess of ``key``."""
        now = self._clock()
        self._window.add(_Window.digest(key), now)
        self._window.prune(now)

    def __len__(self) -> int:
        """The events the registry keeps (all kinds)."""
        return self._window.count()


class SharedRateLimiter:
    """At most ``limit`` starts per client in any ``window_s``, counted across replicas.

    The same contract as :class:`server.bounded.RateLimiter`. Two replicas counting the same
    client in the same instant may both let one more start through (the count and the insert are
    not one statement): the limit can be passed by at most one start per replica, never more.
    """

    def __init__(
        self, engine: Engine, limit: int, clock: Callable[[], float], window_s: float = 60.0
    ) -> None:
        self._window = _Window(engine, "export", limit, clock, window_s)
        self._clock = clock

    def take(self, key: str) -> float:
        """Count a start of ``key`` and return 0, or return the seconds to wait (nothing counted)."""
        now = self._clock()
        self._window.prune(now)
        digest = _Window.digest(key)
        wait = self._window.wait(digest, now)
        if not wait:
            self._window.add(digest, now)
        return wait

    def __len__(self) -> int:
        return self._window.count()
