"""The world of the page tests: two municipalities and GovTech in the registry, readings in the store.

Built directly in the registry (not through the API) so a browser test starts in well under a
second. ``catalog_dir`` adds a test-only air-quality kit profile and use-case to the real
catalogue, so the public page has PM2.5 and PM10 to show.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from gateway.store import SqliteStore
from kits.catalog import CATALOG_DIR
from kits.wire import Record
from server.security import hash_password, hash_secret, new_token
from server.tables import (
    AlertRow,
    AlertRuleRow,
    ApiTokenRow,
    CalibrationRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceRow,
    KitPiRow,
    KitRow,
    LoanRow,
    MembershipRow,
    OrganisationRow,
    UserRow,
)

__all__ = ["PASSWORD", "Clock", "WebWorld", "build_web_world", "catalog_with_air", "pm_readings"]

PASSWORD = "correct horse battery"
EXTRA = Path(__file__).parent / "catalog_extra"


class Clock:
    """A clock the test moves: ``clock()`` is ``clock.now``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def catalog_with_air(tmp_path: Path) -> Path:
    """The real catalogue plus the test-only air-quality kit profile and use-case."""
    root = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    shutil.copy(EXTRA / "air.yaml", root / "kits" / "air.yaml")
    shutil.copy(EXTRA / "street-air-quality.yaml", root / "usecases" / "street-air-quality.yaml")
    return root


@dataclass
class WebWorld:
    now: float
    orgs: dict[str, int] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, int] = field(default_factory=dict)
    kiosk_token: str = ""
    devices: dict[str, str] = field(default_factory=dict)


def pm_readings(device: str, now: float, org: str = "aarhus") -> list[Record]:
    """Eight days of PM2.5, PM10 and humidity every 5 minutes, with a gap that leaves one local
    day (2025-06-12 in Copenhagen, for the tests' ``now``) with 12 hourly means: below 75 %."""
    out: list[Record] = []
    start = math.floor((now - 8 * 86400) / 3600) * 3600
    gap_from = 1_749_679_200.0 + 6 * 3600  # 2025-06-12 00:00 CEST is 2025-06-11T22:00Z; gap 06:00-18:00 local
    gap_to = gap_from + 12 * 3600
    t = start
    i = 0
    while t < now:
        if not gap_from <= t < gap_to:
            pm25 = 9.0 + 7.0 * math.sin(i / 17.0) + (i % 7) * 0.9
            out.append(Record(org, device, "pmsa003i", "pm2_5", round(pm25, 3), t))
            out.append(Record(org, device, "pmsa003i", "pm10", round(pm25 * 1.7 + 3, 3), t))
            out.append(Record(org, device, "bme280", "humidity", 70.0 + 20.0 * math.sin(i / 40.0), t))
        t += 300.0
        i += 1
    return out


def climate_readings(
    device: str, now: float, org: str, hours: float = 26, step: float = 60.0
) -> list[Record]:
    out: list[Record] = []
    t = now - hours * 3600
    i = 0
    while t < now - 20:
        out.append(Record(org, device, "bme280", "temperature", 21.0 + 2.5 * math.sin(i / 90.0), t))
        out.append(Record(org, device, "bme280", "humidity", 45.0 + 10 * math.sin(i / 60.0), t))
        out.append(Record(org, device, "bme280", "pressure", 1013.0 + math.sin(i / 300.0), t))
        t += step
        i += 1
    return out


