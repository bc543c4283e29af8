"""Device accounts in Mosquitto's own password and ACL files, applied by reloading the broker.

Mosquitto 2.0's dynamic-security plugin rewrites its whole JSON file after every command, so n
device accounts cost O(n^2) (README, "Sizing"). Here a bulk creation writes two files once and
asks the broker to reload them (SIGHUP): O(n) per call whatever the batch. The stack's own accounts
(server, gateway) stay in dynamic security, which defers to these files for usernames it does not
know (``password_file`` and ``acl_file`` next to the plugin in the broker's config).

Each device keeps its own username and password (PBKDF2-SHA512, as ``mosquitto_passwd`` makes
them) and an ACL block naming only its own topics. After each write a *barrier* account (fixed
name, a new random password in every write, no ACL) tells when the broker has loaded the files:
the call returns once the broker accepts the barrier's new password, so a device given its
credentials can log in, and a revoked one cannot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kits.wire import TOPIC_ROOT
from server.broker_admin import BrokerAdminError, DeviceAccount

__all__ = [
    "ACL_FILE",
    "BARRIER_USERNAME",
    "PASSWORD_FILE",
    "PID_FILE",
    "MosquittoFilesAdmin",
    "device_acl_lines",
    "ensure_account_files",
    "import_accounts",
    "login_probe",
    "password_hash",
    "signal_reload",
    "snapshot_account_files",
]

log = logging.getLogger(__name__)

PASSWORD_FILE = "devices.passwd"
ACL_FILE = "devices.acl"
PID_FILE = "mosquitto.pid"
BARRIER_USERNAME = "suitcase-accounts-barrier"
_LOCK_FILE = ".lock"
# As mosquitto_passwd and dynamic security: PBKDF2-SHA512, 12-byte salt, 101 iterations.
_ITERATIONS = 101
# Device ids are slugs; a name with a space, colon or line break would break either file.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# A probe: (username, password) -> whether the broker accepts that login now.
LoginProbe = Callable[[str, str], bool]


def password_hash(password: str, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """The password file's hash of ``password``: ``$7$iterations$salt$hash`` (mosquitto_passwd)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def device_acl_lines(org: str, device: str) -> list[str]:
    """A device's ACL block: read and write under its own topic level only.

    Dynamic security's role lists the five topics (:func:`server.broker_admin.device_acls`); here
    one line covers them and the device's own level (``suitcase/v1/{org}/{device}/#``) because
    Mosquitto 2.0 parses an ACL file with a linear search per line: five lines per device made a
    reload at 10,000 devices 3.3x slower (README, "Sizing"). Nothing outside its level is allowed.
    """
    return [f"topic readwrite {TOPIC_ROOT}/{org}/{device}/#"]


def ensure_account_files(directory: Path) -> None:
    """Create the directory and empty files, so a broker whose config names them can start."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (PASSWORD_FILE, ACL_FILE):
        path = directory / name
        if not path.exists():
            path.write_text("")
            path.chmod(0o644)


def import_accounts(directory: Path, accounts: dict[str, tuple[str, list[str]]]) -> None:
    """Add ``username -> (password hash, ACL lines)`` to the files as they are (hashes in the
    password file's ``$7$`` form), replacing those of the same names; no reload (the caller
    restarts the broker). For accounts moved out of dynamic security on an upgrade."""
    ensure_account_files(directory)
    with (directory / _LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = _Accounts.read(directory)
            for username, (hashed, acl) in accounts.items():
                current.hashes[username] = hashed
                current.acls[username] = list(acl)
            current.write(directory)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def snapshot_account_files(directory: Path) -> dict[str, str]:
    """File name -> text of both account files, read under the writers' lock (a matching pair).

    The lock file is opened read-only: a backup run as root must not create it for the writer.
    """
    lock_path = directory / _LOCK_FILE
    with contextlib.ExitStack() as stack:
        if lock_path.exists():
            lock = stack.enter_context(lock_path.open("r"))
            fcntl.flock(lock, fcntl.LOCK_SH)
            stack.callback(fcntl.flock, lock, fcntl.LOCK_UN)
        return {name: (directory / name).read_text() for name in (PASSWORD_FILE, ACL_FILE)}


def signal_reload(pid_file: Path) -> Callable[[], None]:
    """A reload that sends SIGHUP to the broker whose pid ``pid_file`` holds (Mosquitto's
    ``pid_file``): the server must run on the broker's host as its user or root."""

    def reload() -> None:
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise BrokerAdminError(
                f"could not ask the broker to reload its device accounts through {pid_file} ({exc}): "
                "check that Mosquitto runs on this host with `pid_file` set to that path, as the "
                "server's user (or set SUITCASE_SERVER_DEVICE_ACCOUNTS=dynsec)"
            ) from exc

    return reload


