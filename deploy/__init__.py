"""Deployment files shipped with the package (the Mosquitto config every broker we start loads)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MOSQUITTO_CONF"]

MOSQUITTO_CONF = Path(__file__).parent / "mosquitto" / "suitcase.conf"
