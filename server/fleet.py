"""Fleet operations that span several tables: kit visibility, binding a Pi, revoking, kit return."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlmodel import Session, col, select

from kits.errors import ConfigError
from kits.models import Calibration, DeviceConfig, DeviceSensor, KitProfile, MqttSettings
from kits.wire import build_topic
from server.broker_admin import BrokerAdmin, BrokerAdminError, DeviceAccount
from server.models import KitProfileRow
from server.security import hash_secret, new_password, new_token
from server.settings import ServerSettings
from server.tables import (
    ApiTokenRow,
    CalibrationRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceRow,
    KitPiRow,
    KitRow,
    LoanRow,
    OrganisationRow,
)

__all__ = [
    "RESET_STEPS",
    "ReturnReport",
    "active_loan",
    "bind_device",
    "current_calibrations",
    "device_slug",
    "end_deployment",
    "expire_pending",
    "issue_device",
    "kit_org_ids",
    "record_issued",
    "registered_among",
    "return_kit",
    "revoke_device",
]

log = logging.getLogger(__name__)

RESET_STEPS = (
    "Power each Pi down and take out its SD card.",
    "Delete /etc/suitcase/device.yaml (the device's id, broker password and token) from the card, "
    "or run `suitcase edge reset` on the Pi: the agent goes back to polling with its claim code.",
    "Delete the outbox (/var/lib/suitcase/outbox.db) so no reading of this loan is sent again.",
    "Check the contents against the kit's list and record the condition.",
    "The return rotated every Pi's claim code (the old labels no longer work): print the new codes "
    "shown once in this answer as labels (POST /api/v1/claims/qr) and give each Pi its new code "
    "(`pi-setup.sh --claim-code NEW-CODE`, or the claim code in its agent config).",
    "Put the SD cards back: the next borrower's staff claims each Pi by scanning its new label.",
)


def active_loan(session: Session, kit_id: int) -> LoanRow | None:
    """Return the kit's open loan, if any."""
    return session.exec(
        select(LoanRow).where(LoanRow.kit_id == kit_id, col(LoanRow.returned_at).is_(None))
    ).first()


def registered_among(session: Session, seen: Collection[tuple[str, str]]) -> set[str]:
    """Which devices of ``seen`` ((org slug, device id) pairs from the store) the registry holds,
    revoked ones and those registered under another organisation included.

    The ids of the seen organisations' devices are read as plain columns in one query (10,000 in a
    few milliseconds, instead of a 10,000-id ``IN`` list); only ids left over are looked up.
    """
    if not seen:
        return set()
    slugs = sorted({org for org, _ in seen})
    wanted = {device for _, device in seen}
    found = {
        device
        for (device,) in session.connection().execute(
            sqlalchemy.select(col(DeviceRow.id))
            .join(OrganisationRow, col(OrganisationRow.id) == col(DeviceRow.org_id))
            .where(col(OrganisationRow.slug).in_(slugs))
        )
        if device in wanted
    }
    left = sorted(wanted - found)
    for i in range(0, len(left), 500):
        found.update(session.exec(select(DeviceRow.id).where(col(DeviceRow.id).in_(left[i : i + 500]))).all())
    return found


def kit_org_ids(session: Session, kit: KitRow) -> set[int]:
    """The organisations that see ``kit``: its owner and the borrower of its open loan."""
    assert kit.id is not None
    orgs = {kit.org_id}
    loan = active_loan(session, kit.id)
    if loan is not None:
        orgs.add(loan.org_id)
    return orgs


def device_slug(org: str, deployment: str, rng: secrets.SystemRandom | None = None) -> str:
    """Return a new device id: a short slug plus a random suffix, e.g. ``aarhus-school7-k3f9``."""
    pick = rng or secrets.SystemRandom()
    words = "-".join(part for part in (org[:20], deployment[:20]) if part)
    cleaned = "".join(c if c.isalnum() else "-" for c in words.lower()).strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    suffix = "".join(pick.choice("abcdefghjkmnpqrstvwxyz23456789") for _ in range(4))
    return f"{cleaned[:50].strip('-')}-{suffix}" if cleaned else f"device-{suffix}"


def current_calibrations(session: Session, kit_id: int, pi_index: int | None = None) -> list[CalibrationRow]:
    """Return the newest version of every (pi, sensor, quantity) calibration of a kit."""
    query = select(CalibrationRow).where(CalibrationRow.kit_id == kit_id)
    if pi_index is not None:
        query = query.where(CalibrationRow.pi_index == pi_index)
    newest: dict[tuple[int, str, str], CalibrationRow] = {}
    for row in session.exec(query.order_by(col(CalibrationRow.version))).all():
        newest[(row.pi_index, row.sensor, row.quantity)] = row
    return list(newest.values())


