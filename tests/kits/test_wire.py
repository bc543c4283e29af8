"""Tests of the wire contract: topics and SenML telemetry packs (kits/wire.py)."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kits import errors
from kits.quantities import QUANTITIES
from kits.wire import (
    BASE_NAME_PREFIX,
    MAX_FUTURE_SKEW_S,
    MAX_PACK_BYTES,
    MAX_PACK_RECORDS,
    Record,
    Topic,
    build_topic,
    decode_pack,
    encode_pack,
    parse_topic,
    subscription,
)

NOW = 1_790_000_000.0
ORG, DEV = "aarhus", "school7-k3f9"

slugs = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
sensors = st.from_regex(r"[a-z0-9][a-z0-9_]{0,15}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


def _pack(*records: dict[str, object], bn: str = f"{BASE_NAME_PREFIX}{DEV}:", bver: int | None = 26) -> bytes:
    first = {"bn": bn, "bt": NOW, **({"bver": bver} if bver is not None else {})}
    body = [dict(records[0], **first), *records[1:]]
    return json.dumps(body).encode()


def _decode(payload: bytes | str) -> list[Record]:
    return decode_pack(payload, org=ORG, device=DEV, now=NOW)


# --------------------------------------------------------------------------- topics


@given(org=slugs, device=slugs, kind=st.sampled_from(["telemetry", "status", "meta"]))
def test_topic_round_trip(org: str, device: str, kind: str) -> None:
    """Test that every topic built parses back to the same parts."""
    topic = build_topic(org, device, kind)  # type: ignore[arg-type]
    assert parse_topic(topic) == Topic(org, device, kind)  # type: ignore[arg-type]


def test_command_topics_round_trip() -> None:
    """Test that command and reply topics carry the command name."""
    assert parse_topic(build_topic(ORG, DEV, "cmd", "config")) == Topic(ORG, DEV, "cmd", "config")
    reply = build_topic(ORG, DEV, "cmd", "config", reply=True)
    assert reply == f"suitcase/v1/{ORG}/{DEV}/cmd/config/reply"
    assert parse_topic(reply).reply is True


@pytest.mark.parametrize(
    "topic",
    [
        "suitcase/v1/aarhus/dev",
        "suitcase/v2/aarhus/dev/telemetry",
        "other/v1/aarhus/dev/telemetry",
        "suitcase/v1/Aarhus/dev/telemetry",
        "suitcase/v1/aarhus/dev/telemetry/extra",
        "suitcase/v1/aarhus/dev/unknown",
        "suitcase/v1/aarhus/dev/cmd",
        "suitcase/v1/aarhus/dev/cmd/config/notreply",
        "suitcase/v1/aarhus/-dev/telemetry",
    ],
)
def test_bad_topics_are_rejected(topic: str) -> None:
    """Test that a topic outside the contract raises BadTopic."""
    with pytest.raises(errors.BadTopic):
        parse_topic(topic)


def test_build_topic_rejects_bad_ids() -> None:
    """Test that ids with wildcards or capitals cannot make a topic."""
    for bad in ("+", "#", "A", "a/b", ""):
        with pytest.raises(errors.BadTopic):
            build_topic(bad, DEV, "telemetry")
    with pytest.raises(errors.BadTopic):
        build_topic(ORG, DEV, "cmd")
    with pytest.raises(errors.BadTopic):
        build_topic(ORG, DEV, "status", "config")


def test_subscriptions() -> None:
    """Test plain and shared subscription filters."""
    assert subscription("telemetry") == "suitcase/v1/+/+/telemetry"
    assert subscription("telemetry", group="gw") == "$share/gw/suitcase/v1/+/+/telemetry"
    assert subscription("cmd", org=ORG, device=DEV) == f"suitcase/v1/{ORG}/{DEV}/cmd/#"


# --------------------------------------------------------------------------- telemetry round trip

records = st.builds(
    lambda sensor, qty, value, offset: (sensor, qty, value, offset),
    sensors,
    st.sampled_from(sorted(QUANTITIES)),
    finite,
    st.floats(min_value=0, max_value=86400 * 30, allow_nan=False),
)


@given(device=slugs, org=slugs, items=st.lists(records, min_size=1, max_size=40))
def test_encode_decode_round_trip(device: str, org: str, items: list[tuple[str, str, float, float]]) -> None:
    """Test that any valid list of records survives encode then decode unchanged."""
    base = NOW - 86400 * 30
    recs = [Record(org, device, s, q, v, base + off) for s, q, v, off in items]
    decoded = decode_pack(encode_pack(recs), org=org, device=device, now=NOW)
    assert [(r.sensor, r.quantity, r.value) for r in decoded] == [
        (r.sensor, r.quantity, r.value) for r in recs
    ]
    for got, sent in zip(decoded, recs, strict=True):
        assert math.isclose(got.time, sent.time, rel_tol=0, abs_tol=1e-6)
        assert got.org == org and got.device == device


def test_secondary_units_declare_bver() -> None:
    """Test that a pack with hPa declares bver 26 and one with only primary units does not."""
    pressure = encode_pack([Record(ORG, DEV, "bme280", "pressure", 1013.0, NOW)])
    assert json.loads(pressure)[0]["bver"] == 26
    temp = encode_pack([Record(ORG, DEV, "bme280", "temperature", 21.0, NOW)])
    assert "bver" not in json.loads(temp)[0]


def test_dimensionless_quantity_omits_unit() -> None:
    """Test that the VOC index is sent without u and accepted without u."""
    pack = encode_pack([Record(ORG, DEV, "sgp40", "voc_index", 100.0, NOW)])
    assert "u" not in json.loads(pack)[0]
    assert _decode(pack)[0].value == 100.0


def test_base_unit_applies_to_following_records() -> None:
    """Test RFC 8428 base-unit semantics: bu applies to records without u."""
    payload = json.dumps(
        [
            {"bn": f"{BASE_NAME_PREFIX}{DEV}:", "bt": NOW, "bu": "Cel", "n": "a/temperature", "v": 1},
            {"n": "b/temperature", "v": 2, "t": 1},
        ]
    )
    out = _decode(payload)
    assert [r.time for r in out] == [NOW, NOW + 1]


def test_encode_rejects_what_decode_would() -> None:
    """Test that the agent cannot encode a pack the gateway would dead-letter."""
    with pytest.raises(errors.BadValue):
        encode_pack([Record(ORG, DEV, "x", "temperature", math.nan, NOW)])
    with pytest.raises(errors.UnknownQuantity):
        encode_pack([Record(ORG, DEV, "x", "loudness", 1.0, NOW)])
    with pytest.raises(errors.TimeOutOfRange):
        encode_pack([Record(ORG, DEV, "x", "temperature", 1.0, 12.0)])
    with pytest.raises(errors.PayloadShapeError):
        encode_pack([])
    with pytest.raises(errors.PayloadShapeError):
        encode_pack(
            [
                Record(ORG, DEV, "x", "temperature", 1.0, NOW),
                Record(ORG, "other", "x", "temperature", 1.0, NOW),
            ]
        )


# --------------------------------------------------------------------------- bad payloads

T = {"n": "bme280/temperature", "u": "Cel", "v": 21.5}


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"not json", errors.PayloadNotJson, "not JSON"),
        (b"\xff\xfe", errors.PayloadNotJson, "not JSON"),
        (b'{"n": "x"}', errors.PayloadShapeError, "not an array"),
        (b"[]", errors.PayloadShapeError, "empty"),
        (b"[1]", errors.PayloadShapeError, "not an object"),
        (_pack({"u": "Cel", "v": 1}), errors.MissingField, "no name"),
        (_pack({"n": "bme280/temperature", "u": "Cel"}), errors.MissingField, "no numeric value"),
        (
            _pack({"n": "bme280/temperature", "u": "Cel", "vs": "hot"}),
            errors.MissingField,
            "vs is not accepted",
        ),
        (_pack({"n": "bme280/temperature", "u": "Cel", "v": "21"}), errors.BadValue, "must be a number"),
        (_pack({"n": "bme280/temperature", "u": "Cel", "v": True}), errors.BadValue, "must be a number"),
        (_pack({"n": 5, "u": "Cel", "v": 1}), errors.PayloadShapeError, "n must be a string"),
        (_pack({"n": "temperature", "u": "Cel", "v": 1}), errors.PayloadShapeError, "{sensor}/{quantity}"),
        (_pack({"n": "bme280/loudness", "u": "dB", "v": 1}), errors.UnknownQuantity, "registry"),
        (_pack({"n": "bme280/temperature", "u": "%RH", "v": 1}), errors.UnitMismatch, "use 'Cel'"),
        (_pack({"n": "bme280/temperature", "u": "furlongs", "v": 1}), errors.UnknownUnit, "unknown"),
        (_pack({"n": "bme280/pressure", "u": "hPa", "v": 1000}, bver=None), errors.UnknownUnit, "bver"),
        (
            _pack({"n": "bme280/temperature", "u": "Cel", "v": 1, "t": MAX_FUTURE_SKEW_S + 60}),
            errors.TimeOutOfRange,
            "future",
        ),
        (
            json.dumps(
                [{"bn": f"{BASE_NAME_PREFIX}{DEV}:", "n": "a/temperature", "u": "Cel", "v": 1}]
            ).encode(),
            errors.TimeOutOfRange,
            "before 2020",
        ),
        (_pack(T, bn=f"{BASE_NAME_PREFIX}someone-else:"), errors.DeviceMismatch, "someone-else"),
        (_pack(T, bn="urn:dev:mac:0024befffe804ff1:"), errors.PayloadShapeError, "base name"),
        (json.dumps([T]).encode(), errors.MissingField, "no base name"),
        (
            _pack(T, {"n": "bme280/humidity", "u": "%RH", "v": 1, "bver": 26}),
            errors.PayloadShapeError,
            "first record",
        ),
        (
            json.dumps([dict(T, bn=f"{BASE_NAME_PREFIX}{DEV}:", bt="now")]).encode(),
            errors.PayloadShapeError,
            "bt must be a number",
        ),
    ],
)
def test_each_bad_payload_gets_a_specific_error(
    payload: bytes, error: type[errors.WireError], words: str
) -> None:
    """Test that every kind of bad payload raises its own error, with a message that helps."""
    with pytest.raises(error) as caught:
        _decode(payload)
    assert words in str(caught.value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_rejected(token: str) -> None:
    """Test that NaN and infinities, which Python's json would accept, are refused."""
    payload = f'[{{"bn":"{BASE_NAME_PREFIX}{DEV}:","bt":{NOW},"n":"a/temperature","u":"Cel","v":{token}}}]'
    with pytest.raises(errors.BadValue):
        _decode(payload)


def test_huge_numbers_overflowing_to_infinity_are_rejected() -> None:
    """Test that 1e400 (inf after parsing) is refused."""
    with pytest.raises(errors.BadValue):
        _decode(
            _pack({"n": "a/temperature", "u": "Cel", "v": 1}, {"n": "b/temperature", "u": "Cel", "v": 1e400})
        )


def test_oversize_payloads_are_rejected() -> None:
    """Test the byte limit and the record-count limit."""
    with pytest.raises(errors.PayloadTooLarge):
        _decode(b"[" + b" " * MAX_PACK_BYTES + b"]")
    many = [dict(T, t=i / 1000) for i in range(MAX_PACK_RECORDS + 1)]
    with pytest.raises(errors.PayloadTooLarge):
        decode_pack(_pack(*many), org=ORG, device=DEV, now=NOW, max_bytes=10_000_000)


def test_every_wire_error_has_a_distinct_code() -> None:
    """Test that dead-letter codes tell the kinds of errors apart."""
    codes = [cls.code for cls in errors.WireError.__subclasses__()]
    assert len(codes) == len(set(codes))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(payload: bytes) -> None:
    """Test that any payload either decodes or raises a WireError, nothing else."""
    with contextlib.suppress(errors.WireError):
        _decode(payload)