def login_probe(
    host: str, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 5.0
) -> LoginProbe:
    """A probe that logs in with MQTT 3.1.1 (CONNECT, CONNACK, DISCONNECT) and tells if accepted."""

    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    def probe(username: str, password: str) -> bool:
        body = (
            field("MQTT")
            + bytes([4, 0xC2])  # 3.1.1; username, password, clean session
            + (10).to_bytes(2, "big")
            + field(f"suitcase-probe-{secrets.token_hex(4)}")
            + field(username)
            + field(password)
        )
        packet = bytes([0x10]) + _remaining_length(len(body)) + body
        try:
            with socket.create_connection((host, port), timeout=timeout) as raw:
                sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
                sock.sendall(packet)
                reply = b""
                while len(reply) < 4:
                    chunk = sock.recv(4 - len(reply))
                    if not chunk:
                        return False
                    reply += chunk
                with contextlib.suppress(OSError):
                    sock.sendall(b"\xe0\x00")
                return reply[0] == 0x20 and reply[3] == 0
        except ssl.SSLError as exc:
            from server.broker_admin import tls_refusal

            raise BrokerAdminError(tls_refusal(host, port, exc)) from exc
        except OSError:
            return False

    return probe


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Accounts:
    """The two files' content: username -> password hash, username -> ACL lines."""

    def __init__(self, hashes: dict[str, str], acls: dict[str, list[str]]) -> None:
        self.hashes = hashes
        self.acls = acls

    @classmethod
    def read(cls, directory: Path) -> _Accounts:
        hashes: dict[str, str] = {}
        acls: dict[str, list[str]] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in (directory / PASSWORD_FILE).read_text().splitlines():
                name, sep, hashed = line.partition(":")
                if sep and not line.startswith("#"):
                    hashes[name] = hashed
        current: list[str] | None = None
        with contextlib.suppress(FileNotFoundError):
            for line in (directory / ACL_FILE).read_text().splitlines():
                if line.startswith("user "):
                    current = acls.setdefault(line[5:], [])
                elif line.startswith("topic ") and current is not None:
                    current.append(line)
        return cls(hashes, acls)

    def write(self, directory: Path) -> None:
        """Write both files, each replaced whole (a reload never sees half a file)."""
        names = sorted(self.hashes)
        _replace(directory / PASSWORD_FILE, "".join(f"{n}:{self.hashes[n]}\n" for n in names))
        blocks = [f"user {n}\n" + "".join(f"{line}\n" for line in self.acls[n]) for n in sorted(self.acls)]
        _replace(directory / ACL_FILE, "\n".join(blocks))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    tmp.chmod(0o644)  # Mosquitto may run as another user
    tmp.replace(path)