@dataclass
class Issued:
    """What a bound device receives: its config, topics, calibration and API token."""

    device: DeviceRow
    config: DeviceConfig
    topics: dict[str, str]
    calibration: list[dict[str, Any]]
    token: str
    account: DeviceAccount = field(default_factory=lambda: DeviceAccount("", "", "", ""))
    rows: list[Any] = field(default_factory=list)


def _profile(session: Session, profile_id: str | None) -> KitProfile | None:
    if profile_id is None:
        return None
    row = session.get(KitProfileRow, profile_id)
    return row.profile() if row else None


def device_ca_pem(settings: ServerSettings) -> str | None:
    """The CA certificate devices are given to check the broker with (``mqtt_ca_file``), if any.

    Raises:
        ConfigError: the file cannot be read.
    """
    if not settings.mqtt_tls or settings.mqtt_ca_file is None:
        return None
    try:
        return settings.mqtt_ca_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"SUITCASE_SERVER_MQTT_CA_FILE {str(settings.mqtt_ca_file)!r} cannot be read ({exc}): "
            "devices need the broker's CA; give the path of its PEM file"
        ) from exc


def bind_device(
    session: Session,
    settings: ServerSettings,
    broker: BrokerAdmin | None,
    *,
    deployment: DeploymentRow,
    kit: KitRow | None,
    pi_index: int | None,
    now: float,
    interval_s: float | None = None,
) -> Issued:
    """Create a device for ``deployment`` with broker credentials, a device token and its config.

    The caller commits. The broker client is created first: when the broker refuses, nothing is
    written.

    Raises:
        BrokerAdminError: the broker could not create the device's client.
    """
    issued = issue_device(
        session,
        settings,
        deployment=deployment,
        kit=kit,
        pi_index=pi_index,
        now=now,
        interval_s=interval_s,
        profile=_profile(session, kit.profile_id if kit else None),
    )
    if broker is not None:
        broker.create_device(*issued.account)
    record_issued(session, issued)
    return issued


def issue_device(
    session: Session,
    settings: ServerSettings,
    *,
    deployment: DeploymentRow,
    kit: KitRow | None,
    pi_index: int | None,
    now: float,
    interval_s: float | None,
    profile: KitProfile | None,
    taken: set[str] | None = None,
) -> Issued:
    """Make a new device's rows, credentials and config without writing or calling the broker.

    ``taken``: device ids made earlier in the same transaction (a bulk import), kept unique too.
    :func:`record_issued` adds the rows; the broker account is ``Issued.account``.
    """
    org = session.get(OrganisationRow, deployment.org_id)
    assert org is not None and deployment.id is not None
    taken = taken if taken is not None else set()
    device_id = device_slug(org.slug, deployment.name)
    while device_id in taken or session.get(DeviceRow, device_id) is not None:
        device_id = device_slug(org.slug, deployment.name)
    taken.add(device_id)
    password = new_password()
    device = DeviceRow(
        id=device_id,
        org_id=org.id or 0,
        kit_id=kit.id if kit else None,
        pi_index=pi_index,
        mqtt_username=device_id,
        registered_at=now,
        kit_profile=profile.id if profile else None,
    )
    # A new device id has no earlier readings; what its outbox held from before the claim (stamped
    # once its clock synced) belongs to this deployment too.
    link = DeploymentDeviceRow(
        deployment_id=deployment.id, device_id=device_id, from_t=min(now, deployment.starts_at)
    )
    raw_token = new_token()
    token = ApiTokenRow(
        name=f"device {device_id}",
        token_hash=hash_secret(raw_token),
        prefix=raw_token[:10],
        org_id=device.org_id,
        role="viewer",
        kind="device",
        device_id=device_id,
        created_at=now,
    )
    interval = interval_s or 10.0
    sensors = (
        [
            DeviceSensor(name=s.sensor_name, part=s.part, address=s.address, mux=s.mux, interval_s=interval)
            for s in profile.sensors
        ]
        if profile
        else [DeviceSensor(name="bme280", part="bme280", address=0x77, interval_s=interval)]
    )
    calibration = (
        [
            {
                "sensor": c.sensor,
                "quantity": c.quantity,
                "offset": c.offset,
                "scale": c.scale,
                "version": c.version,
            }
            for c in current_calibrations(session, kit.id, pi_index)
        ]
        if kit is not None and kit.id is not None and pi_index is not None
        else []
    )
    names = {s.name for s in sensors}
    config = DeviceConfig(
        device=device_id,
        org=org.slug,
        kit_profile=profile.id if profile else None,
        mqtt=MqttSettings(
            host=settings.device_mqtt_host or settings.mqtt_host or "127.0.0.1",
            port=settings.device_mqtt_port or settings.mqtt_port,
            username=device_id,
            password=password,
            tls=settings.mqtt_tls,
            ca_pem=device_ca_pem(settings),
        ),
        sensors=sensors,
        publish_interval_s=interval,
        # The Pi's calibration travels with its first config (version 1 of the device's config).
        calibration=[Calibration.model_validate(c) for c in calibration if c["sensor"] in names],
        config_version=1,
    )
    from server.device_config import first_version

    version = first_version(device, config, now, "bind")
    topics = {kind: build_topic(org.slug, device_id, kind) for kind in ("telemetry", "status", "meta")}
    topics["commands"] = f"{topics['telemetry'].rsplit('/', 1)[0]}/cmd/+"
    return Issued(
        device=device,
        config=config,
        topics=topics,
        calibration=calibration,
        token=raw_token,
        account=DeviceAccount(org.slug, device_id, device_id, password),
        rows=[link, token, version],
    )


