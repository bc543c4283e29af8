"""The server's side of the wire in the update tests: send commands, read replies, status, telemetry."""

from __future__ import annotations

import json
import queue
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kits.wire import build_topic

__all__ = ["Peer"]


class Peer:
    """One MQTT client watching device ``device`` of ``org`` on a real broker."""

    def __init__(self, host: str, port: int, org: str, device: str) -> None:
        self.org, self.device = org, device
        self.replies: dict[str, dict[str, Any]] = {}
        self.status: list[dict[str, Any]] = []
        self.telemetry_at: list[float] = []
        self._events: queue.Queue[None] = queue.Queue()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"peer-{uuid.uuid4().hex[:8]}")
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        base = f"suitcase/v1/{org}/{device}"
        self._client.subscribe([(f"{base}/cmd/+/reply", 1), (f"{base}/status", 1), (f"{base}/telemetry", 1)])
        self._client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        body = json.loads(message.payload)
        if message.topic.endswith("/reply"):
            self.replies[body["id"]] = body
        elif message.topic.endswith("/status"):
            self.status.append(body)
        else:
            self.telemetry_at.append(time.monotonic())

    def send(self, name: str, args: dict[str, Any], command_id: str | None = None) -> str:
        command_id = command_id or uuid.uuid4().hex
        payload = json.dumps({"id": command_id, "args": args}).encode()
        self._client.publish(build_topic(self.org, self.device, "cmd", name), payload, qos=1)
        return command_id

    def reply(self, command_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while command_id not in self.replies:
            if time.monotonic() > deadline:
                raise AssertionError(f"no reply to {command_id} in {timeout} s (status {self.status[-3:]})")
            time.sleep(0.05)
        return self.replies[command_id]

    def ready(self, timeout: float) -> None:
        """Until the agent answers a ping (its command subscription is in place at the broker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            command_id = self.send("ping", {})
            try:
                self.reply(command_id, 0.5)
                return
            except AssertionError:
                continue
        raise AssertionError(f"agent {self.device} never answered a ping in {timeout} s")

    def sampling_since(self, since: float, timeout: float, count: int = 2) -> bool:
        """Whether ``count`` telemetry packs arrive after ``since`` (time.monotonic) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(t > since for t in self.telemetry_at) >= count:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
