"""Which files each host's processes hold: sampled from /proc while the test runs.

A process belongs to the host whose network namespace it is in (``/proc/PID/ns/net``), however it
was started (a child of a child, a worker a server forks). Every few milliseconds the watcher lists
each such process's open files (``/proc/PID/fd``), its mapped files (``/proc/PID/maps``) and its
working directory, and remembers every path under the lab's hosts directory. A path under another
host's directory is a trespass: no tier reads a file another tier writes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileWatcher", "Trespass"]


@dataclass(frozen=True)
class Trespass:
    """Process ``pid`` (``command``) of host ``host`` held ``path``, which belongs to host ``owner``."""

    host: str
    pid: int
    command: str
    path: str
    owner: str

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid} ({self.command}) opened {self.path} of host {self.owner}"


def _ns_inode(pid: str) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/net")  # "net:[4026532281]"
    except OSError:
        return None
    return int(link[5:-1])


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120]


class FileWatcher(threading.Thread):
    """Samples the files of every process in the given namespaces until :meth:`stop`.

    Args:
        hosts_dir: the directory holding one directory per host (``hosts_dir/<host>/``).
        namespaces: network-namespace inode -> host name; may grow while the watcher runs.
        every: seconds between samples; maps are read every ``maps_every``-th sample.
    """

    def __init__(
        self, hosts_dir: Path, namespaces: Mapping[int, str], every: float = 0.02, maps_every: int = 5
    ) -> None:
        super().__init__(name="host-file-watcher", daemon=True)
        self.hosts_dir = str(hosts_dir) + os.sep
        self.namespaces = namespaces
        self.every = every
        self.maps_every = maps_every
        self.samples = 0
        self.trespasses: dict[tuple[str, str], Trespass] = {}
        self.own_paths: dict[str, set[str]] = {}  # host -> own files seen (proof the watcher sees)
        self.pids_seen: dict[str, set[int]] = {}
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def _owner(self, path: str) -> str | None:
        if not path.startswith(self.hosts_dir):
            return None
        return path[len(self.hosts_dir) :].split(os.sep, 1)[0]

    def _note(self, host: str, pid: int, path: str) -> None:
        path = path.removesuffix(" (deleted)")
        owner = self._owner(path)
        if owner is None:
            return
        if owner == host:
            own = self.own_paths.setdefault(host, set())
            if len(own) < 10_000:
                own.add(path)
            return
        key = (host, path)
        if key not in self.trespasses:
            self.trespasses[key] = Trespass(host, pid, _command(pid), path, owner)

    def sample(self, with_maps: bool = True) -> None:
        """Take one sample now (the thread calls this; tests may too)."""
        namespaces = dict(self.namespaces)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            host = namespaces.get(_ns_inode(entry) or -1)
            if host is None:
                continue
            pid = int(entry)
            self.pids_seen.setdefault(host, set()).add(pid)
            with contextlib.suppress(OSError):
                self._note(host, pid, os.readlink(f"/proc/{pid}/cwd"))
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue  # exited meanwhile
            for fd in fds:
                with contextlib.suppress(OSError):  # closed between listdir and readlink
                    self._note(host, pid, os.readlink(f"/proc/{pid}/fd/{fd}"))
            if with_maps:
                with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as maps:
                    for line in maps:
                        parts = line.split(maxsplit=5)
                        if len(parts) == 6 and parts[5].startswith(os.sep):
                            self._note(host, pid, parts[5].rstrip("\n"))
        self.samples += 1

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.every):
                self.sample(with_maps=self.samples % self.maps_every == 0)
        except BaseException as exc:  # reported by stop(): a dead watcher must fail the test
            self.error = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
        if self.error is not None:
            raise RuntimeError(f"the file watcher died: {self.error!r}") from self.error

    def report(self) -> list[Trespass]:
        """Every trespass seen, sorted."""
        return sorted(self.trespasses.values(), key=lambda t: (t.host, t.path))

    def wait_samples(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.samples
        while self.samples < start + n and time.monotonic() < deadline:
            time.sleep(self.every)