def record_issued(session: Session, issued: Issued) -> None:
    """Add an issued device's rows to the session (the device first: the others refer to it)."""
    session.add(issued.device)
    session.flush()
    session.add_all(issued.rows)


def end_deployment(session: Session, deployment: DeploymentRow, now: float) -> None:
    """End ``deployment`` and the membership of its devices (the caller commits)."""
    if deployment.ends_at is None or deployment.ends_at > now:
        deployment.ends_at = now
        session.add(deployment)
    for link in session.exec(
        select(DeploymentDeviceRow).where(
            DeploymentDeviceRow.deployment_id == deployment.id, col(DeploymentDeviceRow.to_t).is_(None)
        )
    ).all():
        link.to_t = now
        session.add(link)


def revoke_device(session: Session, broker: BrokerAdmin | None, device: DeviceRow, now: float) -> int:
    """Delete the device's broker client and revoke its tokens; return the tokens revoked.

    Raises:
        BrokerAdminError: the broker could not delete the client (nothing is changed then).
    """
    if broker is not None and device.mqtt_username:
        broker.delete_device(device.mqtt_username)
    device.revoked_at = device.revoked_at or now
    device.online = False
    session.add(device)
    revoked = 0
    for token in session.exec(
        select(ApiTokenRow).where(ApiTokenRow.device_id == device.id, col(ApiTokenRow.revoked_at).is_(None))
    ).all():
        token.revoked_at = now
        session.add(token)
        revoked += 1
    for link in session.exec(
        select(DeploymentDeviceRow).where(
            DeploymentDeviceRow.device_id == device.id, col(DeploymentDeviceRow.to_t).is_(None)
        )
    ).all():
        link.to_t = now
        session.add(link)
    for pi in session.exec(select(KitPiRow).where(KitPiRow.device_id == device.id)).all():
        pi.device_id, pi.pending = None, None
        session.add(pi)
    return revoked


@dataclass
class ReturnReport:
    loan_id: int | None
    deployments_ended: list[int] = field(default_factory=list)
    devices_revoked: list[str] = field(default_factory=list)
    tokens_revoked: int = 0
    reset_steps: list[str] = field(default_factory=lambda: list(RESET_STEPS))


def return_kit(session: Session, broker: BrokerAdmin | None, kit: KitRow, now: float) -> ReturnReport:
    """Close the kit's loan, end its deployments, revoke its devices' broker clients and tokens.

    The caller commits (after setting the condition).

    Raises:
        BrokerAdminError: the broker refused; the caller rolls back and the kit stays on loan.
    """
    assert kit.id is not None
    loan = active_loan(session, kit.id)
    report = ReturnReport(loan_id=loan.id if loan else None)
    if loan is not None:
        loan.returned_at = now
        session.add(loan)
    for deployment in session.exec(select(DeploymentRow).where(DeploymentRow.kit_id == kit.id)).all():
        if deployment.ends_at is None or deployment.ends_at > now:
            end_deployment(session, deployment, now)
            assert deployment.id is not None
            report.deployments_ended.append(deployment.id)
    for device in session.exec(
        select(DeviceRow).where(DeviceRow.kit_id == kit.id, col(DeviceRow.revoked_at).is_(None))
    ).all():
        try:
            report.tokens_revoked += revoke_device(session, broker, device, now)
        except BrokerAdminError:
            log.error("kit return: broker refused to delete a device", extra={"device": device.id})
            raise
        report.devices_revoked.append(device.id)
    kit.status = "in_repair" if kit.condition == "damaged" else "in_stock"
    session.add(kit)
    return report


def expire_pending(session: Session, now: float) -> int:
    """Drop every bound Pi's config that waited past its expiry without being collected.

    The poll drops an expired one too; this sweep (run with the alert rounds) also clears those of
    Pis that never poll again. Returns how many were dropped; the caller commits.
    """
    dropped = 0
    for pi in session.exec(select(KitPiRow).where(col(KitPiRow.pending).is_not(None))).all():
        if pi.pending is not None and float(pi.pending.get("expires_at", 0)) <= now:
            pi.pending = None
            session.add(pi)
            dropped += 1
    return dropped
