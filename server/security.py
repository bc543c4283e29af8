"""Secrets: password hashing (argon2), random tokens and codes stored only as hashes, guess limits.

Passwords are low-entropy, so they get argon2 (pwdlib). Tokens, session ids, claim and
enrollment codes are long random strings made here, so a SHA-256 of them is enough to store and
look them up by (an attacker with the table cannot invert 128+ random bits).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from collections.abc import Callable

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

__all__ = [
    "CLAIM_PREFIX",
    "ENROLL_PREFIX",
    "TOKEN_PREFIX",
    "GuessLimiter",
    "hash_password",
    "hash_secret",
    "new_claim_code",
    "new_enrollment_code",
    "new_password",
    "new_token",
    "normalise_code",
    "verify_password",
]

TOKEN_PREFIX = "sct_"
CLAIM_PREFIX = "SC"
ENROLL_PREFIX = "EN"
# Crockford base32: no I, L, O, U; easy to read off a label and type.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

_HASHER = PasswordHash((Argon2Hasher(),))
# A hash to verify against when the user does not exist, so both paths take the same time.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """Return the argon2 hash of ``password``."""
    return _HASHER.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Return whether ``password`` matches ``hashed`` (constant work when ``hashed`` is None)."""
    if hashed is None:
        _HASHER.verify(password, _DUMMY_HASH)
        return False
    try:
        return _HASHER.verify(password, hashed)
    except Exception:  # a malformed stored hash is a mismatch, not a crash
        return False


def hash_secret(secret: str) -> str:
    """Return the SHA-256 hex digest of a random secret (token, session id, code)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_equal(a: str, b: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_token() -> str:
    """Return a new API token (shown once, stored hashed)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_password() -> str:
    """Return a random password for a device's broker account."""
    return secrets.token_urlsafe(24)


def _code(prefix: str, groups: int) -> str:
    body = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(groups * 5))
    return prefix + "-" + "-".join(body[i : i + 5] for i in range(0, len(body), 5))


def new_claim_code() -> str:
    """Return a claim code for a Pi's label: ``SC-`` and 25 base32 characters (125 bits)."""
    return _code(CLAIM_PREFIX, 5)


def new_enrollment_code() -> str:
    """Return a single-use enrollment code: ``EN-`` and 20 base32 characters (100 bits)."""
    return _code(ENROLL_PREFIX, 4)


def normalise_code(text: str) -> str:
    """Return a typed code in its canonical form (upper case, O->0, I/L->1, dashes kept)."""
    cleaned = text.strip().upper().replace(" ", "")
    return cleaned.translate(str.maketrans("OIL", "011"))


class GuessLimiter:
    """Counts failed guesses (codes, logins) per client address in a sliding window.

    Args:
        limit: failures allowed per ``window_s``.
        clock: UTC epoch seconds now.
    """

    def __init__(self, limit: int, clock: Callable[[], float], window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, key: str) -> float:
        """Return 0 when ``key`` may guess now, else the seconds until it may."""
        now = self._clock()
        with self._lock:
            times = self._recent(key, now)
            if len(times) < self.limit:
                return 0.0
            return max(1.0, times[0] + self.window_s - now)

    def failed(self, key: str) -> None:
        """Count one failed guess of ``key``."""
        now = self._clock()
        with self._lock:
            self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # bound memory under a distributed guessing run
                self._failures = {k: v for k, v in self._failures.items() if v}
