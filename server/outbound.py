"""The one gate for everything the server sends out: webhooks, e-mail, and later data targets.

A target's host name is resolved here, every address it resolves to is checked, and the
connection goes to the checked address (never resolved again, so DNS rebinding cannot slip a
private address in between). Loopback, link-local, private, shared (CGNAT), multicast, reserved
and unspecified addresses are refused unless the administrator lists them in
``SUITCASE_SERVER_OUTBOUND_ALLOW`` (cities do run services on private addresses). Redirects are
never followed: a redirect is a failed delivery. What is stored or shown of a failure is generic
("could not connect"), so a webhook URL cannot be used to learn which internal ports are open.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kits.errors import SuitcaseError

__all__ = [
    "Address",
    "DeliveryFailed",
    "OutboundPolicy",
    "OutboundRefused",
    "post_json",
    "smtp_connection",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
# The Carrier-grade NAT range is neither "private" nor "global" to Python: refuse it explicitly.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class OutboundRefused(SuitcaseError):
    """The target is on a network the server does not send to (the policy said no)."""


class DeliveryFailed(SuitcaseError):
    """The target could not be reached or did not accept; the message is safe to store and show."""


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses the server may connect to.

    Args:
        allow: networks (``10.20.0.0/16``) or addresses an administrator allows although they are
            loopback, private or link-local.
        resolver: host, port -> addresses; injected so tests control name resolution.
    """

    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    resolver: Resolver = _system_resolver

    @classmethod
    def from_settings(cls, allow: Iterable[str], resolver: Resolver | None = None) -> OutboundPolicy:
        """Build the policy from the ``outbound_allow`` setting (CIDRs or single addresses)."""
        networks = []
        for item in allow:
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise OutboundRefused(
                    f"outbound allow-list entry {item!r} is not an address or network: write it as "
                    "10.20.0.0/16 or 10.20.0.5 in SUITCASE_SERVER_OUTBOUND_ALLOW"
                ) from None
        return cls(tuple(networks), resolver or _system_resolver)

    def allowed(self, address: Address) -> bool:
        """Whether the server may connect to ``address``."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allow):
            return True
        return address.is_global and not (
            address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
        )

    def resolve(self, host: str, port: int) -> Address:
        """The checked address to connect to for ``host``: every address it resolves to must be
        allowed (a name answering one public and one private address is refused)."""
        try:
            literal: Address | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses: list[Address] = [literal]
        else:
            try:
                addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)]
            except (OSError, UnicodeError, ValueError):
                raise DeliveryFailed(f"the host name {host!r} does not resolve") from None
            if not addresses:
                raise DeliveryFailed(f"the host name {host!r} does not resolve")
        refused = [a for a in addresses if not self.allowed(a)]
        if refused:
            raise OutboundRefused(
                f"{host} is on a loopback, private, link-local or reserved network, where the server "
                "does not send: use a public address, or have an administrator add the network to "
                "SUITCASE_SERVER_OUTBOUND_ALLOW"
            )
        return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a checked address, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address; the certificate is checked against the host name."""

    def __init__(self, host: str, port: int, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post_json(policy: OutboundPolicy, url: str, body: Any, *, timeout: float = 10.0) -> int:
    """POST ``body`` as JSON to ``url`` through the policy; return the 2xx status.

    Raises:
        OutboundRefused: the URL is not http(s) or points where the server does not send.
        DeliveryFailed: no connection, a timeout, a redirect (never followed) or a non-2xx answer;
            the message says which in general terms only.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("a webhook URL must be http:// or https:// with a host name")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused("the webhook URL's port is not a number from 1 to 65535") from None
    address = policy.resolve(parts.hostname, port)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(parts.hostname, port, address, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "iot-suitcase"},
        )
        status = connection.getresponse().status
    except ssl.SSLError:
        raise DeliveryFailed("the TLS handshake failed (certificate not valid for the host?)") from None
    except (OSError, http.client.HTTPException):
        # One message for refused, reset and timed out alike: the difference would map ports.
        raise DeliveryFailed("could not deliver: no answer from the receiver") from None
    finally:
        connection.close()
    if 300 <= status < 400:
        raise DeliveryFailed(f"the receiver answered {status} (a redirect): redirects are not followed")
    if not 200 <= status < 300:
        raise DeliveryFailed(f"the receiver answered HTTP {status}")
    return status


def smtp_connection(policy: OutboundPolicy, host: str, port: int, *, timeout: float = 10.0) -> smtplib.SMTP:
    """An SMTP connection to ``host`` through the policy (connected to the checked address).

    Raises:
        OutboundRefused: the mail server is on a network the server does not send to.
        DeliveryFailed: no connection.
    """
    address = policy.resolve(host, port)
    smtp = smtplib.SMTP(timeout=timeout)
    smtp._host = host  # type: ignore[attr-defined]  # STARTTLS checks the certificate against the name, not the address
    try:
        smtp.connect(str(address), port)
    except OSError:
        smtp.close()
        raise DeliveryFailed("could not connect to the mail server") from None
    return smtp
