"""The agent's counters: what it did since it started, reported in ``meta`` (``counters``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["AgentCounters"]


@dataclass
class AgentCounters:
    """Counts since the agent started; each part of the agent bumps its own.

    Written from one thread each (the sampler, the publisher, paho's network thread), read for
    ``meta``: plain integers, no lock needed.
    """

    packs_published: int = 0
    readings_published: int = 0
    readings_acknowledged: int = 0
    held_unsynced: int = 0
    outbox_errors: int = 0
    published_without_outbox: int = 0
    # Readings the outbox could not take (disk full) dropped from memory past its bound while offline.
    unstored_dropped: int = 0
    publish_errors: int = 0
    commands: int = 0
    # Commands that could not be answered: not JSON, or no id to reply to.
    bad_commands: int = 0
    # Commands dropped unread: too large, or too many waiting (a flood).
    commands_dropped: int = 0
    connection_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as ``meta`` carries them."""
        return asdict(self)