class MosquittoFilesAdmin:
    """Creates and deletes device accounts in Mosquitto's password and ACL files.

    Args:
        directory: where ``devices.passwd`` and ``devices.acl`` are (the broker's config names
            them: ``suitcase.services.mosquitto.render_conf(device_accounts_dir=...)``).
        reload: asks the broker to reload them (:func:`signal_reload`).
        probe: tells whether the broker accepts a login now (:func:`login_probe`);
            None: return once the broker was asked (tests of the files alone).
        timeout: seconds to wait for the broker to take the new files.
        clock, sleep: injected for tests.
    """

    def __init__(
        self,
        directory: Path,
        *,
        reload: Callable[[], None],
        probe: LoginProbe | None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.directory = directory
        self._reload = reload
        self._probe = probe
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        try:
            ensure_account_files(directory)
        except OSError as exc:
            raise BrokerAdminError(
                f"cannot keep the broker's device accounts in {directory} ({exc}): set "
                "SUITCASE_SERVER_DEVICE_ACCOUNTS_DIR to a directory the server may write and the broker read"
            ) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Accounts]:
        """The accounts, read under an exclusive lock (several server workers may write)."""
        with (self.directory / _LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield _Accounts.read(self.directory)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _apply(self, accounts: _Accounts) -> None:
        """Write the files with a new barrier password, reload, wait until the broker took them."""
        barrier = secrets.token_urlsafe(18)
        accounts.hashes[BARRIER_USERNAME] = password_hash(barrier)
        accounts.acls.pop(BARRIER_USERNAME, None)  # it may do nothing
        try:
            accounts.write(self.directory)
        except OSError as exc:
            raise BrokerAdminError(
                f"could not write the broker's device accounts in {self.directory} ({exc}): check that "
                "the server may write there (SUITCASE_SERVER_DEVICE_ACCOUNTS_DIR)"
            ) from exc
        self._reload()
        if self._probe is None:
            return
        deadline = self._clock() + self.timeout
        pause = 0.02
        while not self._probe(BARRIER_USERNAME, barrier):
            if self._clock() >= deadline:
                raise BrokerAdminError(
                    f"the broker did not take the new device accounts within {self.timeout:.0f} s: "
                    f"check that its config has `password_file {self.directory / PASSWORD_FILE}` and "
                    f"`acl_file {self.directory / ACL_FILE}`, and its log"
                )
            self._sleep(pause)
            pause = min(pause * 2, 0.5)

    @staticmethod
    def _check_name(*names: str) -> None:
        for name in names:
            if not _SAFE.match(name) or name == BARRIER_USERNAME:
                raise BrokerAdminError(
                    f"the broker's account files cannot hold the name {name!r}: device ids and orgs "
                    "are letters, digits, '.', '_' and '-'"
                )

    def create_device(self, org: str, device: str, username: str, password: str) -> None:
        """Create (or replace) the device's account."""
        self._check_name(org, device, username)
        with self._locked() as accounts:
            accounts.hashes[username] = password_hash(password)
            accounts.acls[username] = device_acl_lines(org, device)
            self._apply(accounts)
        log.info("broker account created", extra={"device": device, "org": org})

    def create_devices(self, accounts: Sequence[DeviceAccount]) -> None:
        """Create many new devices' accounts in one write and one reload.

        All or nothing: when one account exists already, nothing is written and
        :class:`BrokerAdminError` names it.
        """
        for account in accounts:
            self._check_name(account.org, account.device, account.username)
        with self._locked() as current:
            taken = [a.username for a in accounts if a.username in current.hashes]
            if taken:
                raise BrokerAdminError(
                    f"the broker refused createClient {taken[0]}: Client already exists "
                    f"({len(taken)} of {len(accounts)} accounts exist)"
                )
            for account in accounts:
                current.hashes[account.username] = password_hash(account.password)
                current.acls[account.username] = device_acl_lines(account.org, account.device)
            try:
                self._apply(current)
            except BrokerAdminError:
                # The registry rolls back: take the accounts out again, as dynamic security would.
                for account in accounts:
                    current.hashes.pop(account.username, None)
                    current.acls.pop(account.username, None)
                with contextlib.suppress(BrokerAdminError, OSError):
                    current.write(self.directory)
                    self._reload()
                raise
        log.info("broker accounts created", extra={"devices": len(accounts)})

    def delete_device(self, username: str) -> None:
        """Delete the device's account; the broker drops a session still using it on reload."""
        with self._locked() as accounts:
            if accounts.hashes.pop(username, None) is None and accounts.acls.pop(username, None) is None:
                return
            accounts.acls.pop(username, None)
            self._apply(accounts)
        log.info("broker account deleted", extra={"device": username})

    def delete_devices(self, usernames: Sequence[str]) -> None:
        """Delete many accounts in one write and one reload (those already gone are skipped)."""
        with self._locked() as accounts:
            gone = [n for n in usernames if accounts.hashes.pop(n, None) is not None]
            gone += [n for n in usernames if accounts.acls.pop(n, None) is not None]
            if not gone:
                return
            self._apply(accounts)
        log.info("broker accounts deleted", extra={"devices": len(usernames)})

    def close(self) -> None:
        """Nothing to close: the files stay as the broker's state."""
