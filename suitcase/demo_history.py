"""What ``suitcase demo`` puts in place on first start so every page has something to show.

- The registry: an organisation ``open-lab`` of kind ``demo`` (the pages label all its data
  "simulated"), a kit, one public deployment per emulated Pi, each for the use-case its scenario
  shows (indoor climate in an office, street air, a waste bin's fill level, passes on a footpath,
  an office's power at its distribution board), with the parameters its derived quantities need
  (the bin's depth, the clamp's ratio and the mains voltage) in its device configuration, a demo
  login, and a kiosk token for the Open Lab screen.
- The store: several days of scenario history per Pi, one reading every 5 minutes, computed from the
  same scenario the Pi's emulated chips read (``edge.emulated.scenarios``: what its drivers report
  over each step where they count or take an RMS) and written in big
  batches through the store's ``write`` (the embedded store, or the gateway's sink). History is
  written only when the Pi has none yet.

Marking: the history is simulated because its organisation is a demo organisation
(``OrganisationRow.kind == "demo"``); every deployment's notes say so as well. Sensor names are
the live ones, so charts run on seamlessly from history into live readings.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sqlmodel import Session, col, select

from edge.emulated.scenarios import ReadOver, get_scenario
from gateway.store import DeviceSeen
from kits.catalog import Catalog
from kits.models import DeviceConfig
from kits.wire import Record
from server.db import create_registry_engine, init_registry
from server.device_config import current
from server.security import hash_password, hash_secret, new_token
from server.tables import (
    ApiTokenRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceConfigRow,
    DeviceRow,
    KitPiRow,
    KitRow,
    MembershipRow,
    OrganisationRow,
    UserRow,
)

__all__ = [
    "DEMO_EMAIL",
    "DEMO_KIND",
    "HISTORY_DAYS",
    "PART_QUANTITIES",
    "DemoAccess",
    "HistoryTarget",
    "backfill_history",
    "reissue_token",
    "seed_registry",
]

DEMO_KIND = "demo"
DEMO_EMAIL = "demo@open-lab.example"
HISTORY_DAYS = 4
# One reading every 5 minutes (12 per hour: the hourly means of the public page are well covered);
# more Pis get a coarser step so the backfill stays a few seconds, never coarser than 15 minutes.
HISTORY_STEP_S = 300.0
HISTORY_BUDGET = 3000  # scenario evaluations across all Pis (each costs ~0.4 ms)
# Quantities the demo writes history for, per part: what its scenario models.
PART_QUANTITIES: dict[str, tuple[str, ...]] = {
    "bme280": ("temperature", "humidity", "pressure"),
    "pmsa003i": ("pm1_0", "pm2_5", "pm10"),
    "scd4x": ("co2", "temperature", "humidity"),
    "sgp40": ("voc_index",),
    "veml7700": ("illuminance",),
    "vl53l1x": ("distance", "passes"),
    "ads1x15": ("voltage_a0",),
}
# Aarhus, around the Open Lab.
_BASE = (56.1572, 10.2107)
_BATCH = 50_000


@dataclass(frozen=True)
class DemoAccess:
    """How a person gets into the demo: the login, the kiosk token, the public deployments."""

    email: str
    password: str
    kiosk_token: str
    deployments: tuple[int, ...]
    first_start: bool
    # device -> the version of its configuration the demo made (its derived quantities), which the
    # emulated Pi starts with, as a Pi the server had pushed it to would (the demo writes that
    # version itself and queues no config command: else the fleet page says "newest is 1" for ever).
    config_versions: dict[str, int] = field(default_factory=dict)


# The demo bin's depth: the bin-filling scenario's empty level (edge.emulated.scenarios.BinFilling).
BIN_DEPTH_MM = 900.0
# The demo board's clamp (edge.emulated.scenarios.OfficePower): an SCT-013-030 on 230 V mains.
CLAMP = {"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30.0, "mains_v": 230.0}


class _Shows(NamedTuple):
    """What a demo Pi's deployment shows: its use-case, its name on the pages, and the derived
    section of its device config (as an operator would set it; applied on read by server.derived)."""

    use_case: str
    name: str
    derived: list[dict[str, object]]


_SHOWS: dict[str, _Shows] = {
    "office-day": _Shows("indoor-climate", "Office climate", []),
    "street-air": _Shows("citizen-air-quality", "Street air", []),
    "bin-filling": _Shows("waste-bin-fill", "Waste bin", [{"kind": "fill_level", "depth_mm": BIN_DEPTH_MM}]),
    "footpath": _Shows("park-visitor-counting", "Footpath counter", []),
    "office-power": _Shows("energy-metering", "Office power", [CLAMP]),
}
_OTHER = _Shows("", "Office climate", [])


def _use_case(catalog: Catalog, config: DeviceConfig) -> str | None:
    quantities = {q for s in config.sensors for q in PART_QUANTITIES.get(s.part, ())}
    case = _SHOWS.get(config.scenario, _OTHER).use_case
    if case in catalog.use_cases:
        return case
    wanted = "pm2_5" if "pm2_5" in quantities else "temperature"
    preferred = "indoor-climate" if wanted == "temperature" else None
    if preferred in catalog.use_cases:
        return preferred
    found = sorted(c.id for c in catalog.use_cases.values() if wanted in c.quantities)
    return found[0] if found else None


def seed_registry(
    registry_url: str, catalog: Catalog, org: str, configs: Sequence[DeviceConfig], since: float, now: float
) -> DemoAccess:
    """Create (once) the demo organisation, kit, devices and public deployments; every start makes
    a new demo password and kiosk token (the old token is revoked), since only hashes are kept."""
    engine = create_registry_engine(registry_url)
    try:
        init_registry(engine, catalog)
        with Session(engine) as s:
            org_row = s.exec(select(OrganisationRow).where(OrganisationRow.slug == org)).first()
            first = org_row is None
            if org_row is None:
                org_row = OrganisationRow(slug=org, name="Open Lab (demo)", kind=DEMO_KIND, created_at=now)
                s.add(org_row)
                s.flush()
            assert org_row.id is not None
            kit = s.exec(select(KitRow).where(KitRow.inventory_code == "OPEN-LAB-DEMO")).first()
            if kit is None:
                kit = KitRow(
                    org_id=org_row.id,
                    inventory_code="OPEN-LAB-DEMO",
                    profile_id="starter",
                    status="deployed",
                    notes="simulated: the demo's emulated suitcase",
                    created_at=now,
                )
                s.add(kit)
                s.flush()
            assert kit.id is not None
            deployment_ids: list[int] = []
            for index, config in enumerate(configs):
                device = s.get(DeviceRow, config.device)
                if device is None:
                    s.add(
                        DeviceRow(
                            id=config.device,
                            org_id=org_row.id,
                            kit_id=kit.id,
                            pi_index=index + 1,
                            registered_at=since,
                            kit_profile=config.kit_profile,
                        )
                    )
                    s.add(KitPiRow(kit_id=kit.id, pi_index=index + 1, device_id=config.device))
                    s.flush()
                link = s.exec(
                    select(DeploymentDeviceRow).where(
                        DeploymentDeviceRow.device_id == config.device,
                        col(DeploymentDeviceRow.to_t).is_(None),
                    )
                ).first()
                if link is not None:
                    deployment_ids.append(link.deployment_id)
                    continue
                street = config.scenario == "street-air"
                kind = _SHOWS.get(config.scenario, _OTHER).name
                dep = DeploymentRow(
                    org_id=org_row.id,
                    kit_id=kit.id,
                    name=f"{kind}, demo Pi {index + 1}",
                    use_case_id=_use_case(catalog, config),
                    lat=_BASE[0] + 0.004 * (index % 4),
                    lon=_BASE[1] + 0.006 * (index // 4) + 0.003 * (index % 2),
                    address=f"Open Lab, demo Pi {index + 1}",
                    environment="outdoor"
                    if street or config.scenario in ("bin-filling", "footpath")
                    else "indoor",
                    starts_at=since,
                    public=True,
                    created_at=now,
                    notes=f"simulated: emulated sensors, scenario {config.scenario}, with backfilled history",
                )
                s.add(dep)
                s.flush()
                assert dep.id is not None
                s.add(DeploymentDeviceRow(deployment_id=dep.id, device_id=config.device, from_t=since))
                deployment_ids.append(dep.id)
                derived = _SHOWS.get(config.scenario, _OTHER).derived
                if derived and current(s, config.device) is None:
                    # The bin's depth, the clamp's ratio and mains voltage, as an operator would set
                    # them: the derived section of the device's versioned configuration.
                    s.add(
                        DeviceConfigRow(
                            device_id=config.device,
                            version=1,
                            body={"derived": derived},
                            created_at=now,
                            created_by="demo",
                            note=f"simulated: the demo {kind.lower()}'s derived quantities",
                        )
                    )
            versions = {
                c.device: made.version
                for c in configs
                if (made := current(s, c.device)) is not None and made.created_by == "demo"
            }
            password = secrets.token_urlsafe(9)
            user = s.exec(select(UserRow).where(UserRow.email == DEMO_EMAIL)).first()
            if user is None:
                user = UserRow(email=DEMO_EMAIL, name="Open Lab demo", password_hash="", created_at=now)
            user.password_hash = hash_password(password)
            s.add(user)
            s.flush()
            assert user.id is not None
            if s.get(MembershipRow, (user.id, org_row.id)) is None:
                s.add(MembershipRow(user_id=user.id, org_id=org_row.id, role="admin"))
            token = reissue_token(
                s,
                org_row.id,
                "Open Lab kiosk (demo)",
                now,
                role="viewer",
                kind="kiosk",
                deployment_ids=deployment_ids,
            )
            s.commit()
        return DemoAccess(DEMO_EMAIL, password, token, tuple(deployment_ids), first, versions)
    finally:
        engine.dispose()


def reissue_token(
    s: Session,
    org_id: int,
    name: str,
    now: float,
    *,
    role: str,
    kind: str,
    deployment_ids: Sequence[int] = (),
) -> str:
    """Revoke the organisation's tokens called ``name`` of ``kind`` and add a new one (the caller
    commits); return it. A demo makes its tokens anew on each start: only their hashes are kept."""
    for old in s.exec(
        select(ApiTokenRow).where(
            ApiTokenRow.org_id == org_id,
            ApiTokenRow.name == name,
            ApiTokenRow.kind == kind,
            col(ApiTokenRow.revoked_at).is_(None),
        )
    ).all():
        old.revoked_at = now
        s.add(old)
    token = new_token()
    s.add(
        ApiTokenRow(
            name=name,
            token_hash=hash_secret(token),
            prefix=token[:10],
            org_id=org_id,
            role=role,
            kind=kind,
            deployment_ids=list(deployment_ids),
            created_at=now,
        )
    )
    return token


class HistoryTarget(Protocol):
    """Where history goes: written as the gateway writes, and its devices seen (to skip them)."""

    def write(self, records: Sequence[Record]) -> None: ...
    def devices(self) -> list[DeviceSeen]: ...


def backfill_history(
    store: HistoryTarget,
    configs: Sequence[DeviceConfig],
    org: str,
    now: float,
    *,
    days: float = HISTORY_DAYS,
    step_s: float | None = None,
) -> int:
    """Write ``days`` of scenario history before ``now`` for each Pi without older readings; return
    how many readings were written."""
    seen = {d.device: d.first_seen for d in store.devices()}
    start = now - days * 86400.0
    if step_s is None:
        step_s = min(900.0, max(HISTORY_STEP_S, days * 86400.0 * max(1, len(configs)) / HISTORY_BUDGET))
    written = 0
    batch: list[Record] = []
    for index, config in enumerate(configs):
        if config.device in seen and seen[config.device] < now - 3600:
            continue  # history is already there (a later start of the same workdir)
        scenario = get_scenario(config.scenario, seed=index)
        wanted = [(s.name, q) for s in config.sensors for q in PART_QUANTITIES.get(s.part, ())]
        t = start - start % step_s
        over = scenario.read_over if isinstance(scenario, ReadOver) else None
        while t < now:
            # Counted passes and RMS volts are what the drivers report over a time, not an instant.
            values = over(t - step_s, t) if over is not None else scenario(t)
            for sensor, quantity in wanted:
                if quantity in values:
                    batch.append(Record(org, config.device, sensor, quantity, round(values[quantity], 3), t))
            if len(batch) >= _BATCH:
                store.write(batch)
                written += len(batch)
                batch = []
            t += step_s
    if batch:
        store.write(batch)
        written += len(batch)
    return written
