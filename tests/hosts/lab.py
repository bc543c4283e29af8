"""The lab: hosts on a private network, their directories, and the watcher of their files."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from tests.hosts.host import Host
from tests.hosts.network import Network, netns_inode
from tests.hosts.watch import FileWatcher, Trespass

__all__ = ["Lab"]


class Lab:
    """Hosts made on demand (:meth:`host`), each a namespace with an address and a directory.

    The directory tree is ``root/hosts/<name>/``; ``root`` is world-traversable (mode 0755) so
    services that drop root (PostgreSQL) reach their own directory. Faults: :meth:`cut`,
    :meth:`restore`, :meth:`partition`, :meth:`heal` (see :class:`tests.hosts.network.Network`).
    :meth:`close` stops every process, removes the namespaces and links, and the directory unless
    ``keep`` (or ``SUITCASE_KEEP_HOSTS=1``).
    """

    def __init__(self, root: Path | None = None, *, keep: bool = False) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="suitcase-hosts-"))
        self.root.chmod(self.root.stat().st_mode | stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | 0o005)
        self.hosts_dir = self.root / "hosts"
        self.hosts_dir.mkdir(exist_ok=True)
        self.keep = keep or os.environ.get("SUITCASE_KEEP_HOSTS") == "1"
        self.hosts: dict[str, Host] = {}
        self._namespaces: dict[int, str] = {}
        try:
            self.network = Network()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.watcher = FileWatcher(self.hosts_dir, self._namespaces)
        self.watcher.start()

    @property
    def operator_address(self) -> str:
        """The test process's own address on the lab network."""
        return self.network.operator_address

    @property
    def subnet(self) -> str:
        return str(self.network.subnet)

    def host(self, name: str) -> Host:
        """Make host ``name`` (a namespace on the network, with its own directory); return it."""
        link = self.network.add(name)
        host = Host(link, self.hosts_dir / name)
        self.hosts[name] = host
        self._namespaces[netns_inode(link.ns)] = name
        return host

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # -- faults ---------------------------------------------------------------------------------
    def cut(self, name: str) -> None:
        """Pull host ``name``'s network cable (every link of it, both ways)."""
        self.network.cut(name)

    def restore(self, name: str) -> None:
        """Plug host ``name``'s cable back in."""
        self.network.restore(name)

    def link_cut(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Cut ``name``'s link for a ``with`` block."""
        return self.network.link_cut(name)

    def partition(self, a: str, b: str) -> None:
        """Drop all traffic between hosts ``a`` and ``b``; both still reach everyone else."""
        self.network.partition(a, b)

    def heal(self, a: str, b: str | None = None) -> None:
        """Undo :meth:`partition` between ``a`` and ``b`` (or between ``a`` and everyone)."""
        self.network.heal(a, b)

    def partitioned(self, a: str, b: str) -> contextlib.AbstractContextManager[None]:
        """Partition ``a`` from ``b`` for a ``with`` block."""
        return self.network.partitioned(a, b)

    # -- results --------------------------------------------------------------------------------
    def trespasses(self) -> list[Trespass]:
        """Files a host's process held under another host's directory (should be none)."""
        return self.watcher.report()

    def describe(self, lines: int = 20) -> str:
        """Every process's log tail, for a failure report."""
        return "\n".join(host.describe(lines) for host in self.hosts.values())

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), remove the network, then the directory."""
        try:
            with contextlib.suppress(RuntimeError):
                self.watcher.stop()
            for host in reversed(list(self.hosts.values())):
                host.stop_all(timeout=10)
        finally:
            self.network.close()  # kills whatever is left in the namespaces
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
