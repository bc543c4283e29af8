"""What a running server holds open: settings, registry engine, catalogue, store and clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from gateway.store import OrgRoutedReader, Reader, open_reader
from kits.catalog import Catalog, load_catalog
from kits.errors import ConfigError, SuitcaseError
from server.alert_changes import SeriesChanges
from server.bounded import RateLimiter, TtlCache
from server.broker_admin import BrokerAdmin
from server.db import create_registry_engine, init_registry
from server.outbound import OutboundPolicy
from server.security import GuessLimiter
from server.settings import ServerSettings
from server.shared import SharedGuessLimiter, SharedRateLimiter, replica_name

__all__ = ["Clock", "GuessCounter", "Resources", "StartLimiter", "open_resources", "open_store_checked"]

Clock = Callable[[], float]


class GuessCounter(Protocol):
    """Counts failed guesses per client (``server.security.GuessLimiter`` in memory,
    ``server.shared.SharedGuessLimiter`` across replicas)."""

    def retry_after(self, key: str) -> float: ...
    def failed(self, key: str) -> None: ...


class StartLimiter(Protocol):
    """Limits starts per client (``server.bounded.RateLimiter``, ``server.shared.SharedRateLimiter``)."""

    def take(self, key: str) -> float: ...


@dataclass(frozen=True, slots=True)
class Resources:
    """The open resources of one app instance (kept on ``app.state.resources``)."""

    settings: ServerSettings
    engine: Engine
    catalog: Catalog
    store: Reader
    clock: Clock = time.time
    guesses: GuessCounter = field(default_factory=lambda: GuessLimiter(10, time.time))
    broker: BrokerAdmin | None = None
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    exports: StartLimiter = field(default_factory=lambda: RateLimiter(6, time.time))
    # Per replica, by design: a cache of computed public figures (docs/architecture.md).
    figures: TtlCache[Any] = field(default_factory=lambda: TtlCache(300.0, time.time))
    replica: str = field(default_factory=replica_name)  # this process, on leases it takes
    # What the alert rounds proved about series changing (server.alert_changes), per replica.
    changes: SeriesChanges = field(default_factory=SeriesChanges)
    # Per replica: the fleet page's index of every device, (domain time built, entries) per set of
    # organisations; expires on a monotonic clock (the domain clock may stand still in tests),
    # cleared when a request changes the registry (server.api.deps.get_session); past its age, and
    # for up to fleet_cache_stale_s more, pages show it while a new one is read in the background.
    fleet_index: TtlCache[Any] = field(default_factory=lambda: TtlCache(0.0, time.monotonic, 64))

    def close(self) -> None:
        """Close the broker admin client, the store and the registry engine."""
        self.fleet_index.close()  # its refresh reads the store: stopped first
        if self.broker is not None:
            self.broker.close()
        self.store.close()
        self.engine.dispose()


def open_store_checked(url: str, setting: str = "--store or SUITCASE_SERVER_STORE") -> Reader:
    """Open the store's read side at ``url`` and probe it once, or refuse with the fix.

    Raises:
        ConfigError: the scheme is unknown, an option is wrong, or the store does not answer,
            refuses the credentials or lacks its database; the message names the setting.
    """
    shown = url.split("?", 1)[0]  # options may hold a password or token
    try:
        store = open_reader(url)
    except (SuitcaseError, OSError) as exc:
        raise ConfigError(
            f"store {shown!r} cannot be opened ({exc}): fix the setting {setting}: a file path, "
            "sqlite:///path, influxdb1://host:8086?... or influxdb://host:8086?token=..."
        ) from exc
    try:
        store.health()
    except (SuitcaseError, OSError) as exc:
        store.close()
        raise ConfigError(f"store {shown!r} is not usable: {exc} (the setting {setting})") from exc
    return store


def open_resources(
    settings: ServerSettings, clock: Clock = time.time, monotonic: Clock = time.monotonic
) -> Resources:
    """Load the catalogue, create and fill the registry tables, and open the store.

    ``clock`` is the domain's time (UTC epoch seconds); ``monotonic`` measures how old cached
    values are.

    Raises:
        ConfigError: the catalogue, the registry database or the store is not usable; the message
            says which and how to fix it.
    """
    catalog = load_catalog(settings.catalog_dir)
    engine = create_registry_engine(settings.registry_url)
    try:
        init_registry(engine, catalog, upgrade=settings.environment == "development")
        store = open_store_checked(settings.store)
        if settings.org_stores:
            own: dict[str, Reader] = {}
            try:
                for org, url in sorted(settings.org_stores.items()):
                    own[org] = open_store_checked(url, f"org_stores[{org!r}] (SUITCASE_SERVER_ORG_STORES)")
            except BaseException:
                for reader in (store, *own.values()):
                    reader.close()
                raise
            store = OrgRoutedReader(store, own)
    except BaseException:
        engine.dispose()
        raise
    return Resources(
        settings=settings,
        engine=engine,
        catalog=catalog,
        store=store,
        clock=clock,
        guesses=SharedGuessLimiter(engine, settings.guess_limit_per_min, clock),
        outbound=OutboundPolicy.from_settings(settings.outbound_allow),
        exports=SharedRateLimiter(engine, settings.export_per_min, clock),
        figures=TtlCache(settings.public_cache_s, clock),
        fleet_index=TtlCache(
            settings.fleet_cache_ttl_s, monotonic, 64, stale_s=settings.fleet_cache_stale_ttl_s
        ),
    )
