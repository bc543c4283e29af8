"""A CA made in the test (openssl CLI) and a Mosquitto with TLS listeners and dynamic security.

The broker of :func:`mosquitto_tls` is the production shape: dynamic security (every client logs
in; the admin account manages the others), a TLS listener for devices and the server, and a TLS
listener that also asks for a client certificate (the gateway's). Its certificate names only
``localhost``, so connecting to ``127.0.0.1`` is the "wrong host name" case. Made once per
session: one CA, one broker (about a second).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from tests.services import require_service
from tests.services.mosquitto import DYNSEC_ADMIN, DYNSEC_PLUGIN

__all__ = ["Pki", "TlsBroker", "make_ca", "make_cert", "mosquitto_tls", "pki"]

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


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


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """Make a self-signed CA ``name``; return (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", *_CURVE, "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_cert(directory: Path, name: str, ca: tuple[Path, Path], *, server: bool) -> tuple[Path, Path]:
    """Make a certificate ``name`` signed by ``ca``: a server's for DNS ``localhost``, or a client's."""
    cert, key, csr, ext = (directory / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr", ".ext"))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        + (
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
            if server
            else "extendedKeyUsage=clientAuth\n"
        )
    )
    _openssl("req", *_CURVE, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=directory)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext),
        cwd=directory,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA made for this test run, its certificates, and another CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "test-ca")
    other, _ = make_ca(directory, "other-ca")
    server = make_cert(directory, "broker", ca, server=True)
    client = make_cert(directory, "gateway-client", ca, server=False)
    return Pki(ca[0], ca[1], server[0], server[1], client[0], client[1], other)


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
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config), *DYNSEC_ADMIN], check=True, capture_output=True
    )
    state = json.loads(config.read_text())
    admin = next(role for role in state["roles"] if role["rolename"] == "admin")
    admin["acls"].append({"acltype": "publishClientSend", "topic": "suitcase/v1/+/+/cmd/#", "allow": True})
    admin["acls"].append({"acltype": "subscribePattern", "topic": "suitcase/v1/#", "allow": True})
    admin["acls"].append({"acltype": "publishClientReceive", "topic": "suitcase/v1/#", "allow": True})
    config.write_text(json.dumps(state))
    tls_port, mtls_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    files = f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
    broker = MosquittoBroker(
        workdir / "broker",
        allow_anonymous=False,
        extra_config=(
            f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {config}\n"
            f"listener {tls_port} 127.0.0.1\n{files}"
            f"listener {mtls_port} 127.0.0.1\n{files}require_certificate true\n"
        ),
    )
    broker.start()
    yield TlsBroker(broker, tls_port, mtls_port, DYNSEC_ADMIN, pki)
    broker.stop()