def build_web_world(engine: Engine, store: SqliteStore, now: float) -> WebWorld:
    """Fill the registry and the store; return the ids, logins and the kiosk token."""
    world = WebWorld(now=now)
    hashed = hash_password(PASSWORD)
    with Session(engine) as s:
        for slug, name, kind in (
            ("govtech", "GovTech Centre", "centre"),
            ("aarhus", "Aarhus Kommune", "municipality"),
            ("odense", "Odense Kommune", "municipality"),
        ):
            org = OrganisationRow(slug=slug, name=name, kind=kind, created_at=now - 90 * 86400)
            s.add(org)
            s.flush()
            assert org.id is not None
            world.orgs[slug] = org.id
        people = {
            "admin@govtech.dk": None,
            "viewer@aarhus.dk": "aarhus",
            "viewer@odense.dk": "odense",
            "operator@aarhus.dk": "aarhus",
        }
        for email, org_slug in people.items():
            user = UserRow(
                email=email,
                name=email.split("@")[0],
                password_hash=hashed,
                is_global_admin=org_slug is None,
                created_at=now - 86400,
            )
            s.add(user)
            s.flush()
            assert user.id is not None
            if org_slug is not None:
                role = "operator" if email.startswith("operator") else "viewer"
                s.add(MembershipRow(user_id=user.id, org_id=world.orgs[org_slug], role=role))
            world.users[email] = PASSWORD
        gov, aar, ode = world.orgs["govtech"], world.orgs["aarhus"], world.orgs["odense"]
        kit1 = KitRow(
            org_id=gov,
            inventory_code="GT-001",
            profile_id="starter",
            status="on_loan",
            contents_check={"Raspberry Pi 4 Model B, 2 GB": True, "microSD card, 32 GB, A1 class": False},
            contents_checked_at=now - 20 * 86400,
            created_at=now - 60 * 86400,
        )
        kit2 = KitRow(org_id=gov, inventory_code="GT-002", profile_id="starter", created_at=now - 60 * 86400)
        kit3 = KitRow(
            org_id=ode,
            inventory_code="ODE-7",
            profile_id="starter",
            status="deployed",
            created_at=now - 60 * 86400,
        )
        kit4 = KitRow(
            org_id=aar,
            inventory_code="AAR-AIR-1",
            profile_id="air",
            status="deployed",
            created_at=now - 60 * 86400,
        )
        for kit in (kit1, kit2, kit3, kit4):
            s.add(kit)
        s.flush()
        assert kit1.id and kit3.id and kit4.id
        s.add(
            LoanRow(
                kit_id=kit1.id,
                owner_org_id=gov,
                org_id=aar,
                borrower="Mette Jensen",
                starts_at=now - 40 * 86400,
                due_at=now - 3 * 86400,
            )
        )
        for kit, n in ((kit1, 3), (kit3, 3), (kit4, 1)):
            for i in range(1, n + 1):
                s.add(KitPiRow(kit_id=kit.id or 0, pi_index=i, claim_hash=hash_secret(f"claim-{kit.id}-{i}")))
        s.add(
            CalibrationRow(
                kit_id=kit1.id,
                pi_index=1,
                sensor="bme280",
                quantity="temperature",
                offset=-0.4,
                calibrated_at=now - 200 * 86400,
                due_at=now - 86400,
                version=1,
            )
        )
        devices = {
            "school": ("aarhus-school7-k3f9", aar, kit1.id, 1),
            "harbour": ("aarhus-harbour-p7q2", aar, kit4.id, 1),
            "library": ("odense-library-m2x1", ode, kit3.id, 1),
        }
        sensors_ok = [{"name": "bme280", "part": "bme280", "address": 119, "state": "ok", "failures": 0}]
        for key, (dev_id, org_id, kit_id, pi) in devices.items():
            s.add(
                DeviceRow(
                    id=dev_id,
                    org_id=org_id,
                    kit_id=kit_id,
                    pi_index=pi,
                    registered_at=now - 30 * 86400,
                    online=True,
                    status_since=now - 86400,
                    backlog=0 if key != "school" else 12,
                    sensors=sensors_ok
                    if key != "library"
                    else [
                        {
                            "name": "bme280",
                            "part": "bme280",
                            "address": 119,
                            "state": "failing",
                            "failures": 4,
                        }
                    ],
                    meta_at=now - 60,
                    agent_version="0.1.0",
                )
            )
            world.devices[key] = dev_id
        s.flush()
        deps = {
            "school": DeploymentRow(
                org_id=aar,
                kit_id=kit1.id,
                name="School 7, classroom 2.14",
                use_case_id="indoor-climate",
                lat=56.1629,
                lon=10.2039,
                address="Skolegade 7, Aarhus",
                starts_at=now - 30 * 86400,
                created_at=now,
            ),
            "harbour": DeploymentRow(
                org_id=aar,
                kit_id=kit4.id,
                name="Harbour street air",
                use_case_id="street-air-quality",
                lat=56.1530,
                lon=10.2150,
                address="Havnegade 12, 1. th., Aarhus",
                private_address=True,
                public=True,
                environment="outdoor",
                starts_at=now - 30 * 86400,
                created_at=now,
            ),
            "library": DeploymentRow(
                org_id=ode,
                kit_id=kit3.id,
                name="Odense main library",
                use_case_id="indoor-climate",
                lat=55.3959,
                lon=10.3883,
                address="Østre Stationsvej 15, Odense",
                public=True,
                starts_at=now - 30 * 86400,
                created_at=now,
            ),
        }
        for key, dep in deps.items():
            s.add(dep)
            s.flush()
            assert dep.id is not None
            world.deployments[key] = dep.id
            s.add(
                DeploymentDeviceRow(deployment_id=dep.id, device_id=devices[key][0], from_t=now - 30 * 86400)
            )
        rule = AlertRuleRow(
            org_id=aar,
            deployment_id=world.deployments["school"],
            name="Too warm",
            kind="threshold",
            params={"quantity": "temperature", "op": ">", "value": 23.0},
            created_at=now - 86400,
        )
        s.add(rule)
        s.flush()
        assert rule.id is not None
        s.add(
            AlertRow(
                rule_id=rule.id,
                org_id=aar,
                subject=devices["school"][0],
                state="firing",
                message="temperature mean 23.4 Cel > 23.0 over 15 min",
                value=23.4,
                fired_at=now - 3600,
            )
        )
        token = new_token()
        s.add(
            ApiTokenRow(
                name="Open Lab screen",
                token_hash=hash_secret(token),
                prefix=token[:10],
                org_id=aar,
                role="viewer",
                kind="kiosk",
                deployment_ids=[world.deployments["school"], world.deployments["harbour"]],
                created_at=now,
            )
        )
        world.kiosk_token = token
        s.commit()
    store.write(climate_readings(world.devices["school"], now, "aarhus"))
    store.write(pm_readings(world.devices["harbour"], now))
    store.write(climate_readings(world.devices["library"], now, "odense", hours=4, step=120.0))
    return world
