"""The gateway's own MQTT client against paho, over plain TCP and over TLS: is it worth keeping?

A persistent QoS 1 session per consumer is registered, N telemetry packs are queued in Mosquitto
for all of them, then each drains its backlog, counting and acknowledging every message:

- paho (``paho.mqtt.client``, the library the server and the agent use): counts in on_message,
  paho acks each message itself;
- the gateway's hand-written client (``gateway/_mqtt.py``): acks each chunk it reads in one write.

Both run over the broker's plain listener and over its TLS listener (a CA made for the run by
``suitcase.services.tls``; certificate and host name checked by ``kits.tls.client_context``).
Reported as ratios in the same run: hand-written / paho per transport, and TLS / plain per
client. ``SUITCASE_BENCH_N`` sets N (default 50,000).
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks._timing import Figure

__all__ = ["run"]

TOPIC = "suitcase/v1/+/+/telemetry"
HOST = "localhost"  # the name in the broker's certificate


def _paho(port: int, client_id: str, tls: ssl.SSLContext | None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    if tls is not None:
        client.tls_set_context(tls)
    return client


def _register(port: int, client_id: str, tls: ssl.SSLContext | None) -> None:
    client = _paho(port, client_id, tls)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.connect(HOST, port)
    client.loop_start()
    client.subscribe(TOPIC, qos=1)
    done.wait(10)
    client.disconnect()
    client.loop_stop()


def _publish(port: int, n: int) -> None:
    from benchmarks.bench_gateway import _packs
    from benchmarks.bench_gateway import _publish as publish

    publish(port, _packs(n))


def _drain_paho(port: int, client_id: str, n: int, tls: ssl.SSLContext | None) -> float:
    count = 0
    done = threading.Event()
    client = _paho(port, client_id, tls)

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    client.on_message = on_message
    started = time.perf_counter()
    client.connect(HOST, port)
    client.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"paho drained {count} of {n}")
    seconds = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return seconds


def _drain_own(port: int, client_id: str, n: int, tls: ssl.SSLContext | None) -> float:
    from gateway._mqtt import Delivery, MqttSession

    count = 0
    done = threading.Event()
    holder: list[MqttSession] = []

    def deliver(generation: int, _at: float, messages: list[Delivery]) -> None:
        nonlocal count
        holder[0].ack(generation, [mid for _, _, mid, _ in messages])
        count += len(messages)
        if count >= n:
            done.set()

    session = MqttSession(HOST, port, client_id, TOPIC, deliver, tls=tls)
    holder.append(session)
    started = time.perf_counter()
    session.start()
    if not done.wait(600):
        raise RuntimeError(f"the hand-written client drained {count} of {n}")
    seconds = time.perf_counter() - started
    session.stop()
    return seconds


def run(n: int | None = None) -> list[Figure]:
    from kits.tls import client_context
    from suitcase.broker import MosquittoBroker, free_port
    from suitcase.services.tls import make_ca, make_server_cert

    n = n or int(os.environ.get("SUITCASE_BENCH_N", "50000"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = make_ca(root / "ca")
        server = make_server_cert(ca, root / "broker-tls", [HOST])
        tls_port = free_port()
        broker = MosquittoBroker(
            root / "mosquitto",
            extra_config=f"listener {tls_port} 127.0.0.1\ncafile {server.ca}\n"
            f"certfile {server.cert}\nkeyfile {server.key}\n",
        )
        broker.start()
        try:
            tls = client_context(ca_file=server.ca, setting="BENCH")
            plans = {
                (client, transport): (f"bench-{client}-{transport}-{uuid.uuid4().hex[:6]}", port, context)
                for client in ("paho", "own")
                for transport, port, context in (("plain", broker.port, None), ("tls", tls_port, tls))
            }
            for client_id, port, context in plans.values():
                _register(port, client_id, context)
            _publish(broker.port, n)
            seconds = {
                key: (_drain_paho if key[0] == "paho" else _drain_own)(port, client_id, n, context)
                for key, (client_id, port, context) in plans.items()
            }
        finally:
            broker.stop()
    own, paho = "hand-written", "paho"
    return [
        Figure(
            f"mqtt drain plain: {own}",
            seconds["own", "plain"],
            f"{paho} plain",
            seconds["paho", "plain"],
            n,
            "msgs",
        ),
        Figure(
            f"mqtt drain TLS: {own}", seconds["own", "tls"], f"{paho} TLS", seconds["paho", "tls"], n, "msgs"
        ),
        Figure(
            f"mqtt drain: {own} TLS",
            seconds["own", "tls"],
            f"{own} plain",
            seconds["own", "plain"],
            n,
            "msgs",
        ),
        Figure(
            f"mqtt drain: {paho} TLS",
            seconds["paho", "tls"],
            f"{paho} plain",
            seconds["paho", "plain"],
            n,
            "msgs",
        ),
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name:40s} {figure.rate:10,.0f} msgs/s  {figure.ratio:5.2f}x {figure.baseline}")
