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
from urllib.parse import urlsplit, urlunsplit

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
    "redact_url",
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


def redact_url(url: str, *, keep_path: bool = False) -> str:
    """Return ``url`` fit for a log: no password, no query, and no path unless ``keep_path``.

    Webhook URLs carry their secret in the path (``/services/T0/B0/XXXX``), database URLs in the
    password or the query (``?password=``); the host is what an operator needs to read.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if not parts.netloc:  # sqlite:///file.db: no host, no password
        bare = url.split("?", 1)[0]
        return (bare + ("?***" if parts.query else "")) if keep_path else f"{parts.scheme}:/***"
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}:***@" if parts.username and parts.password else ""
    user = user or (f"{parts.username}@" if parts.username else "")
    netloc = f"{user}{host}" + (f":{port}" if port else "")
    path = parts.path if keep_path else ("/***" if parts.path.strip("/") or parts.query else "")
    query = "***" if parts.query and keep_path else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


class GuessLimiter:
    """Counts failed guesses (codes, logins) per client address in a sliding window.

    Memory is bounded: keys whose failures have all left the window are dropped (a sweep at most
    once per window, so the cost per call stays constant), and at most ``max_keys`` are kept, the
    least recently failing dropped first.

    Args:
        limit: failures allowed per ``window_s``.
        clock: UTC epoch seconds now.
        max_keys: the most client addresses remembered at once.
    """

    def __init__(
        self, limit: int, clock: Callable[[], float], window_s: float = 60.0, max_keys: int = 10_000
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        # Insertion order is the order of the latest failure: a failing key moves to the end.
        self._failures: dict[str, deque[float]] = {}
        self._swept_at = clock()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The number of client addresses remembered."""
        return len(self._failures)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _sweep(self, now: float) -> None:
        if now - self._swept_at < self.window_s:
            return
        self._swept_at = now
        horizon = now - self.window_s
        self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > horizon}

    def retry_after(self, key: str) -> float:
        """Return 0 when ``key`` may guess now, else the seconds until it may."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            times = self._recent(key, now)
            if times is None or len(times) < self.limit:
                return 0.0
            return max(1.0, times[0] + self.window_s - now)

    def failed(self, key: str) -> None:
        """Count one failed guess of ``key``."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            times = self._recent(key, now) or deque(maxlen=self.limit)
            self._failures.pop(key, None)
            times.append(now)
            self._failures[key] = times
            while len(self._failures) > self.max_keys:
                del self._failures[next(iter(self._failures))]
