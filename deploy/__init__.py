"""Deployment files shipped with the package: the Mosquitto config every broker we start loads, the
systemd units and services' configs (``systemd/``, ``config/``), the Compose file (``compose/``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEPLOY_DIR", "MOSQUITTO_CONF"]

DEPLOY_DIR = Path(__file__).parent
MOSQUITTO_CONF = DEPLOY_DIR / "mosquitto" / "suitcase.conf"
