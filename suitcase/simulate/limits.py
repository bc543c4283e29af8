"""The open-file limit: one socket per device, so a process holding thousands needs it raised.

Linux's default soft limit is 1,024; the hard limit is usually far higher (1,048,576 under systemd).
The simulator's workers and the Mosquitto it starts raise their soft limit to what they need, up to
the hard limit, and say so when the hard limit is too low.
"""

from __future__ import annotations

import logging

__all__ = ["open_file_limit", "raise_open_files"]

log = logging.getLogger(__name__)


def open_file_limit() -> tuple[int, int]:
    """Return this process's (soft, hard) open-file limit; (0, 0) where there is none to read."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return 0, 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft), int(hard)


def raise_open_files(needed: int) -> int:
    """Raise the soft open-file limit to at least ``needed`` (up to the hard limit); return it.

    Logs a warning naming the fix when the hard limit is lower than ``needed``.
    """
    try:
        import resource
    except ImportError:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= needed:
        return int(soft)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # as root (CAP_SYS_RESOURCE) the hard limit can be raised too, up to fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            pass
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        log.warning(
            "the open-file limit is %d but %d sockets are needed: raise the hard limit "
            "(ulimit -Hn, or LimitNOFILE= in the systemd unit)",
            hard,
            needed,
        )
    return int(target)
