"""The outbound guard (``server/outbound.py``): where the server may send, on every hop."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest

from server.outbound import DeliveryFailed, OutboundPolicy, OutboundRefused, post_json
from tests.server.receivers import Hook, webhook_receiver

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # the cloud metadata service
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
]


@pytest.fixture
def hook() -> Iterator[Hook]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    """Test that loopback, private, link-local, shared, multicast, reserved and unspecified
    addresses are refused, IPv4-mapped IPv6 included."""
    policy = OutboundPolicy()
    assert not policy.allowed(ipaddress.ip_address(address))
    with pytest.raises(OutboundRefused, match="SUITCASE_SERVER_OUTBOUND_ALLOW"):
        policy.resolve(address, 80)


def test_public_addresses_pass_and_the_allow_list_opens_a_private_network() -> None:
    """Test that public addresses pass, and an allow-listed private network (a city's) does too."""
    assert OutboundPolicy().allowed(ipaddress.ip_address("93.184.216.34"))
    assert OutboundPolicy().allowed(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946"))
    city = OutboundPolicy.from_settings(["10.20.0.0/16", "192.168.7.7"])
    assert city.allowed(ipaddress.ip_address("10.20.3.4"))
    assert city.allowed(ipaddress.ip_address("192.168.7.7"))
    assert not city.allowed(ipaddress.ip_address("10.21.0.1"))
    assert not city.allowed(ipaddress.ip_address("127.0.0.1"))


def test_a_name_is_checked_after_resolution() -> None:
    """Test that a host name resolving to a private address, or to a public and a private one, is
    refused before any connection."""
    names = {"intranet.example": ["10.0.0.5"], "mixed.example": ["93.184.216.34", "127.0.0.1"]}
    policy = OutboundPolicy(resolver=lambda host, port: names[host])
    for name in names:
        with pytest.raises(OutboundRefused):
            post_json(policy, f"http://{name}/hook", {})


def test_the_connection_goes_to_the_checked_address(hook: Hook) -> None:
    """Test that the name is resolved once and the checked address connected to (a second, rebound
    answer is never used), with the URL's host name in the Host header."""
    answers = [["127.0.0.1"], ["10.9.9.9"]]
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[len(calls) - 1]

    policy = OutboundPolicy(allow=(ipaddress.ip_network("127.0.0.1/32"),), resolver=rebinding)
    port = hook.url.split(":")[2].split("/")[0]
    assert post_json(policy, f"http://hooks.example:{port}/hook", {"a": 1}) == 204
    assert calls == ["hooks.example"] and hook.posts == [{"a": 1}]
    assert hook.hosts == [f"hooks.example:{port}"]


def test_redirects_are_not_followed(hook: Hook) -> None:
    """Test that a 3xx answer is a failed delivery and its Location is never visited."""
    with webhook_receiver() as other:
        hook.answer = lambda n: (307, {"Location": other.url})
        policy = OutboundPolicy.from_settings(["127.0.0.1"])
        with pytest.raises(DeliveryFailed, match="redirects are not followed"):
            post_json(policy, hook.url, {"x": 1})
        assert len(hook.posts) == 1 and other.posts == []


def test_failures_do_not_tell_closed_from_silent_ports() -> None:
    """Test that a closed port and a port that never answers give the same message, without the
    port, so stored errors cannot be used to scan the network."""
    policy = OutboundPolicy.from_settings(["127.0.0.1"])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    silent_port = silent.getsockname()[1]
    stop = threading.Event()
    try:
        messages = []
        for port in (closed_port, silent_port):
            with pytest.raises(DeliveryFailed) as caught:
                post_json(policy, f"http://127.0.0.1:{port}/x", {}, timeout=0.5)
            messages.append(str(caught.value))
        assert messages[0] == messages[1]
        assert str(closed_port) not in messages[0] and str(silent_port) not in messages[1]
    finally:
        stop.set()
        silent.close()


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "file:///etc/passwd", "http:///nohost", "gopher://a/"]
)
def test_only_http_urls_go_out(url: str) -> None:
    """Test that other schemes are refused."""
    with pytest.raises(OutboundRefused, match="http"):
        post_json(OutboundPolicy(), url, {})


def test_a_bad_allow_list_entry_stops_the_server_from_starting() -> None:
    """Test that a typo in SUITCASE_SERVER_OUTBOUND_ALLOW is refused with the expected format."""
    from pydantic import ValidationError

    from server.settings import ServerSettings

    with pytest.raises(ValidationError, match=r"10\.20\.0\.0/16"):
        ServerSettings(outbound_allow=["10.20.0.0/33"])
