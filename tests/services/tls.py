"""A CA made in the test and a Mosquitto with TLS listeners and dynamic security, made by the stack's
own configuration code (:mod:`suitcase.services.tls`, :mod:`suitcase.services.mosquitto`).

The broker of :func:`mosquitto_tls` is the production shape: dynamic security with the stack's
least-privilege accounts (``suitcase-server``, ``suitcase-gateway``), a TLS listener for devices
and the server, and a TLS listener that also asks for a client certificate signed by the CA (the
gateway's). Its certificate names only ``localhost``, so connecting to ``127.0.0.1`` is the "wrong
host name" case; ``other_ca`` signed nothing, the "wrong CA" case. Made once per session.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from suitcase.services.mosquitto import (
    GATEWAY_ROLE,
    SERVER_ROLE,
    Account,
    Listener,
    dynsec_state,
    find_dynsec_plugin,
)
from suitcase.services.tls import TlsFiles, client_cert, make_ca, make_server_cert
from tests.services import require_service

__all__ = ["Pki", "TlsBroker", "mosquitto_tls", "pki"]

PUBLISHER_ROLE = {  # a test's stand-in for devices: may publish any device's telemetry
    "rolename": "test-publisher",
    "acls": [
        {"acltype": "publishClientSend", "topic": "suitcase/v1/+/+/telemetry", "priority": 0, "allow": True}
    ],
}


@dataclass(frozen=True)
class Pki:
    """A CA, the broker's certificate for ``localhost``, a client certificate, and another CA."""

    ca: Path
    server: TlsFiles
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of these: the "wrong CA"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The CA made for this test run (openssl, as `suitcase services up` makes it) and its certificates."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory / "ca", "Test CA")
    other, _ = make_ca(directory / "other-ca", "Other CA")
    server = make_server_cert(ca, directory / "broker", ["localhost"])
    cert, key = client_cert(ca, directory / "clients", "suitcase-gateway")
    return Pki(ca[0], server, cert, key, other)


@dataclass(frozen=True)
class TlsBroker:
    """A running :func:`mosquitto_tls`: its TLS ports and the accounts of its dynamic security."""

    broker: MosquittoBroker
    tls_port: int  # server certificate only
    mtls_port: int  # also asks for a client certificate signed by the CA
    server: Account  # the stack's server account (dynsec admin of device accounts)
    gateway: Account  # the stack's gateway account (may only receive telemetry)
    publisher: Account  # publishes telemetry for the tests
    pki: Pki


@pytest.fixture(scope="session")
def mosquitto_tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsBroker]:
    """Mosquitto with dynamic security and two TLS listeners only (see the module's docstring)."""
    if find_mosquitto() is None or find_dynsec_plugin() is None:
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    server, gateway, publisher = (
        Account(name, secrets.token_urlsafe(24), (role,))
        for name, role in (
            ("suitcase-server", SERVER_ROLE),
            ("suitcase-gateway", GATEWAY_ROLE),
            ("test-publisher", "test-publisher"),
        )
    )
    state = workdir / "dynsec.json"
    state.write_text(json.dumps(dynsec_state([server, gateway, publisher], extra_roles=[PUBLISHER_ROLE])))
    mtls_port = free_port("127.0.0.1")
    broker = MosquittoBroker(
        workdir / "broker",
        dynsec_file=state,
        tls=pki.server,
        listeners=[Listener(mtls_port, "127.0.0.1", pki.server, require_certificate=True)],
    )
    broker.start()
    yield TlsBroker(broker, broker.port, mtls_port, server, gateway, publisher, pki)
    broker.stop()
