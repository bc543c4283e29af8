"""Retention of the embedded SQLite store: the settings recorded per org, then applied.

The store maintains its rollups (5 s to 1 day) itself on every write (late readings mark
their minutes, which are recomputed), so applying the settings is recording them per org
(:meth:`SqliteStore.set_retention`, the default for every org that has readings) and deleting
what they no longer keep (:meth:`SqliteStore.apply_retention`, which refreshes the rollups first:
a minute's rollup outlives its readings).
"""

from __future__ import annotations

from gateway.store.retention import Applied, Retention, RetentionSettings
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite import from_url as _open

__all__ = ["SqliteRetention", "from_url"]


class SqliteRetention:
    """Applies retention settings to one SQLite store."""

    def __init__(self, store: SqliteStore, *, owned: bool = False) -> None:
        self.store = store
        self._owned = owned

    def apply(self, settings: RetentionSettings, now: float) -> Applied:
        """Record every org's retention and delete what it no longer keeps."""
        orgs = sorted({d.org for d in self.store.devices()} | set(settings.orgs))
        before = self.show()
        actions: list[str] = []
        for org in orgs:
            want = settings.for_org(org)
            if before.get(org) != want:
                self.store.set_retention(org, want.raw_days, want.minute_days, want.hour_days)
                actions.append(f"{org}: keep {want.describe(fine=True)}")
        deleted = self.store.apply_retention(now)
        return Applied(str(self.store.path), {o: settings.for_org(o) for o in orgs}, tuple(actions), deleted)

    def show(self) -> dict[str, Retention]:
        """Return the retention recorded per org (an org without one keeps everything)."""
        return {
            org: Retention(raw_days=raw, minute_days=minute, hour_days=hour)
            for org, (raw, minute, hour) in self.store.retention().items()
        }

    def close(self) -> None:
        if self._owned:
            self.store.close()


def from_url(url: str) -> SqliteRetention:
    """Open the retention side of ``sqlite:///file.db`` (or a plain path)."""
    return SqliteRetention(_open(url.split("?", 1)[0]), owned=True)
