"""A structure-aware JSON fuzzer for every consumer of untrusted messages (issue #11, item 6).

Two sources, both seeded so a failure replays:

- :class:`JsonFuzzer` writes raw JSON *text* itself, so it reaches what no encoder writes:
  duplicate keys, ``NaN``/``Infinity`` literals, integers of thousands of digits, ``1e400``,
  lone surrogates as ``\\ud800`` escapes, NUL characters, deep nesting, wrong types in every field
  of a SenML record, and byte-level mutations of valid packs (cut, flipped, spliced). It is fast
  (tens of microseconds an input), which is what lets CI try 100,000 inputs.
- :func:`json_values` is the hypothesis strategy of the same shapes, for the tests that want
  hypothesis's shrinking on a smaller number of examples.

``SUITCASE_FUZZ_SCALE`` multiplies every count (``make fuzz`` sets 10).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

__all__ = ["JsonFuzzer", "fuzz_count", "json_values"]

SENML_KEYS = ("bn", "bt", "bu", "bver", "n", "u", "v", "t", "vs", "vb", "vd", "s", "ut", "bv", "bs")
NAMES = (
    "bme280/temperature",
    "bme280/humidity",
    "bme280/pressure",
    "scd40/co2",
    "sgp40/voc_index",
    "pms5003/pm2_5",
    "a/temperature",
    "bme280/",
    "/temperature",
    "BME280/temperature",
    "bme280/temperature/extra",
)
UNITS = ("Cel", "%RH", "Pa", "hPa", "ppm", "ug/m3", "degF", "", "%EL", "count", "1")
EDGE_NUMBERS = (
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1",
    "-1",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "1e309",
    "1e400",
    "-1e400",
    "1e-400",
    "5e-324",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" + "0" * 309,
    "1" + "0" * 400,
    "9" * 4300,
    "9" * 4301,
    "NaN",
    "Infinity",
    "-Infinity",
    "1577836800",
    "1577836799.999",
    "1750000000",
    "1750000300",
    "1750000301",
    "26",
    "16",
    "10",
    "-26",
    "26.5",
)
STRINGS = (
    "",
    " ",
    "\\u0000",
    "\\ud800",
    "\\udfff",
    "\\ud83d\\ude00",
    "\\ud83d",
    "é",
    "\u202e",
    "\U0001f600",
    "\\n\\t\\r",
    '\\"',
    "\\\\",
    "urn:dev:suitcase:",
    "urn:dev:suitcase:dev-a",
)


def fuzz_count(base: int) -> int:
    """``base`` times ``SUITCASE_FUZZ_SCALE`` (default 1; ``make fuzz`` runs ten times more)."""
    return base * int(os.environ.get("SUITCASE_FUZZ_SCALE", "1"))


class JsonFuzzer:
    """Raw JSON text of every shape, biased towards the SenML records the gateway decodes.

    Args:
        seed: the random seed; the same seed gives the same inputs.
        device: the device the base names should usually name (so valid packs get deep).
        now: the receiver's time, around which record times are drawn.
    """

    def __init__(self, seed: int, *, device: str = "dev-a", now: float = 1_750_000_000.0) -> None:
        self.rng = random.Random(seed)
        self.device = device
        self.now = now

    # ------------------------------------------------------------------ scalars

    def number(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.35:
            return r.choice(EDGE_NUMBERS)
        if pick < 0.6:
            return repr(r.uniform(-1e6, 1e6))
        if pick < 0.8:
            return str(r.randint(-(10**6), 10**6))
        if pick < 0.9:
            return str(r.randint(-(2**70), 2**70))
        return f"{r.choice(['', '-'])}{r.randint(1, 9)}e{r.randint(-500, 500)}"

    def string(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.3:
            text = r.choice(NAMES)
        elif pick < 0.45:
            text = r.choice(STRINGS)
        elif pick < 0.6:
            text = r.choice(UNITS)
        elif pick < 0.85:
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_/-:. "
            text = "".join(r.choice(alphabet) for _ in range(r.randint(0, 40)))
        elif pick < 0.95:
            text = "".join(self._char() for _ in range(r.randint(1, 20)))
        else:
            text = r.choice("ab/\\u0000é") * r.randint(100, 5000)
        return f'"{text}"'

    def _char(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.3:
            return f"\\u{r.randint(0, 0xFFFF):04x}"  # surrogates and controls included
        if pick < 0.6:
            code = r.randint(0x20, 0x10FFFF)
            if 0xD800 <= code <= 0xDFFF:
                code = 0xFFFD
            char = chr(code)
            return "\\\\" if char == "\\" else '\\"' if char == '"' else char
        return r.choice("abc/_-:")

    # ------------------------------------------------------------------ structures

    def value(self, depth: int = 0) -> str:
        """Any JSON value, nested up to a few levels."""
        r = self.rng
        kinds = ["number", "string", "true", "false", "null"]
        if depth < 4:
            kinds += ["array", "object"]
        kind = r.choice(kinds)
        if kind == "number":
            return self.number()
        if kind == "string":
            return self.string()
        if kind == "array":
            return "[" + ",".join(self.value(depth + 1) for _ in range(r.randint(0, 4))) + "]"
        if kind == "object":
            members = [f"{self.string()}:{self.value(depth + 1)}" for _ in range(r.randint(0, 4))]
            return "{" + ",".join(members) + "}"
        return kind

    def field(self, key: str) -> str:
        """A value for SenML field ``key``: usually the right type, often a near miss, sometimes anything."""
        r = self.rng
        pick = r.random()
        if pick < 0.25:
            return self.value(2)
        if key == "bn":
            return r.choice(
                [
                    f'"urn:dev:suitcase:{self.device}:"',
                    '"urn:dev:suitcase:other:"',
                    f'"urn:dev:suitcase:{self.device}"',
                    self.string(),
                ]
            )
        if key in ("bt", "t"):
            if pick < 0.7:
                offset = r.choice([0, r.uniform(-400, 400), r.uniform(-1e9, 1e9)])
                return repr(self.now + offset if key == "bt" else offset)
            return self.number()
        if key in ("v", "bver", "bv", "vd", "s", "ut"):
            return self.number() if pick < 0.85 else r.choice(["true", "false", "null", self.string()])
        if key == "n":
            return f'"{r.choice(NAMES)}"' if pick < 0.75 else self.string()
        if key in ("u", "bu"):
            return f'"{r.choice(UNITS)}"' if pick < 0.75 else self.string()
        return self.value(2)

    def record(self, first: bool) -> str:
        r = self.rng
        keys: list[str] = []
        if first and r.random() < 0.9:
            keys += ["bn", "bt"]
            if r.random() < 0.2:
                keys.append("bver")
        keys += ["n", "u", "v"] if r.random() < 0.8 else []
        keys += [r.choice(SENML_KEYS) for _ in range(r.randint(0, 3))]
        if r.random() < 0.1:
            keys.append(self.string().strip('"'))  # an unknown key
        if r.random() < 0.15:
            keys.append(r.choice(keys) if keys else "v")  # a duplicate key: the last one wins
        r.shuffle(keys)
        return "{" + ",".join(f'"{k}":{self.field(k)}' for k in keys) + "}"

    def valid_pack(self) -> str:
        """A pack the contract accepts, then now and then one field of one record replaced."""
        from kits.quantities import QUANTITIES, SECONDARY_UNITS

        r = self.rng
        quantities = list(QUANTITIES.items())
        records: list[dict[str, str]] = []
        secondary = False
        for _ in range(r.choice([1, 2, 6, r.randint(1, 30)])):
            qty, spec = r.choice(quantities)
            sensor = r.choice(["bme280", "scd40", "s0", "a_1"])
            record = {"n": json.dumps(f"{sensor}/{qty}"), "v": repr(r.uniform(-1e4, 1e4))}
            if spec.unit is not None:
                record["u"] = json.dumps(spec.unit)
                secondary = secondary or spec.unit in SECONDARY_UNITS
            if r.random() < 0.5:
                record["t"] = repr(r.uniform(-1e5, 0))
            records.append(record)
        records[0] = {
            "bn": json.dumps(f"urn:dev:suitcase:{self.device}:"),
            "bt": repr(self.now),
            **records[0],
        }
        if secondary:
            records[0]["bver"] = "26"
        if r.random() < 0.5:
            victim = r.choice(records)
            key = r.choice([*victim, *SENML_KEYS])
            victim[key] = self.field(key) if r.random() < 0.7 else self.number()
        return (
            "["
            + ",".join("{" + ",".join(f'"{k}":{v}' for k, v in rec.items()) + "}" for rec in records)
            + "]"
        )

    def pack(self) -> str:
        """A SenML-like pack: an array of records, mostly objects."""
        r = self.rng
        if r.random() < 0.3:
            return self.valid_pack()
        count = r.choice([1, 1, 2, 3, 6, r.randint(0, 20)])
        items = [self.record(i == 0) if r.random() < 0.95 else self.value(1) for i in range(count)]
        return "[" + ",".join(items) + "]"

    def deep(self) -> str:
        r = self.rng
        depth = r.choice([100, 1000, 1025, 5000, 20_000, 40_000])
        opener, closer = r.choice([("[", "]"), ('{"a":', "}")])
        inner = self.value(3) if opener == "[" else "1"
        text = opener * depth + inner + closer * depth
        if r.random() < 0.5:  # inside a record's field
            text = f'[{{"bn":"urn:dev:suitcase:{self.device}:","n":"bme280/temperature","v":{text}}}]'
        return text

    def mutate(self, data: bytes) -> bytes:
        """Cut, flip, splice or repeat bytes of ``data``."""
        r = self.rng
        out = bytearray(data)
        for _ in range(r.randint(1, 4)):
            if not out:
                break
            at = r.randrange(len(out))
            op = r.random()
            if op < 0.3:
                out[at] = r.randrange(256)
            elif op < 0.5:
                del out[at : at + r.randint(1, 8)]
            elif op < 0.7:
                out[at:at] = r.choice([b",", b"]", b"}", b'"', b"\\", b"\xff", b"\xc3", b"\x00", b"NaN"])
            elif op < 0.85:
                out = out[:at]
            else:
                out[at:at] = bytes(out[at : at + r.randint(1, 32)])
        return bytes(out)

    def payload(self) -> bytes:
        """One input: mostly SenML-like packs, then any JSON, deep nesting and byte mutations."""
        r = self.rng
        pick = r.random()
        if pick < 0.6:
            text = self.pack()
        elif pick < 0.75:
            text = self.value()
        elif pick < 0.78:
            text = self.deep()
        else:
            return self.mutate(self.pack().encode("utf-8", "surrogatepass"))
        raw = text.encode("utf-8", "surrogatepass")
        if r.random() < 0.03:
            raw = r.choice([b"\xef\xbb\xbf", b"\xff\xfe", b" \t\n"]) + raw
        return raw

    def payloads(self, count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield self.payload()

    def objects(self, count: int, shape: Callable[[JsonFuzzer], str] | None = None) -> Iterator[bytes]:
        """``count`` JSON texts of ``shape`` (default: any value, objects more often)."""
        for _ in range(count):
            if shape is not None:
                yield shape(self).encode("utf-8", "surrogatepass")
            elif self.rng.random() < 0.1:
                yield self.mutate(self.value().encode("utf-8", "surrogatepass"))
            else:
                yield self.value().encode("utf-8", "surrogatepass")

    def object_of(self, fields: Sequence[str]) -> str:
        """An object with (some of) ``fields``, each any JSON value, plus now and then a stranger."""
        r = self.rng
        keys = [f for f in fields if r.random() < 0.8]
        if r.random() < 0.2:
            keys.append(self.string().strip('"'))
        if keys and r.random() < 0.1:
            keys.append(r.choice(keys))
        return "{" + ",".join(f'"{k}":{self.value(1)}' for k in keys) + "}"


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Hypothesis: any JSON value, with the numbers and strings that break decoders."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(10**400), max_value=10**400)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text()
        | st.sampled_from([json.loads(f'"{s}"') for s in STRINGS] + list(NAMES) + list(UNITS))
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.sampled_from(SENML_KEYS) | st.text(max_size=5), children, max_size=6)
        ),
        max_leaves=max_leaves,
    )
