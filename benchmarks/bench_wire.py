"""The SenML codec (kits/wire.py) against plain json.dumps/json.loads of the same packs.

The ratio is the price of validation: every record's name, unit, value and time checked.
"""

from __future__ import annotations

import json

from benchmarks._timing import Figure, best_of
from kits.wire import Record, decode_pack, encode_pack

__all__ = ["run"]

NOW = 1_790_000_000.0


def _packs(count: int) -> list[list[Record]]:
    quantities = [
        ("bme280", "temperature", 21.5),
        ("bme280", "humidity", 40.2),
        ("bme280", "pressure", 1012.3),
        ("scd4x", "co2", 612.0),
        ("pmsa003i", "pm2_5", 7.0),
        ("pmsa003i", "pm10", 11.0),
    ]
    return [
        [Record("aarhus", f"pi-{i % 50}", s, q, v + i % 7, NOW - 60 + i * 0.001) for s, q, v in quantities]
        for i in range(count)
    ]


def run(count: int = 20_000) -> list[Figure]:
    packs = _packs(count)
    encoded = [encode_pack(p) for p in packs]
    records = count * len(packs[0])
    plain = [json.dumps(json.loads(e), separators=(",", ":")) for e in encoded]

    encode = best_of(lambda: [encode_pack(p) for p in packs], 3)
    baseline_encode = best_of(lambda: [json.dumps(json.loads(e)) for e in plain], 3)
    decode = best_of(
        lambda: [
            decode_pack(e, org="aarhus", device=p[0].device, now=NOW)
            for e, p in zip(encoded, packs, strict=True)
        ],
        3,
    )
    baseline_decode = best_of(lambda: [json.loads(e) for e in encoded], 3)
    return [
        Figure("wire.encode_pack", encode, "json.loads+dumps", baseline_encode, records, "readings"),
        Figure("wire.decode_pack", decode, "json.loads", baseline_decode, records, "readings"),
    ]
