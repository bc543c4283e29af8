"""The store as the tests' gateway sees it, on either backend: write like the gateway, read like the server.

``SqliteStore`` is both already. :class:`InfluxStore` writes through the real ``influxdb1`` sink
(readings, devices seen, dead letters: what the gateway writes) and reads through the real
InfluxQL reader (what the server reads), against a real influxd.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from gateway.sinks.influxdb1 import InfluxDB1Sink
from gateway.sinks.influxdb1 import from_url as sink_from_url
from gateway.store import DeadLetter, DeviceKey, DeviceSeen, SeriesWindows, Window
from gateway.store.influxdb1 import InfluxQLReader
from gateway.store.influxdb1 import from_url as reader_from_url
from kits.wire import Record

__all__ = ["InfluxStore"]


class InfluxStore:
    """A gateway's sink and a server's reader on one InfluxDB URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sink: InfluxDB1Sink = sink_from_url(url)
        self.sink.open()
        self.reader: InfluxQLReader = reader_from_url(url)

    def write(self, records: Sequence[Record]) -> None:
        self.sink.write(records)

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.sink.write_dead_letters(letters)

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
        return self.reader.readings(org, device, start, end, sensor=sensor, quantity=quantity, limit=limit)

    def latest(
        self, devices: Collection[DeviceKey] | None = None, *, since: float | None = None
    ) -> list[Record]:
        return self.reader.latest(devices, since=since)

    def devices(
        self, org: str | None = None, *, keys: Collection[DeviceKey] | None = None
    ) -> list[DeviceSeen]:
        return self.reader.devices(org, keys=keys)

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
        return self.reader.windows(org, device, start, end, every, sensor=sensor, quantity=quantity)

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
    ) -> list[SeriesWindows]:
        return self.reader.series_windows(org, device, start, end, every, sensor=sensor, quantity=quantity)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.reader.dead_letters(limit)

    def count_dead_letters(self) -> int:
        return self.reader.count_dead_letters()

    def health(self) -> None:
        self.reader.health()

    def close(self) -> None:
        self.sink.close()
        self.reader.close()

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
