"""Hosts made of Linux network namespaces, on one private /24 behind a switch namespace.

Layout of one :class:`Network` (``N`` is the claimed slot, 1..250)::

    root namespace: the test, "operator" 10.213.N.1
        |  veth
    sc<N>-switch: bridge br0 --veth-- sc<N>-broker  10.213.N.10 (eth0)
                             --veth-- sc<N>-store   10.213.N.11
                             ...

Every host is a namespace with its own loopback and one link (``eth0``) to the switch. The switch
end of that link is what :meth:`Network.cut` takes down: a pulled cable, so packets vanish and TCP
notices only by its own timeouts, as on a real network. :meth:`Network.partition` drops only the
traffic between two hosts, silently too: each sends the other's packets to a MAC address nobody
has (a permanent neighbour entry; this kernel has no tc drop action nor netfilter), the rest flows.

Slots are claimed in ``/run/suitcase-hosts/<N>`` (holding the owner's pid) under a lock, so runs in
parallel (several engineers on one machine) never share a subnet or a name; a slot whose owner
is dead is a crashed run's leftover, and claiming cleans it (its processes killed, its namespaces
and links deleted). Only addresses of these namespaces are used; :meth:`Network.close` removes
every one of them, and waits (bounded) until the kernel has.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLAIMS", "SUBNET_BASE", "Link", "Network", "NetworkError", "ip", "netns_inode"]

CLAIMS = Path(os.environ.get("SUITCASE_HOSTS_CLAIMS", "/run/suitcase-hosts"))
SUBNET_BASE = "10.213"  # 10.213.N.0/24, N = the slot
_SLOTS = range(1, 251)
_NS_PATTERN = re.compile(r"^sc(\d+)-")
_ROOT_LINK = re.compile(r"^sc(\d+)-op$")
_TIMEOUT = 15.0
_NOWHERE = "02:00:00:00:de:ad"  # a locally administered MAC no host of a lab has


class NetworkError(RuntimeError):
    """A namespace, link or address could not be made or removed."""


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (inside namespace ``ns`` when given); raise NetworkError on failure if ``check``."""
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done


