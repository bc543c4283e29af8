"""The per-device series cap: sensor names are free text, so one device could create unlimited series.

A series is (org, device, sensor, quantity). A message that would take its device past the cap is
refused whole (its readings stay together) and dead-lettered as ``series_limit``; readings of
series the device already has always pass. The count is kept in memory per gateway process, for
the most recently seen ``max_devices`` devices: a restarted gateway, or a device forgotten by
then, starts counting again (the cap bounds the growth rate, not a lifetime total).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from kits.errors import WireError
from kits.wire import Record

__all__ = ["DEFAULT_MAX_DEVICES", "DEFAULT_MAX_SERIES_PER_DEVICE", "SeriesCap", "SeriesLimit"]

# A full kit has about 30 series; this leaves room for any real device and stops a runaway one.
DEFAULT_MAX_SERIES_PER_DEVICE = 1000
DEFAULT_MAX_DEVICES = 100_000


class SeriesLimit(WireError):
    """A message would take its device past the gateway's series cap."""

    code = "series_limit"


class SeriesCap:
    """Counts each device's series and refuses a message that would create one too many.

    Args:
        limit: the most series one device may have.
        max_devices: how many devices are remembered (least recently seen forgotten first).
    """

    def __init__(self, limit: int = DEFAULT_MAX_SERIES_PER_DEVICE, max_devices: int = DEFAULT_MAX_DEVICES):
        if limit < 1:
            raise ValueError(f"the series cap is {limit}: use 1 or more series per device")
        self.limit = limit
        self.max_devices = max_devices
        self._series: OrderedDict[tuple[str, str], set[tuple[str, str]]] = OrderedDict()

    def admit(self, org: str, device: str, records: Sequence[Record]) -> None:
        """Count the series of one message's ``records`` (all of ``org``/``device``).

        Raises:
            SeriesLimit: the message's new series would take the device past the cap; nothing of
                it is counted.
        """
        key = (org, device)
        known = self._series.get(key)
        if known is None:
            known = self._series[key] = set()
            if len(self._series) > self.max_devices:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(key)
        new = {(r.sensor, r.quantity) for r in records} - known
        if not new:
            return
        if len(known) + len(new) > self.limit:
            raise SeriesLimit(
                f"device {device} of {org} has {len(known)} series and this pack adds {len(new)}: over the "
                f"gateway's cap of {self.limit} series per device (SUITCASE_GATEWAY_MAX_SERIES_PER_DEVICE); "
                "check the device's sensor names, or raise the cap"
            )
        known |= new
