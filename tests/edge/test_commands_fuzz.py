"""A structure-aware fuzz of the agent's command handler (edge/commands.py), called directly.

Hypothesis makes JSON of every shape (deep nesting, huge and tiny numbers, long and odd unicode
strings, wrong types in every field a command reads, duplicate keys, bytes that are not UTF-8)
and sends it as each command, and as commands that do not exist. 0 escapes: ``run_command``
never raises, never answers "internal error" (a bug caught is still a bug), every reply
encodes, and the agent samples normally afterwards.

A second pass writes the JSON text itself (:class:`tests.fuzzing.JsonFuzzer`), to reach what no
encoder writes: ``NaN`` and ``Infinity`` literals, ``1e400``, integers of thousands of digits,
lone surrogate escapes, duplicate keys and cut or flipped bytes, in every field a command reads.

10,000 inputs each in CI; ``make fuzz`` (``SUITCASE_FUZZ_SCALE=10``) runs ten times more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.agent import Agent
from edge.commands import run_command
from edge.emulated.bus import EmulatedI2C
from edge.parts.bme280.emulator import Bme280Emulator
from kits.models import DeviceConfig, DeviceSensor
from kits.wire import COMMANDS, CommandReply
from tests.edge.conftest import FakeClock, Targets
from tests.fuzzing import JsonFuzzer, fuzz_count

EXAMPLES = fuzz_count(10_000)
_PER_EXAMPLE = 2 * (len(COMMANDS) + 1)

_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1e-300, 1e308, 2**63, -(2**63), 1_772_618_400, 0.5, 1e9]),
)
# Long strings are built, not drawn character by character: drawing is what costs time here.
_long = st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "é", "\U0001f600", "\\", '"']), st.integers(200, 70_000)
)
_text = st.one_of(
    st.text(max_size=8), _long, st.sampled_from(["", "\udcff", "\x00", "indoor", "temperature"])
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _text)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)
# The fields each command reads, and every field of a device config, with values of any type.
_FIELDS = [
    "seconds", "from", "to", "publish_interval_s", "sensors", "calibration", "outbox", "kit_profile",
    "scenario", "device", "org", "mqtt", "bus", "max_pending", "drain_readings_per_s", "pack_records",
]  # fmt: skip
_sensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["indoor", "x", ""]), "part": st.sampled_from(["bme280", "nope"])},
    optional={"address": _json, "interval_s": _json, "options": _json, "filter": _json, "stuck_after": _json},
)
_outbox = st.dictionaries(
    st.sampled_from(
        ["max_pending", "retention_days", "sync", "batch_s", "drain_readings_per_s", "pack_records"]
    ),
    _json,
)
_args = st.one_of(
    _json,
    st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=4),
    st.fixed_dictionaries({}, optional={"from": _numbers, "to": _numbers, "seconds": _numbers}),
    st.fixed_dictionaries(
        {},
        optional={
            "sensors": st.lists(_sensor, max_size=3),
            "outbox": _outbox,
            "publish_interval_s": _numbers,
            "calibration": st.lists(
                st.dictionaries(st.sampled_from(["sensor", "quantity", "offset", "scale", "version"]), _json),
                max_size=2,
            ),
        },
    ),
)
_answerable = st.fixed_dictionaries({"id": st.text(min_size=1, max_size=64)}, optional={"args": _args})
_requests = st.one_of(
    _answerable,
    _answerable,
    _answerable,  # mostly requests that reach the handlers, as one_of draws its branches alike
    st.fixed_dictionaries({"id": _json}, optional={"args": _args, "extra": _json}),
    _json,
)


def _encoded(request: Any, how: int) -> bytes:
    if how == 0:
        return json.dumps(request).encode("utf-8", "surrogatepass")
    if how == 1 and isinstance(request, dict) and request:  # a duplicate key, the last one winning
        key = next(iter(request))
        return ("{" + json.dumps(key) + ": 1, " + json.dumps(request)[1:]).encode("utf-8", "surrogatepass")
    if how == 2:
        return json.dumps(request).encode()[:-1]  # cut short
    return b"\xff\xfe" + json.dumps(request).encode()  # not UTF-8


def _deep(depth: int) -> bytes:
    return ('{"id": "d", "args": ' + '{"a": ' * depth + "1" + "}" * depth + "}").encode()


def _agent(tmp_path: Path, clock: FakeClock) -> Agent:
    config = DeviceConfig(
        device="pi-1",
        org="aarhus",
        sensors=[DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0)],
        bus="emulated",
    )
    bus = EmulatedI2C(
        {0x77: Bme280Emulator(Targets(temperature=21.5, humidity=45.0, pressure=1009.0), clock=clock)}
    )
    return Agent(config, bus, clock=clock, leds_dir=tmp_path / "no-leds", cpu_temperature=lambda: None)


class _Checker:
    """Sends inputs to the handler and tallies the outcomes; fails on any escape."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.outcomes = {"ok": 0, "refused": 0, "unanswerable": 0}

    def __call__(self, name: str, payload: bytes) -> None:
        reply = run_command(self.agent, name, payload)
        if reply is None:
            self.outcomes["unanswerable"] += 1
            return
        assert isinstance(reply, CommandReply)
        assert "internal error" not in (reply.error or ""), (name, payload[:300], reply.error)
        CommandReply.model_validate_json(reply.model_dump_json())  # it goes out on the wire
        self.outcomes["ok" if reply.ok else "refused"] += 1

    def still_works(self, clock: FakeClock) -> None:
        """The agent takes a good config command, and the next cycle reads the sensor."""
        sensors = [{"name": "indoor", "part": "bme280", "address": 0x77, "interval_s": 1.0}]
        request = {"id": "ok", "args": {"sensors": sensors, "calibration": []}}
        reset = run_command(self.agent, "config", json.dumps(request).encode())
        assert reset is not None and reset.ok, reset
        clock.advance(3600.0)
        records = self.agent.sample_once()
        assert sorted(r.quantity for r in records) == ["humidity", "pressure", "temperature"]
        assert self.agent.config.device == "pi-1" and self.agent.config.org == "aarhus"


