"""Start an MQTT broker for the demo and the tests: embedded (amqtt) or a real Mosquitto.

Both listen on loopback on a free port and are stopped with ``stop()`` (or as a context manager).
Mosquitto always loads ``deploy/mosquitto/suitcase.conf`` (docs/architecture.md, "Delivery guarantees").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kits.errors import ConfigError, SuitcaseError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from suitcase.services.mosquitto import Listener
    from suitcase.services.tls import TlsFiles

__all__ = [
    "Broker",
    "BrokerKind",
    "EmbeddedBroker",
    "MosquittoBroker",
    "default_broker_kind",
    "find_mosquitto",
    "free_port",
    "start_broker",
    "wait_for_port",
]

log = logging.getLogger(__name__)
BrokerKind = Literal["embedded", "mosquitto"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` now (Debian's services may hold the usual ones)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``.

    Raises:
        SuitcaseError: nothing listens there within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise SuitcaseError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def find_mosquitto() -> str | None:
    """Return the path of the ``mosquitto`` binary (PATH or /usr/sbin), or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def default_broker_kind() -> BrokerKind:
    """Embedded when no Mosquitto is installed, Mosquitto otherwise."""
    return "mosquitto" if find_mosquitto() else "embedded"


class Broker(Protocol):
    host: str
    port: int

    def start(self) -> None: ...
    def stop(self) -> None: ...


class _BrokerBase:
    host: str
    port: int

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _BrokerBase:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


class EmbeddedBroker(_BrokerBase):
    """amqtt running on its own event loop in a background thread: pure Python, any laptop."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise SuitcaseError("the embedded MQTT broker did not start within 15 s")
        if self._error is not None:
            raise SuitcaseError(
                f"the embedded MQTT broker failed to start on {self.host}:{self.port}: {self._error}"
            ) from self._error
        # amqtt listens once start() has returned; probing the port would only make it log errors
        log.info("embedded broker on %s", self.url)

    def _run(self) -> None:
        from amqtt.broker import Broker as AmqttBroker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def boot() -> None:
            self._broker = AmqttBroker(config)
            await self._broker.start()

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._broker.shutdown())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None


_PR_SET_PDEATHSIG = 1
# Open files a Mosquitto we start may hold (one socket per client): 200,000 clients.
BROKER_OPEN_FILES = 200_000


def _raise_child_open_files(pid: int) -> None:
    """Raise a child's open-file limit (Linux ``prlimit``; elsewhere nothing): as root to
    :data:`BROKER_OPEN_FILES`, otherwise the soft limit to the hard one."""
    try:
        import resource

        _soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (BROKER_OPEN_FILES, BROKER_OPEN_FILES))
            return
        except (OSError, ValueError):  # not root: up to the hard limit
            pass
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, AttributeError, OSError, ValueError) as exc:
        log.warning("could not raise mosquitto's open-file limit: %s", exc)


def _die_with_parent_hook() -> Any:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent dies, or None.

    The libc function is looked up here, before the fork, so the child only makes one system call.
    Only from the main thread: the "parent" of PR_SET_PDEATHSIG is the forking *thread*.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, 15, 0, 0, 0)

    return hook


class MosquittoBroker(_BrokerBase):
    """A real Mosquitto 2 process on loopback, configured by :func:`suitcase.services.mosquitto.render_conf`.

    It runs in its own session, so a Ctrl-C or a hang-up meant for its parent's terminal never
    reaches it directly (the parent stops it last, after the clients that use it), and on Linux it
    is sent SIGTERM when its parent dies, however that happens: it is never left orphaned holding
    its port.

    Args:
        workdir: where the run's config, persistence file and log go.
        extra_config: further config lines (e.g. a password file).
        allow_anonymous: whether clients may connect without a name (default: unless dynsec_file).
        dynsec_file: authenticate every client through the dynamic-security plugin with this state
            (:func:`suitcase.services.mosquitto.dynsec_state`).
        tls: speak only TLS on the listener, with these files (:mod:`suitcase.services.tls`).
        listeners: further listeners (:class:`suitcase.services.mosquitto.Listener`).
        device_accounts_dir: devices' accounts in password and ACL files there, reloaded by the
            server (``server/broker_files.py``), beside dynamic security's stack accounts.
    """

    def __init__(
        self,
        workdir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_config: str = "",
        allow_anonymous: bool | None = None,
        *,
        dynsec_file: Path | None = None,
        tls: TlsFiles | None = None,
        listeners: Sequence[Listener] = (),
        device_accounts_dir: Path | None = None,
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise ConfigError(
                "mosquitto is not installed: `apt-get install mosquitto` (Debian/Ubuntu) "
                "or use `--broker embedded`"
            )
        self.binary = binary
        self.host = host
        self.port = port or free_port(host)
        self.workdir = workdir
        self.extra_config = extra_config
        self.allow_anonymous = allow_anonymous
        self.dynsec_file = dynsec_file
        self.tls = tls
        self.listeners = tuple(listeners)
        self.device_accounts_dir = device_accounts_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        from suitcase.services.mosquitto import Listener, render_conf

        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.device_accounts_dir is not None:
            from server.broker_files import ensure_account_files

            ensure_account_files(self.device_accounts_dir)
        text = render_conf(
            [Listener(self.port, self.host, self.tls), *self.listeners],
            persistence_dir=self.workdir,
            log_file=self.log_path,
            dynsec_file=self.dynsec_file,
            device_accounts_dir=self.device_accounts_dir,
            allow_anonymous=self.allow_anonymous,
            extra=self.extra_config,
        )
        self.config_path.write_text(text)
        return self.config_path

    def start(self) -> None:
        self.write_config()
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent_hook(),  # one prctl call, resolved before the fork
        )
        # One socket per client: thousands of devices need more than the default 1,024 open files.
        _raise_child_open_files(self._process.pid)
        try:
            wait_for_port(self.host, self.port)
        except SuitcaseError as exc:
            self._process.kill()
            _, err = self._process.communicate(timeout=5)
            log_text = self.log_path.read_text() if self.log_path.exists() else ""
            raise SuitcaseError(
                f"mosquitto did not start on {self.host}:{self.port}: "
                f"{err.decode(errors='replace').strip()} {log_text.strip()[-500:]}"
            ) from exc
        log.info("mosquitto on %s (config %s)", self.url, self.config_path)

    @property
    def pid(self) -> int | None:
        """The Mosquitto process id while it runs."""
        return self._process.pid if self._process is not None else None

    def kill(self) -> None:
        """Kill Mosquitto at once (a forced stop); no wait."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None


def start_broker(
    kind: BrokerKind, workdir: Path, host: str = "127.0.0.1"
) -> EmbeddedBroker | MosquittoBroker:
    """Start a broker of ``kind`` on a free port of ``host`` (loopback by default) and return it."""
    broker: EmbeddedBroker | MosquittoBroker = (
        EmbeddedBroker(host) if kind == "embedded" else MosquittoBroker(workdir / "mosquitto", host=host)
    )
    broker.start()
    return broker
