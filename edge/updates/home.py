"""The agent home: installed versions side by side, the ``current`` link and the update's state.

Layout (``/var/lib/suitcase/agent`` on a Pi)::

    versions/<version>/site/   one installed agent version (``pip install --target``)
    current -> versions/<v>    the version the launcher starts; absent: the base install
    downloads/                 wheels being fetched (removed once installed)
    update.json                the update in progress or its outcome, until it has been replied
    health.json                written by an agent version on trial once it is healthy

Both the agent and the launcher use this module, so it imports the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["HOME_ENV", "RESTART_EXIT_CODE", "VERSION_PATTERN", "AgentHome"]

# Set by the launcher in the agent's environment: where the agent home is.
HOME_ENV = "SUITCASE_AGENT_HOME"
# The agent exits with this code after switching ``current``: the launcher starts the new version.
RESTART_EXIT_CODE = 75
# A version as a folder name: no path separators, no leading dot.
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")


class AgentHome:
    """The agent home at ``root`` (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions = root / "versions"
        self.downloads = root / "downloads"
        self.current = root / "current"
        self.state_file = root / "update.json"
        self.health_file = root / "health.json"

    def version_dir(self, version: str) -> Path:
        """Where ``version`` is installed."""
        if not VERSION_PATTERN.match(version):
            raise ValueError(f"{version!r} is not a version this agent installs")
        return self.versions / version

    def site(self, version: str | None) -> Path | None:
        """The folder to put first on ``PYTHONPATH`` for ``version`` (None: the base install)."""
        return None if version is None else self.version_dir(version) / "site"

    def current_version(self) -> str | None:
        """The version ``current`` points at; None when it is absent (the base install runs)."""
        try:
            target = os.readlink(self.current)
        except FileNotFoundError:
            return None
        return Path(target).name

    def installed(self) -> list[str]:
        """The installed versions (complete installs only)."""
        if not self.versions.is_dir():
            return []
        return sorted(
            p.name for p in self.versions.iterdir() if (p / "site").is_dir() and VERSION_PATTERN.match(p.name)
        )

    def switch(self, version: str | None) -> None:
        """Point ``current`` at ``version`` (None: the base install) in one atomic rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        if version is None:
            with contextlib.suppress(FileNotFoundError):
                self.current.unlink()
        else:
            if not (self.version_dir(version) / "site").is_dir():
                raise FileNotFoundError(f"agent version {version} is not installed in {self.versions}")
            tmp = self.root / f".current.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(Path("versions") / version)
            os.replace(tmp, self.current)
        _fsync_dir(self.root)

    def read_state(self) -> dict[str, Any] | None:
        """The update's state, None when there is none (or it cannot be read: a torn write is none)."""
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the update's state atomically (written, fsynced, renamed)."""
        _write_atomic(self.state_file, json.dumps(state, sort_keys=True))

    def clear_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def write_health(self, version: str, pid: int) -> None:
        """Say that agent ``version`` (process ``pid``) is healthy."""
        _write_atomic(self.health_file, json.dumps({"version": version, "pid": pid, "at": time.time()}))

    def read_health(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.health_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_health(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.health_file.unlink()

    def prune(self, keep: set[str | None]) -> list[str]:
        """Remove installed versions and leftovers not in ``keep``; return the versions removed."""
        removed = []
        if self.versions.is_dir():
            for path in self.versions.iterdir():
                if path.name not in keep:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
        shutil.rmtree(self.downloads, ignore_errors=True)
        return sorted(removed)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
