"""Fuzz of kits.wire's decode: 100,000 structure-aware inputs in CI, none escapes as anything but a WireError.

``make fuzz`` runs ten times more (``SUITCASE_FUZZ_SCALE=10``). What the fuzz found is in
tests/gateway/poison.py, replayed into a running gateway by tests/gateway/test_no_message_stops.py.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.dead_letters import storable
from kits.errors import WireError
from kits.wire import MAX_FUTURE_SKEW_S, MIN_VALID_TIME, Record, decode_pack, encode_pack
from tests.fuzzing import JsonFuzzer, fuzz_count, json_values

DEVICE = "dev-a"
NOW = 1_750_000_000.0


def _judge(payload: bytes, outcomes: Counter[str], escapes: list[tuple[bytes, BaseException]]) -> None:
    """Decode one input; count its outcome, or keep it if it escaped or broke an invariant."""
    try:
        records = decode_pack(payload, org="aarhus", device=DEVICE, now=NOW)
    except WireError as exc:
        outcomes[exc.code] += 1
        reason = str(exc)
        if len(reason) > 2000:
            escapes.append((payload, AssertionError(f"a reason of {len(reason)} characters")))
        storable(reason)  # never raises: reasons are escaped at the dead-letter boundary
        return
    except Exception as exc:  # an escape: this would have killed the gateway's decoder
        escapes.append((payload, exc))
        return
    outcomes["accepted"] += 1
    for rec in records:
        if not (
            isinstance(rec, Record)
            and type(rec.value) is float
            and math.isfinite(rec.value)
            and MIN_VALID_TIME <= rec.time <= NOW + MAX_FUTURE_SKEW_S
        ):
            escapes.append((payload, AssertionError(f"accepted an invalid record {rec!r}")))
            return
    try:
        encode_pack(records)  # what was accepted re-encodes: it meets the contract
    except Exception as exc:
        escapes.append((payload, AssertionError(f"accepted, but does not re-encode: {exc!r}")))


@pytest.mark.timeout(600)  # 100,000 inputs: about 30 s here, more on a busy CI runner
def test_structure_aware_fuzz_of_decode_pack_never_escapes() -> None:
    """Test that 100,000 fuzzed payloads each decode to valid records or raise a WireError, nothing else.

    The inputs span every shape (tests/fuzzing.py): SenML-like packs with wrong types in every
    field, duplicate keys, NaN/Infinity literals, huge integers and exponents, lone surrogates,
    NULs, nesting up to 40,000 deep, and byte mutations of packs.
    """
    count = fuzz_count(100_000)
    fuzzer = JsonFuzzer(seed=11, device=DEVICE, now=NOW)
    outcomes: Counter[str] = Counter()
    escapes: list[tuple[bytes, BaseException]] = []
    started = time.monotonic()
    for payload in fuzzer.payloads(count):
        _judge(payload, outcomes, escapes)
    elapsed = time.monotonic() - started
    assert not escapes, [(p[:200], repr(e)) for p, e in escapes[:5]]
    assert sum(outcomes.values()) == count
    # The fuzz reaches deep: valid packs, and most kinds of refusal.
    assert outcomes["accepted"] > count // 100, outcomes
    assert len(outcomes) >= 10, outcomes
    print(f"{count} inputs in {elapsed:.1f} s: {dict(outcomes.most_common())}")


@settings(max_examples=fuzz_count(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values())
def test_hypothesis_json_of_any_shape_never_escapes_decode_pack(value: object) -> None:
    """Test that any JSON value (hypothesis) decodes or raises a WireError, as a pack and in a record."""
    escapes: list[tuple[bytes, BaseException]] = []
    outcomes: Counter[str] = Counter()
    for shaped in (
        value,
        [value],
        [{"bn": f"urn:dev:suitcase:{DEVICE}:", "bt": NOW, "n": "a/co2", "v": value}],
    ):
        try:
            text = json.dumps(shaped)
        except (ValueError, RecursionError):
            continue
        _judge(text.encode("utf-8", "surrogatepass"), outcomes, escapes)
    assert not escapes, [(p[:200], repr(e)) for p, e in escapes]


@settings(max_examples=fuzz_count(300), deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["bn", "bt", "bu", "bver", "n", "u", "v", "t"]), json_values(max_leaves=3), max_size=8
    )
)
def test_hypothesis_wrong_types_in_every_field_never_escape(record: dict[str, object]) -> None:
    """Test that a record whose fields hold any JSON value decodes or raises a WireError."""
    base = {"bn": f"urn:dev:suitcase:{DEVICE}:", "bt": NOW, "n": "bme280/temperature", "u": "Cel", "v": 1.0}
    escapes: list[tuple[bytes, BaseException]] = []
    _judge(json.dumps([{**base, **record}]).encode("utf-8", "surrogatepass"), Counter(), escapes)
    assert not escapes, [(p[:200], repr(e)) for p, e in escapes]
