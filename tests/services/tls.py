"""A CA made in the test (suitcase.services.tls, as `up` makes one) and a Mosquitto with TLS listeners
and dynamic security, configured by suitcase.services.mosquitto.

The broker of :func:`mosquitto_tls` is the production shape: dynamic security (every client logs
in; the admin account manages the others), a TLS listener for devices and the server, and a TLS
listener that also asks for a client certificate (the gateway's). Its certificate names only
``localhost``, so connecting to ``127.0.0.1`` is the "wrong host name" case. Made once per
session: one CA, one broker (about a second).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from suitcase.services.mosquitto import Account, Listener, dynsec_state
from suitcase.services.tls import TlsFiles, client_cert, make_ca, make_server_cert
from tests.services import require_service
from tests.services.mosquitto import DYNSEC_ADMIN, DYNSEC_PLUGIN, OPERATOR_ROLE, STACK_GATEWAY, STACK_SERVER

__all__ = ["Pki", "TlsBroker", "mosquitto_tls", "pki"]


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for ``localhost`` and a client certificate, all PEM files."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of these: the "wrong CA"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA made for this test run, its certificates, and another CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory / "ca", "test-ca")
    other, _ = make_ca(directory / "other", "other-ca")
    server = make_server_cert(ca, directory / "broker", ["localhost"])
    client = client_cert(ca, directory / "client", "gateway-client")
    return Pki(ca[0], ca[1], server.cert, server.key, client[0], client[1], other)


@dataclass(frozen=True)
class TlsBroker:
    """A running :func:`mosquitto_tls`: its TLS ports and admin account."""

    broker: MosquittoBroker
    tls_port: int  # server certificate only
    mtls_port: int  # also asks for a client certificate signed by the CA
    admin: tuple[str, str]
    pki: Pki


@pytest.fixture(scope="session")
def mosquitto_tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsBroker]:
    """Mosquitto with dynamic security and two TLS listeners (see the module's docstring)."""
    if find_mosquitto() is None or not DYNSEC_PLUGIN.exists():
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    config = workdir / "dynsec.json"
    state = dynsec_state(
        [STACK_GATEWAY, STACK_SERVER, Account(DYNSEC_ADMIN[0], DYNSEC_ADMIN[1], ("admin",))],
        extra_roles=[OPERATOR_ROLE],
    )
    config.write_text(json.dumps(state))
    tls_port, mtls_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    files = TlsFiles(ca=pki.ca, cert=pki.server_cert, key=pki.server_key)
    broker = MosquittoBroker(
        workdir / "broker",
        dynsec_file=config,
        listeners=[
            Listener(tls_port, "127.0.0.1", files),
            Listener(mtls_port, "127.0.0.1", files, require_certificate=True),
        ],
    )
    broker.start()
    yield TlsBroker(broker, tls_port, mtls_port, DYNSEC_ADMIN, pki)
    broker.stop()
