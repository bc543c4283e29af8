"""The real Mosquitto broker for tests marked ``mosquitto``: one per session, loopback, free port.

It loads deploy/mosquitto/suitcase.conf through :class:`suitcase.broker.MosquittoBroker`, exactly
as the demo and production do.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from suitcase.broker import EmbeddedBroker, MosquittoBroker, find_mosquitto
from tests.services import require_service

__all__ = ["DYNSEC_ADMIN", "DYNSEC_PLUGIN", "embedded_broker", "mosquitto", "mosquitto_dynsec"]


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A running Mosquitto 2 with the project's config."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto mosquitto-clients")
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture()
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """A fresh embedded (amqtt) broker for one test."""
    with EmbeddedBroker() as broker:
        yield broker  # type: ignore[misc]


DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
DYNSEC_ADMIN = ("admin", "dynsec-admin-password")


@pytest.fixture()
def mosquitto_dynsec(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto that authenticates every client through the dynamic-security plugin.

    Its admin account (:data:`DYNSEC_ADMIN`) manages clients over ``$CONTROL/dynamic-security/v1``
    and, as the server's account, may also send commands to devices.
    """
    if find_mosquitto() is None or not DYNSEC_PLUGIN.exists():
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    config = tmp_path / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config), *DYNSEC_ADMIN], check=True, capture_output=True
    )
    state = json.loads(config.read_text())
    admin = next(role for role in state["roles"] if role["rolename"] == "admin")
    admin["acls"].append({"acltype": "publishClientSend", "topic": "suitcase/v1/+/+/cmd/#", "allow": True})
    config.write_text(json.dumps(state))
    broker = MosquittoBroker(
        tmp_path / "mosquitto-dynsec",
        allow_anonymous=False,
        extra_config=f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {config}\n",
    )
    broker.start()
    yield broker
    broker.stop()
