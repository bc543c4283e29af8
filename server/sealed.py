"""Sealing a secret to a claim code: what waits for a Pi is readable only with that Pi's code.

Between a staff member's bind and the agent's next poll, the device's config (broker password,
device token) waits in the registry. The registry keeps only the claim code's SHA-256 hash, so a
copy of the database alone cannot open it: the sealed bytes are keyed by HMAC-SHA256 of the code
itself (125 random bits), which the staff member's phone and the agent present and the server
never stores.

The construction uses the standard library only: an HMAC-SHA256 keystream in counter mode (HMAC
as a pseudo-random function) for confidentiality, then HMAC-SHA256 over nonce and ciphertext
(encrypt-then-MAC) for integrity, with separate keys derived from the code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from kits.errors import SuitcaseError

__all__ = ["SealBroken", "seal", "unseal"]

_VERSION = 1


class SealBroken(SuitcaseError):
    """The sealed value was not made with this code, or was altered."""


def _key(code: str, purpose: bytes) -> bytes:
    return hmac.new(code.encode(), b"suitcase-seal-v1:" + purpose, hashlib.sha256).digest()


def _stream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def seal(code: str, value: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Seal ``value`` (JSON-able) to ``code``; ``extra`` (e.g. an expiry) stays readable and is
    covered by the tag, so it cannot be changed without the code either."""
    plain = json.dumps(value, separators=(",", ":")).encode()
    nonce = secrets.token_bytes(16)
    cipher = bytes(a ^ b for a, b in zip(plain, _stream(_key(code, b"enc"), nonce, len(plain)), strict=True))
    clear = json.dumps(extra or {}, sort_keys=True, separators=(",", ":")).encode()
    tag = hmac.new(_key(code, b"mac"), nonce + clear + cipher, hashlib.sha256).digest()
    return {"v": _VERSION, "nonce": _b64(nonce), "data": _b64(cipher), "tag": _b64(tag), **(extra or {})}


def unseal(code: str, sealed: dict[str, Any]) -> Any:
    """Open what :func:`seal` made with ``code``.

    Raises:
        SealBroken: another code, an altered value, or not a sealed value at all.
    """
    try:
        if sealed.get("v") != _VERSION:
            raise SealBroken("not a sealed value of this version")
        nonce = base64.urlsafe_b64decode(sealed["nonce"])
        cipher = base64.urlsafe_b64decode(sealed["data"])
        tag = base64.urlsafe_b64decode(sealed["tag"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SealBroken("not a sealed value") from exc
    extra = {k: v for k, v in sealed.items() if k not in ("v", "nonce", "data", "tag")}
    clear = json.dumps(extra, sort_keys=True, separators=(",", ":")).encode()
    expected = hmac.new(_key(code, b"mac"), nonce + clear + cipher, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, tag):
        raise SealBroken("the sealed value was made with another code or was altered")
    plain = bytes(a ^ b for a, b in zip(cipher, _stream(_key(code, b"enc"), nonce, len(cipher)), strict=True))
    return json.loads(plain)