def netns_inode(name: str) -> int:
    """The inode that identifies namespace ``name`` (what /proc/PID/ns/net links to)."""
    return os.stat(f"/run/netns/{name}").st_ino


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    done = ip("netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process inside ``ns`` and wait (bounded) until none is left."""
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
        pids = [int(p) for p in done.stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    raise NetworkError(f"processes in namespace {ns} survived SIGKILL for {_TIMEOUT:.0f} s")


def _remove_slot(slot: int) -> None:
    """Delete every namespace and root link of ``slot`` (its processes killed first)."""
    prefix = f"sc{slot}-"
    for ns in _namespaces():
        if ns.startswith(prefix):
            _kill_namespace_processes(ns)
            ip("netns", "delete", ns, check=False)
    ip("link", "delete", f"sc{slot}-op", check=False)
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:  # the kernel frees a namespace's links asynchronously
        if ip("link", "show", f"sc{slot}-op", check=False).returncode != 0 and not any(
            ns.startswith(prefix) for ns in _namespaces()
        ):
            return
        time.sleep(0.05)
    raise NetworkError(f"namespaces or links of slot {slot} still exist after {_TIMEOUT:.0f} s")


def _subnet_taken(slot: int) -> bool:
    """Whether anything on this machine already routes 10.213.<slot>.0/24 (not ours)."""
    net = ipaddress.ip_network(f"{SUBNET_BASE}.{slot}.0/24")
    for line in ip("-4", "route", "show", check=False).stdout.splitlines():
        dest = line.split()[0]
        if dest == "default":
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(dest, strict=False).overlaps(net):
                return True
    return False


def clean_leftovers() -> list[int]:
    """Remove the slots of runs that died without cleaning up; return the slots removed.

    Call it with the claims lock held.
    """
    removed: list[int] = []
    owned = {int(p.name) for p in CLAIMS.iterdir() if p.name.isdigit()} if CLAIMS.exists() else set()
    seen = {int(m.group(1)) for ns in _namespaces() if (m := _NS_PATTERN.match(ns))}
    seen |= {
        int(m.group(1))
        for line in ip("-o", "link", "show", check=False).stdout.splitlines()
        if (m := _ROOT_LINK.match(line.split(":")[1].strip().split("@")[0]))
    }
    for slot in sorted(owned | seen):
        claim = CLAIMS / str(slot)
        try:
            owner = int(claim.read_text().strip() or 0)
        except (OSError, ValueError):
            owner = 0
        if owner and _alive(owner):
            continue
        _remove_slot(slot)
        claim.unlink(missing_ok=True)
        removed.append(slot)
    return removed


@contextlib.contextmanager
def _claims_locked() -> Iterator[None]:
    CLAIMS.mkdir(parents=True, exist_ok=True)
    with (CLAIMS / ".lock").open("w") as lock:
        deadline = time.monotonic() + 4 * _TIMEOUT  # holders only claim or clean up, each bounded
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NetworkError(f"{CLAIMS / '.lock'} is held for over {4 * _TIMEOUT:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Link:
    """One host's place on the network: namespace, address, and the switch end of its cable."""

    name: str
    ns: str
    address: str
    switch_end: str
    cut: bool = False
    dropped_from: set[str] = field(default_factory=set)


class Network:
    """A private /24 with a switch namespace; :meth:`add` puts a new host namespace on it.

    Use as a context manager, or call :meth:`close` (it is safe to call twice, and after a
    failure half-way through :meth:`add`).
    """

    def __init__(self) -> None:
        self.slot = 0
        self.links: dict[str, Link] = {}
        with _claims_locked():
            self.leftovers_removed = clean_leftovers()
            for slot in _SLOTS:
                claim = CLAIMS / str(slot)
                if claim.exists() or _subnet_taken(slot):
                    continue
                claim.write_text(str(os.getpid()))
                self.slot = slot
                break
            else:
                raise NetworkError(f"no free slot in {CLAIMS} (all {len(_SLOTS)} subnets taken)")
        self.prefix = f"sc{self.slot}-"
        self.subnet = ipaddress.ip_network(f"{SUBNET_BASE}.{self.slot}.0/24")
        self.switch = f"{self.prefix}switch"
        self.operator_address = f"{SUBNET_BASE}.{self.slot}.1"
        self._next_host = 10
        try:
            self._make_switch()
        except BaseException:
            self.close()
            raise

    def _make_switch(self) -> None:
        ip("netns", "add", self.switch)
        ip("link", "set", "lo", "up", ns=self.switch)
        ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        ip("link", "set", "br0", "up", ns=self.switch)
        # The operator's cable: the test process reaches the hosts through it.
        root_end = f"{self.prefix}op"
        ip("link", "add", root_end, "type", "veth", "peer", "name", "op", "netns", self.switch)
        ip("link", "set", "op", "master", "br0", ns=self.switch)
        ip("link", "set", "op", "up", ns=self.switch)
        ip("addr", "add", f"{self.operator_address}/24", "dev", root_end)
        ip("link", "set", root_end, "up")

    def add(self, name: str) -> Link:
        """Make host ``name``: a namespace with loopback and ``eth0`` on the switch; return its link."""
        if name in self.links:
            raise NetworkError(f"host {name} exists already")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,20}", name):
            raise NetworkError(f"host name {name!r}: use lower-case letters, digits and '-' (at most 21)")
        if self._next_host > 250:
            raise NetworkError("no address left on the /24")
        ns = f"{self.prefix}{name}"
        address = f"{SUBNET_BASE}.{self.slot}.{self._next_host}"
        switch_end = f"h{self._next_host}"
        self._next_host += 1
        ip("netns", "add", ns)
        self.links[name] = Link(name, ns, address, switch_end)
        ip("link", "set", "lo", "up", ns=ns)
        ip(
            "link",
            "add",
            switch_end,
            "netns",
            self.switch,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        ip("link", "set", switch_end, "master", "br0", ns=self.switch)
        ip("link", "set", switch_end, "up", ns=self.switch)
        ip("addr", "add", f"{address}/24", "dev", "eth0", ns=ns)
        ip("link", "set", "eth0", "up", ns=ns)
        return self.links[name]

    # -- faults ---------------------------------------------------------------------------------
    def cut(self, name: str) -> None:
        """Pull ``name``'s cable: nothing reaches it or leaves it until :meth:`restore`."""
        link = self.links[name]
        ip("link", "set", link.switch_end, "down", ns=self.switch)
        link.cut = True

    def restore(self, name: str) -> None:
        """Plug ``name``'s cable back in."""
        link = self.links[name]
        ip("link", "set", link.switch_end, "up", ns=self.switch)
        link.cut = False

    @contextlib.contextmanager
    def link_cut(self, name: str) -> Iterator[None]:
        """``with network.link_cut("store"): ...`` cuts the link for the block, restores it after."""
        self.cut(name)
        try:
            yield
        finally:
            self.restore(name)

    def _blind(self, name: str, other: str, blind: bool) -> None:
        """Make ``name`` send ``other``'s packets to a MAC address no host has (or undo it)."""
        link, target = self.links[name], self.links[other].address
        if blind:
            ip("neigh", "replace", target, "lladdr", _NOWHERE, "dev", "eth0", "nud", "permanent", ns=link.ns)
        else:
            ip("neigh", "del", target, "dev", "eth0", ns=link.ns, check=False)

    def partition(self, a: str, b: str) -> None:
        """Drop every packet between hosts ``a`` and ``b`` (both ways); others still reach both."""
        self.links[a].dropped_from.add(b)
        self.links[b].dropped_from.add(a)
        self._blind(a, b, True)
        self._blind(b, a, True)

    def heal(self, a: str, b: str | None = None) -> None:
        """Undo :meth:`partition` of ``a`` and ``b`` (or of ``a`` and every host)."""
        others = [b] if b is not None else sorted(self.links[a].dropped_from)
        for other in others:
            self.links[a].dropped_from.discard(other)
            self.links[other].dropped_from.discard(a)
            self._blind(a, other, False)
            self._blind(other, a, False)

    @contextlib.contextmanager
    def partitioned(self, a: str, b: str) -> Iterator[None]:
        """``with network.partitioned("pis", "broker"): ...``: partition for the block, heal after."""
        self.partition(a, b)
        try:
            yield
        finally:
            self.heal(a, b)

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill what still runs in the hosts, delete every namespace and link, release the slot."""
        if not self.slot:
            return
        with _claims_locked():
            try:
                _remove_slot(self.slot)
            finally:
                (CLAIMS / str(self.slot)).unlink(missing_ok=True)
        self.slot = 0

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
