"""Device accounts for 100 to 10,000 devices: Mosquitto's dynamic security against its own files.

Per fleet size, on a fresh Mosquitto 2.0 with the stack's dynamic-security state:

- **dynsec** (before; ``server/broker_admin.py``): one bulk creation through ``DynSecAdmin``, the
  way a CSV import makes them (batches of at most 250 devices, two commands each, sized to about
  4 s of the broker's time). Its cost is O(n^2): the plugin rewrites its whole JSON file after
  every command. Up to ``SUITCASE_BENCH_DYNSEC_MAX`` devices (2,000) it is measured whole; above,
  the broker starts with the JSON of n accounts already written and the time of 20 more is
  measured (the marginal cost c(n) per account), and the total is estimated as
  n x (c(100) + c(n)) / 2 (the cost per account grows linearly with the file).
- **files** (after; ``server/broker_files.py``): one ``MosquittoFilesAdmin.create_devices`` of all
  n (one write of the password and ACL files, one SIGHUP, until the broker accepts the new
  barrier password); then one more device (an enrollment in a fleet of n) and a revocation.

Also the broker's memory (VmRSS) and the size of its account files, and at the largest size the
reload of the files with ``SUITCASE_BENCH_CONNECTED`` devices (2,000) connected (Mosquitto checks
every connected client's password again on reload). Writes ``benchmarks/results/accounts.json``,
``accounts.md`` and ``accounts.svg``. ``SUITCASE_BENCH_ACCOUNTS=100,1000`` chooses the sizes.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._svg import line_chart
from benchmarks._timing import Figure
from server.broker_admin import DeviceAccount, DynSecAdmin, device_acls
from server.broker_files import (
    ACL_FILE,
    PASSWORD_FILE,
    PID_FILE,
    MosquittoFilesAdmin,
    login_probe,
    signal_reload,
)
from suitcase.broker import MosquittoBroker
from suitcase.services.mosquitto import SERVER_ROLE, Account, _hashed, dynsec_state

__all__ = ["run"]

RESULTS = Path(__file__).parent / "results"
SIZES = tuple(
    int(s) for s in os.environ.get("SUITCASE_BENCH_ACCOUNTS", "100,1000,2000,5000,10000").split(",")
)
DYNSEC_MAX = int(os.environ.get("SUITCASE_BENCH_DYNSEC_MAX", "2000"))
CONNECTED = int(os.environ.get("SUITCASE_BENCH_CONNECTED", "2000"))
MARGINAL = 50
ADMIN = Account("bench-admin", "bench-admin-password", (SERVER_ROLE,))


@dataclass
class Size:
    devices: int
    dynsec_s: float = 0.0  # measured (dynsec_measured) or n x (c(smallest) + c(n)) / 2
    dynsec_measured: bool = True
    dynsec_per_account_s: float = 0.0  # c(n): 50 more accounts' cost each, on a broker holding n
    dynsec_estimate_s: float = 0.0  # n x (c(smallest) + c(n)) / 2, at every size
    dynsec_file_mb: float = 0.0
    dynsec_rss_mb: float = 0.0
    files_s: float = 0.0
    files_one_more_s: float = 0.0
    files_revoke_s: float = 0.0
    files_mb: float = 0.0
    files_rss_mb: float = 0.0


def _accounts(n: int, prefix: str = "dev") -> list[DeviceAccount]:
    return [
        DeviceAccount("bench", f"{prefix}-{i:06d}", f"{prefix}-{i:06d}", f"pw-{i:06d}-x") for i in range(n)
    ]


def _rss_mb(pid: int | None) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def _dynsec_broker(root: Path, existing: int = 0, files: bool = False) -> MosquittoBroker:
    state = dynsec_state([ADMIN])
    hashed = _hashed("x" * 24)
    for account in _accounts(existing, "old"):
        role = f"device-{account.device}"
        state["roles"].append({"rolename": role, "acls": device_acls(account.org, account.device)})
        state["clients"].append({"username": account.username, **hashed, "roles": [{"rolename": role}]})
    root.mkdir(parents=True)
    dynsec = root / "dynamic-security.json"
    dynsec.write_text(json.dumps(state))
    broker = MosquittoBroker(
        root / "mosquitto", dynsec_file=dynsec, device_accounts_dir=root / "accounts" if files else None
    )
    broker.start()
    return broker


def _dynsec_create(root: Path, existing: int, todo: list[DeviceAccount]) -> tuple[float, float, float]:
    """Seconds to create ``todo`` on a broker already holding ``existing``; its RSS and JSON MB."""
    broker = _dynsec_broker(root, existing)
    try:
        admin = DynSecAdmin(broker.host, broker.port, ADMIN.username, ADMIN.password, timeout=30)
        try:
            started = time.perf_counter()
            admin.create_devices(todo)
            seconds = time.perf_counter() - started
        finally:
            admin.close()
        return seconds, _rss_mb(broker.pid), (root / "dynamic-security.json").stat().st_size / 1e6
    finally:
        broker.stop()


def _dynsec(size: Size, root: Path) -> None:
    """The marginal cost at this size always; the whole creation up to :data:`DYNSEC_MAX`."""
    n = size.devices
    # Above DYNSEC_MAX the broker's memory and file are those holding n + 50 accounts.
    seconds, size.dynsec_rss_mb, size.dynsec_file_mb = _dynsec_create(
        root / "marginal", n, _accounts(MARGINAL)
    )
    size.dynsec_per_account_s = seconds / MARGINAL
    size.dynsec_measured = n <= DYNSEC_MAX
    if size.dynsec_measured:
        size.dynsec_s, size.dynsec_rss_mb, size.dynsec_file_mb = _dynsec_create(root / "all", 0, _accounts(n))


def _connect_many(host: str, port: int, accounts: list[DeviceAccount]) -> list[socket.socket]:
    """Log ``accounts`` in (MQTT 3.1.1, keepalive 0) and keep the sockets open."""

    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    socks = []
    for a in accounts:
        body = (
            field("MQTT")
            + bytes([4, 0xC2])
            + b"\0\0"
            + field(a.device)
            + field(a.username)
            + field(a.password)
        )
        sock = socket.create_connection((host, port), timeout=30)
        sock.sendall(bytes([0x10, len(body)]) + body)
        if sock.recv(4)[3:4] != b"\0":
            raise RuntimeError(f"{a.username} was refused")
        socks.append(sock)
    return socks


def _files(size: Size, root: Path, connected: int) -> dict[str, float]:
    n = size.devices
    broker = _dynsec_broker(root, files=True)
    extra: dict[str, float] = {}
    try:
        directory = root / "accounts"
        probe = login_probe(broker.host, broker.port)
        admin = MosquittoFilesAdmin(directory, reload=signal_reload(directory / PID_FILE), probe=probe)
        accounts = _accounts(n)
        started = time.perf_counter()
        admin.create_devices(accounts)
        size.files_s = time.perf_counter() - started
        started = time.perf_counter()
        admin.create_device("bench", "one-more", "one-more", "pw-one-more")
        size.files_one_more_s = time.perf_counter() - started
        started = time.perf_counter()
        admin.delete_device("one-more")
        size.files_revoke_s = time.perf_counter() - started
        size.files_rss_mb = _rss_mb(broker.pid)
        size.files_mb = sum((directory / name).stat().st_size for name in (PASSWORD_FILE, ACL_FILE)) / 1e6
        if connected:
            socks = _connect_many(broker.host, broker.port, accounts[:connected])
            try:
                extra["rss_connected_mb"] = _rss_mb(broker.pid)
                started = time.perf_counter()
                admin.create_device("bench", "one-more", "one-more", "pw-one-more")
                extra["one_more_connected_s"] = time.perf_counter() - started
            finally:
                for sock in socks:
                    sock.close()
    finally:
        broker.stop()
    return extra


def _table(sizes: list[Size], extra: dict[str, float]) -> str:
    def row(name: str, values: list[str]) -> str:
        return f"| {name} | " + " | ".join(values) + " |"

    lines = [
        "| figure | " + " | ".join(f"{s.devices:,}" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
        row(
            "dynsec: create all (s)",
            [f"{s.dynsec_s:.1f}" + ("" if s.dynsec_measured else " (est.)") for s in sizes],
        ),
        row(
            "dynsec: c(n), per account at this size (ms)",
            [f"{s.dynsec_per_account_s * 1000:.0f}" for s in sizes],
        ),
        row("dynsec: estimate n(c(100)+c(n))/2 (s)", [f"{s.dynsec_estimate_s:.1f}" for s in sizes]),
        row("files: create all (s)", [f"{s.files_s:.2f}" for s in sizes]),
        row("files: one more device (s)", [f"{s.files_one_more_s:.2f}" for s in sizes]),
        row("files: revoke one (s)", [f"{s.files_revoke_s:.2f}" for s in sizes]),
        row("dynsec / files, create all", [f"{s.dynsec_s / s.files_s:.0f}x" for s in sizes]),
        row("dynsec JSON (MB)", [f"{s.dynsec_file_mb:.2f}" for s in sizes]),
        row("password + ACL files (MB)", [f"{s.files_mb:.2f}" for s in sizes]),
        row("broker RSS, dynsec (MB)", [f"{s.dynsec_rss_mb:.1f}" for s in sizes]),
        row("broker RSS, files (MB)", [f"{s.files_rss_mb:.1f}" for s in sizes]),
    ]
    if extra:
        lines.append("")
        lines.append(
            f"At {sizes[-1].devices:,} accounts with {CONNECTED:,} of them connected: one more device "
            f"{extra['one_more_connected_s']:.2f} s (none connected: {sizes[-1].files_one_more_s:.2f} s), "
            f"broker RSS {extra['rss_connected_mb']:.1f} MB."
        )
    return "\n".join(lines) + "\n"


def _plots(sizes: list[Size]) -> None:
    """accounts.svg: both ways (dynamic security measured, and estimated at every size);
    accounts-files.svg: the files alone, whose curve is flat beside dynamic security's."""
    line_chart(
        RESULTS / "accounts.svg",
        "Creating n device accounts in Mosquitto 2.0",
        "devices",
        "seconds",
        {
            "dynsec, measured": [(s.devices, s.dynsec_s) for s in sizes if s.dynsec_measured],
            "dynsec, n(c(100)+c(n))/2": [(s.devices, s.dynsec_estimate_s) for s in sizes],
            "files": [(s.devices, s.files_s) for s in sizes],
        },
    )
    line_chart(
        RESULTS / "accounts-files.svg",
        "Device accounts in Mosquitto's files",
        "devices",
        "seconds",
        {
            "create all": [(s.devices, s.files_s) for s in sizes],
            "one more device": [(s.devices, s.files_one_more_s) for s in sizes],
            "revoke one": [(s.devices, s.files_revoke_s) for s in sizes],
        },
    )