def test_no_command_input_escapes_the_handler(tmp_path: Path) -> None:
    """Test that 10,000 commands of every JSON shape each end in a reply or a counted drop, never an
    exception or an internal error, and that the agent still samples afterwards."""
    clock = FakeClock()
    agent = _agent(tmp_path, clock)
    check = _Checker(agent)
    outcomes = check.outcomes

    @settings(
        max_examples=max(1, EXAMPLES // _PER_EXAMPLE),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(name=st.text(max_size=70), request=_requests, how=st.integers(min_value=1, max_value=3))
    def fuzz(name: str, request: Any, how: int) -> None:
        # Each drawn request goes to every command, and to one that does not exist, as sent and
        # garbled: drawing is what costs time, so each draw is used _PER_EXAMPLE times.
        for command in (*COMMANDS, name):
            check(command, _encoded(request, 0))
            check(command, _encoded(request, how))

    fuzz()
    for depth in (10, 1_000, 100_000):
        for name in COMMANDS:
            check(name, _deep(depth))
    assert sum(outcomes.values()) >= EXAMPLES
    assert outcomes["ok"] and outcomes["refused"] and outcomes["unanswerable"], outcomes
    assert agent.meta()["counters"]["bad_commands"] == outcomes["unanswerable"]
    check.still_works(clock)


def test_no_raw_json_command_escapes_the_handler(tmp_path: Path) -> None:
    """Test that 10,000 commands written as raw JSON text (NaN, 1e400, huge integers, lone
    surrogates, duplicate keys, cut and flipped bytes, wrong types in every field a command
    reads) each end in a reply or a counted drop, and that the agent still samples afterwards."""
    clock = FakeClock()
    check = _Checker(_agent(tmp_path, clock))
    fuzzer = JsonFuzzer(seed=17)
    count = fuzz_count(10_000)
    names = [*COMMANDS, "reboot"]
    for k, payload in enumerate(
        fuzzer.objects(count, lambda f: '{"id":"f","args":' + f.object_of(_FIELDS) + "}")
    ):
        if k % 10 == 9:
            payload = fuzzer.mutate(payload)
        check(names[k % len(names)], payload)
    assert sum(check.outcomes.values()) == count
    assert check.outcomes["refused"] > count // 4, check.outcomes
    check.still_works(clock)
