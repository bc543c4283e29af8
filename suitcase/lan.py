"""``suitcase demo --lan``: the laptop's address on the local network, and how a real Pi joins.

The demo then listens there (broker and server) instead of on loopback, makes a single-use
enrollment code per Pi that may join, and shows a QR code of its page (for the visitors' phones)
and the short command a Pi with the agent runs to join.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

import segno
from sqlmodel import Session, col, select

from kits.errors import ConfigError
from server.db import create_registry_engine
from server.security import ENROLL_PREFIX, hash_secret, new_enrollment_code
from server.tables import DeploymentRow, EnrollmentCodeRow, KitRow, OrganisationRow

__all__ = ["LanJoin", "interface_addresses", "lan_address", "make_join_codes", "qr_text"]

_SIOCGIFADDR = 0x8915
_ROUTES = Path("/proc/net/route")


def _ipv4_of(name: str) -> str | None:
    try:
        import fcntl  # not on Windows: there --lan finds no interface and needs --lan-address
    except ImportError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None  # no IPv4 address, or the interface is down
    return socket.inet_ntoa(packed[20:24])


def _default_route_interfaces(routes: Path = _ROUTES) -> list[str]:
    try:
        lines = routes.read_text().splitlines()[1:]
    except OSError:
        return []
    return [
        fields[0]
        for fields in (line.split() for line in lines)
        if len(fields) > 2 and fields[1] == "00000000"
    ]


def interface_addresses() -> dict[str, str]:
    """Interface name -> IPv4 address, for the interfaces that have one (Linux, macOS)."""
    found: dict[str, str] = {}
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return found
    for name in names:
        address = _ipv4_of(name)
        if address is not None:
            found[name] = address
    if not any(_usable(a) for a in found.values()):  # no ioctl here (macOS, Windows): ask the routes
        routed = _routed_address()
        if routed is not None:
            found["default route"] = routed
    return found


def _routed_address() -> str | None:
    """The source address of the default route: a UDP "connect" only picks the route, it sends
    nothing (the target is TEST-NET-1, which no one uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
            address: str = sock.getsockname()[0]
        except OSError:
            return None  # no route at all
    return address


def _usable(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def lan_address(
    wanted: str | None = None,
    *,
    addresses: dict[str, str] | None = None,
    default_interfaces: Iterable[str] | None = None,
) -> str:
    """The address the demo listens on with ``--lan``: ``wanted`` if this machine has it, else the
    address of the interface with the default route, else of any interface that is not loopback.

    Raises:
        ConfigError: ``wanted`` is not an address of this machine, or the machine has no network
            address at all (only loopback): the message says what to do.
    """
    addresses = interface_addresses() if addresses is None else addresses
    usable = {name: a for name, a in addresses.items() if _usable(a)}
    if wanted is not None:
        try:
            ipaddress.IPv4Address(wanted)
        except ValueError:
            raise ConfigError(f"--lan-address {wanted!r} is not an IPv4 address, e.g. 192.168.1.20") from None
        if wanted not in addresses.values():
            mine = ", ".join(f"{a} ({n})" for n, a in sorted(usable.items())) or "none but loopback"
            raise ConfigError(
                f"--lan-address {wanted} is not an address of this machine (it has: {mine}): "
                "pick one of those, or leave --lan-address out"
            )
        return wanted
    if not usable:
        raise ConfigError(
            "--lan: this machine has no network address (only loopback), so no Pi could reach it: "
            "connect it to the Open Lab's network (Wi-Fi or cable) and try again, or run the demo "
            "without --lan"
        )
    defaults = _default_route_interfaces() if default_interfaces is None else list(default_interfaces)
    for name in defaults:
        if name in usable:
            return usable[name]
    return usable[sorted(usable)[0]]


class LanJoin:
    """The codes real Pis join the demo with, and how they are shown."""

    def __init__(self, url: str, codes: list[str], deployment: str) -> None:
        self.url = url
        self.codes = codes
        self.deployment = deployment

    def command(self, code: str) -> str:
        server = self.url.rstrip("/")
        return f"suitcase edge enroll --server {server} --code {code} && suitcase edge run"

    def lines(self) -> list[tuple[str, str]]:
        rows = [("lan", f"{self.url}  (phones: scan the QR code)")]
        rows += [(f"join Pi {i + 1}", self.command(code)) for i, code in enumerate(self.codes)]
        rows.append(("joins", f"deployment {self.deployment!r}; each code works once"))
        return rows


def qr_text(url: str) -> str:
    """The QR code of ``url`` in block characters, for a terminal or a log shown on a screen."""
    buffer = io.StringIO()
    segno.make(url, error="m").terminal(out=buffer, compact=True, border=2)
    return buffer.getvalue()


def make_join_codes(
    registry_url: str, org: str, now: float, *, count: int, ttl_s: float
) -> tuple[str, list[str]]:
    """Create (once) the deployment "Open Lab table" of the demo kit and ``count`` fresh single-use
    enrollment codes for it; return the deployment's name and the codes."""
    name = "Open Lab table: visitors' Pis"
    engine = create_registry_engine(registry_url)
    try:
        with Session(engine) as s:
            org_row = s.exec(select(OrganisationRow).where(OrganisationRow.slug == org)).one()
            kit = s.exec(select(KitRow).where(KitRow.inventory_code == "OPEN-LAB-DEMO")).one()
            assert org_row.id is not None
            deployment = s.exec(
                select(DeploymentRow).where(
                    DeploymentRow.org_id == org_row.id,
                    DeploymentRow.name == name,
                    col(DeploymentRow.ends_at).is_(None),
                )
            ).first()
            if deployment is None:
                deployment = DeploymentRow(
                    org_id=org_row.id,
                    kit_id=kit.id,
                    name=name,
                    use_case_id="indoor-climate",
                    lat=56.1580,
                    lon=10.2115,
                    address="Open Lab, the table by the window",
                    environment="indoor",
                    starts_at=now,
                    public=True,
                    created_at=now,
                    notes="real Pis that visitors bring, joined with `suitcase demo --lan`",
                )
                s.add(deployment)
                s.flush()
            assert deployment.id is not None
            codes = []
            for _ in range(count):
                code = new_enrollment_code()
                assert code.startswith(ENROLL_PREFIX)
                s.add(
                    EnrollmentCodeRow(
                        code_hash=hash_secret(code),
                        org_id=org_row.id,
                        deployment_id=deployment.id,
                        created_at=now,
                        expires_at=now + ttl_s,
                        created_by="suitcase demo --lan",
                    )
                )
                codes.append(code)
            s.commit()
            return name, codes
    finally:
        engine.dispose()