def run() -> list[Figure]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the connected devices' sockets
    sizes = [Size(n) for n in SIZES]
    extra: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as tmp:
        for i, size in enumerate(sizes):
            base = Path(tmp) / str(size.devices)
            _dynsec(size, base / "dynsec")
            first = sizes[0].dynsec_per_account_s
            size.dynsec_estimate_s = size.devices * (first + size.dynsec_per_account_s) / 2
            if not size.dynsec_measured:
                size.dynsec_s = size.dynsec_estimate_s
            last = i == len(sizes) - 1
            extra = _files(size, base / "files", min(CONNECTED, size.devices) if last else 0) or extra
            print(
                f"accounts {size.devices}: dynsec {size.dynsec_s:.1f} s, files {size.files_s:.2f} s",
                flush=True,
            )
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "accounts.json").write_text(
        json.dumps({"sizes": [asdict(s) for s in sizes], "connected": CONNECTED, **extra}, indent=2)
    )
    (RESULTS / "accounts.md").write_text(_table(sizes, extra))
    _plots(sizes)
    return [
        Figure(
            f"device accounts: {s.devices:,} (files)",
            s.files_s,
            "dynsec" + ("" if s.dynsec_measured else " (est.)"),
            s.dynsec_s,
            s.devices,
            "accounts",
        )
        for s in sizes
    ]


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.rate:,.0f} accounts/s, {figure.ratio:.4f}x {figure.baseline}")
