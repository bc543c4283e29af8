"""The dead-letter policy of the gateway: what a dead letter keeps, how many, and what is logged.

Every message the gateway cannot write (it breaks the wire contract, its decoding failed in any
way, a sink refused its content, its device is over its series cap) becomes a dead letter with its
reason; none stops the others. Untrusted text is made storable here (a lone surrogate in a reason
would make every store's write fail, and the gateway would retry it forever).
"""

from __future__ import annotations

from gateway.store import DeadLetter

__all__ = ["letter", "storable"]


def storable(text: str) -> str:
    """``text`` as every store can hold it: valid UTF-8, lone surrogates and NULs escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def letter(received_at: float, topic: str, payload: bytes, code: str, reason: str) -> DeadLetter:
    """Build the dead letter of one message, its text made storable."""
    return DeadLetter(received_at, storable(topic), payload, code, storable(reason))
