"""Poison messages: every kind of telemetry pack that once escaped the decoder, or could stop a gateway.

Each entry is (name, payload, expected dead-letter code). The payloads are for device ``dev-p``;
the fuzz (tests/kits/test_wire_fuzz.py) found the first ones: before the fix each raised
something other than a ``WireError`` out of ``kits.wire.decode_pack`` and killed the decoder thread.
"""

from __future__ import annotations

import json

DEVICE = "dev-p"
BN = f"urn:dev:suitcase:{DEVICE}:"
T = 1_749_990_000  # within range of tests/gateway/gwtools.NOW


def _pack(**fields: object) -> bytes:
    record: dict[str, object] = {"bn": BN, "bt": T, "n": "bme280/temperature", "u": "Cel", "v": 20.5}
    record.update(fields)
    return json.dumps([record]).encode()


def _raw(**fields: str) -> bytes:
    """A one-record pack whose fields are raw JSON text: numbers and escapes no encoder would write."""
    record = {"bn": json.dumps(BN), "bt": str(T), "n": '"bme280/temperature"', "u": '"Cel"', "v": "1"}
    record.update(fields)
    return ("[{" + ",".join(f'"{k}":{v}' for k, v in record.items() if v) + "}]").encode()


HUGE = "1" + "0" * 400  # a JSON integer no float can hold

POISON: list[tuple[str, bytes, str]] = [
    # RecursionError out of json.loads (orjson stops at depth 1024, then json recursed).
    ("deep_array", b"[" * 50_000 + b"]" * 50_000, "oversize"),
    ("deep_array_in_limit", b"[" * 30_000 + b"]" * 30_000, "bad_shape"),
    ("deep_object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "bad_shape"),
    ("deep_in_field", _raw(v="[" * 5000 + "]" * 5000), "bad_shape"),
    # OverflowError: math.isfinite / float() of an int beyond the float range.
    ("huge_int_bt", _raw(bt=HUGE), "bad_value"),
    ("huge_int_v", _raw(v=HUGE), "bad_value"),
    ("huge_int_t", _raw(t=HUGE), "bad_value"),
    ("huge_int_bver", _raw(bver=HUGE), "bad_value"),
    ("negative_huge_v", _raw(v="-" + HUGE), "bad_value"),
    # A lone surrogate in a name: the reason quoted it raw and no store could encode it.
    ("surrogate_name", _raw(n='"\\ud800"', u="", v=""), "missing_field"),
    ("surrogate_unit", _raw(u='"\\udfff"'), "unknown_unit"),
    ("nul_in_name", _raw(n='"bme280/temperature\\u0000"'), "unknown_quantity"),
    # Numbers at the edges of what JSON and floats allow.
    ("float_overflow", _raw(v="1e400"), "bad_value"),
    ("time_sum_overflow", _pack(bt=1.7e308, t=1.7e308), "bad_time"),
    ("too_many_digits", _raw(v="9" * 5000), "not_json"),
    ("nan_literal", _raw(v="NaN"), "bad_value"),
    # Wrong types in every field.
    ("bn_number", _pack(bn=5), "bad_shape"),
    ("bt_string", _pack(bt="now"), "bad_shape"),
    ("bver_list", _pack(bver=[26]), "bad_shape"),
    ("n_object", _pack(n={"a": 1}), "bad_shape"),
    ("u_list", _pack(u=["Cel"]), "bad_shape"),
    ("v_bool", _pack(v=True), "bad_value"),
    ("v_string", _pack(v="20"), "bad_value"),
    ("t_null", _pack(t=None), "bad_shape"),
    ("record_string", b'["hello"]', "bad_shape"),
    ("top_object", b'{"bn": 1}', "bad_shape"),
    ("empty_array", b"[]", "bad_shape"),
    ("duplicate_keys", _raw(v='1,"v":"x"'), "bad_value"),
    ("utf16_bom", "\ufeff[1]".encode("utf-16"), "not_json"),
    ("invalid_utf8", b'[{"bn":"\xff\xfe"}]', "not_json"),
    ("empty", b"", "not_json"),
]
