"""Retention and downsampling as settings: how long each org keeps raw readings and rollups.

Every store keeps per series the raw readings and windows (count, sum, min, max) of 1, 5 and 15
minutes ("minute windows") and of 1, 3 and 12 hours and 1 day ("hour windows"); the embedded
SQLite store also windows of 5 and 30 seconds, kept as long as the raw readings and two days at
most. The settings say,
per organisation (with a default for all), how many days the raw readings, the minute windows and
the hour windows are kept (``null``: forever). A YAML file (``retention.yaml``)::

    default:
      raw_days: 90
      minute_days: 730
      hour_days: null     # forever
    orgs:
      aarhus:
        raw_days: 30

Each backend applies them its own way (:data:`APPLIERS`, one module per backend, picked by the
store URL's scheme): the embedded SQLite store records them and deletes what they no longer keep
(its rollups are maintained on write); InfluxDB 1.x gets retention policies and continuous queries
(:mod:`gateway.store.influxdb1_rollups`). ``suitcase gateway retention show|apply`` is the tool;
``suitcase gateway run --retention FILE`` applies the file on start and every hour.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from pydantic import BaseModel, ConfigDict, Field

from gateway.store.base import StoreError
from kits.config_file import load_yaml_model, parse_yaml_model
from kits.errors import SuitcaseError

__all__ = [
    "APPLIERS",
    "RECIPES",
    "Applied",
    "Retention",
    "RetentionLoop",
    "RetentionSettings",
    "RetentionTarget",
    "load_retention",
    "open_target",
    "parse_retention",
]


class Retention(BaseModel):
    """How many days one org keeps each tier; ``None`` keeps it forever."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raw_days: float | None = Field(
        default=None, gt=0, description="raw readings (and the embedded store's 5- and 30-second windows)"
    )
    minute_days: float | None = Field(default=None, gt=0, description="1-, 5- and 15-minute windows")
    hour_days: float | None = Field(default=None, gt=0, description="1-, 3-, 12-hour and 1-day windows")

    def describe(self, *, fine: bool = False) -> str:
        """The retention in words; ``fine``: the store keeps 5- and 30-second windows (SQLite),
        as long as the raw readings."""

        def days(value: float | None) -> str:
            return "forever" if value is None else f"{value:g} d"

        raw = "raw and 5-, 30-s windows" if fine else "raw"
        return (
            f"{raw} {days(self.raw_days)}, minute windows (1, 5, 15 min) {days(self.minute_days)}, "
            f"hour windows (1, 3, 12 h, 1 d) {days(self.hour_days)}"
        )


class RetentionSettings(BaseModel):
    """The retention of every org: ``default``, and ``orgs`` overriding it per org slug."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Retention = Field(default_factory=Retention)
    orgs: dict[str, Retention] = Field(default_factory=dict)

    def for_org(self, org: str) -> Retention:
        """Return the retention of ``org`` (its own, or the default)."""
        return self.orgs.get(org, self.default)


def load_retention(path: str | Path) -> RetentionSettings:
    """Read the retention settings from a YAML file.

    Raises:
        ConfigError: the file is missing or wrong; the message names the file, line, key and fix.
    """
    return load_yaml_model(Path(path), RetentionSettings)


def parse_retention(text: str, source: str = "<retention>") -> RetentionSettings:
    """Parse retention settings from YAML text (see :func:`load_retention`)."""
    return parse_yaml_model(text, RetentionSettings, source=source)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying the settings did to one store: per org its retention and the changes made."""

    store: str
    orgs: dict[str, Retention]
    actions: tuple[str, ...]
    deleted: int = 0


class RetentionTarget(Protocol):
    """A store that applies retention settings (one per backend, :data:`APPLIERS`)."""

    def apply(self, settings: RetentionSettings, now: float) -> Applied:
        """Make the store keep what ``settings`` say, for every org it holds or they name."""
        ...

    def show(self) -> dict[str, Retention]:
        """Return the retention each org of the store has now."""
        ...

    def close(self) -> None: ...


log = logging.getLogger(__name__)

# URL scheme -> "module:factory(url) -> RetentionTarget". One line per backend.
APPLIERS: dict[str, str] = {
    "sqlite": "gateway.store.sqlite_retention:from_url",
    "influxdb1": "gateway.store.influxdb1_rollups:from_url",
}

# Backends whose retention is set up by hand, with the recipe to follow.
RECIPES: Mapping[str, str] = {
    "influxdb": "README.md, 'Retention and downsampling' (InfluxDB 2.x and 3.x: buckets and tasks)",
}


def open_target(url: str) -> RetentionTarget:
    """Open the retention side of the store at ``url`` (a sink or store URL, or a plain path).

    Raises:
        StoreError: the backend has no retention tool (the message names the recipe to follow).
    """
    scheme = url.partition("://")[0] if "://" in url else "sqlite"
    target = APPLIERS.get(scheme)
    if target is None:
        recipe = RECIPES.get(scheme)
        if recipe is not None:
            raise StoreError(
                f"{url.split('?', 1)[0]}: the retention of {scheme}:// stores is set up by hand: "
                f"follow {recipe}"
            )
        raise StoreError(
            f"store URL {url.split('?', 1)[0]!r} has an unknown scheme {scheme!r}: use "
            f"{' or '.join(s + '://...' for s in sorted(APPLIERS))}, or a plain file path"
        )
    module_name, _, attr = target.partition(":")
    factory = cast(Callable[[str], RetentionTarget], getattr(importlib.import_module(module_name), attr))
    return factory(url)


class RetentionLoop:
    """Applies retention settings to stores now and every ``every_s`` seconds, in a thread.

    A failure (a store down) is logged and retried at the next turn; the gateway goes on writing.
    A store whose backend has no retention tool is named once, with its recipe.
    """

    def __init__(
        self,
        settings: RetentionSettings,
        urls: list[str],
        *,
        every_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.every_s = every_s
        self.clock = clock
        self.urls: list[str] = []
        for url in urls:
            scheme = url.partition("://")[0] if "://" in url else "sqlite"
            if scheme in APPLIERS:
                self.urls.append(url)
            else:
                log.warning(
                    "store %s: retention not applied by the gateway: %s",
                    url.split("?", 1)[0],
                    RECIPES.get(scheme, "no retention tool for this backend"),
                )
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def run_once(self) -> list[Applied]:
        """Apply the settings to every store once; return what was done (failures are logged)."""
        done: list[Applied] = []
        for url in self.urls:
            try:
                target = open_target(url)
                try:
                    applied = target.apply(self.settings, self.clock())
                finally:
                    target.close()
            except SuitcaseError as exc:
                log.error(
                    "retention of %s not applied (%s); retrying in %.0f s",
                    url.split("?", 1)[0],
                    exc,
                    self.every_s,
                )
                continue
            for action in applied.actions:
                log.info("retention of %s: %s", applied.store, action)
            if applied.deleted:
                log.info(
                    "retention of %s: %d readings past their retention deleted",
                    applied.store,
                    applied.deleted,
                )
            done.append(applied)
        self.runs += 1
        return done

    def _run(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self.every_s):
                return

    def start(self) -> None:
        if self.urls:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)
