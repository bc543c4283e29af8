"""Each city's data in its own store: reads routed by organisation.

An organisation may name a store of its own (its own InfluxDB); its readings, devices seen and
windows are read there, every other organisation's from the default store. Reads that span
organisations (every device's latest reading, every device seen, dead letters) ask each store
once and merge the answers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from gateway.store.base import (
    DeadLetter,
    DeviceKey,
    DeviceSeen,
    Reader,
    SeriesWindows,
    Window,
    check_keys,
)
from kits.wire import Record

__all__ = ["OrgRoutedReader"]


class OrgRoutedReader:
    """A :class:`Reader` that sends each organisation's reads to its own store.

    Args:
        default: the store of every organisation not in ``by_org``.
        by_org: org slug -> that organisation's own store.
    """

    def __init__(self, default: Reader, by_org: Mapping[str, Reader]) -> None:
        self.default = default
        self.by_org = dict(by_org)

    def _for(self, org: str) -> Reader:
        return self.by_org.get(org, self.default)

    def _all(self) -> list[Reader]:
        return [self.default, *self.by_org.values()]

    def readings(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        limit: int = 100_000,
    ) -> list[Record]:
        return self._for(org).readings(org, device, start, end, sensor=sensor, quantity=quantity, limit=limit)

    def latest(
        self, devices: Collection[DeviceKey] | None = None, *, since: float | None = None
    ) -> list[Record]:
        out: list[Record] = []
        if devices is None:
            out += [r for r in self.default.latest(since=since) if r.org not in self.by_org]
            for org, reader in self.by_org.items():
                out += [r for r in reader.latest(since=since) if r.org == org]
        else:
            groups: dict[int, tuple[Reader, list[DeviceKey]]] = {}
            for key in check_keys(devices):
                reader = self._for(key[0])
                groups.setdefault(id(reader), (reader, []))[1].append(key)
            for reader, keys in groups.values():
                out += reader.latest(keys, since=since)
        out.sort(key=lambda r: (r.device, r.sensor, r.quantity))
        return out

    def devices(
        self, org: str | None = None, *, keys: Collection[DeviceKey] | None = None
    ) -> list[DeviceSeen]:
        if keys is not None:
            groups: dict[int, tuple[Reader, list[DeviceKey]]] = {}
            for key in check_keys(keys):
                reader = self._for(key[0])
                groups.setdefault(id(reader), (reader, []))[1].append(key)
            out = [d for reader, group in groups.values() for d in reader.devices(org, keys=group)]
        elif org is not None:
            return self._for(org).devices(org)
        else:
            out = [d for d in self.default.devices() if d.org not in self.by_org]
            for own, reader in self.by_org.items():
                out += reader.devices(own)
        out.sort(key=lambda d: (d.org, d.device))
        return out

    def windows(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
    ) -> list[Window]:
        return self._for(org).windows(org, device, start, end, every, sensor=sensor, quantity=quantity)

    def series_windows(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        means_only: bool = False,
    ) -> list[SeriesWindows]:
        reader = self._for(org)
        return reader.series_windows(
            org, device, start, end, every, sensor=sensor, quantity=quantity, means_only=means_only
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        letters = [d for reader in self._all() for d in reader.dead_letters(limit)]
        letters.sort(key=lambda d: d.received_at, reverse=True)
        return letters[:limit]

    def count_dead_letters(self) -> int:
        return sum(reader.count_dead_letters() for reader in self._all())

    def health(self) -> None:
        for reader in self._all():
            reader.health()

    def close(self) -> None:
        for reader in self._all():
            reader.close()
