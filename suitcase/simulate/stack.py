"""A local production-shaped stack for ``suitcase simulate --local`` and the benchmarks.

Mosquitto with dynamic security (every device its own account), the gateway and the server, each
its own process started with the same commands an operator runs (``suitcase gateway run``,
``suitcase server run``), on loopback. The server's registry gets a global admin, an organisation
and an API token through the server's own commands and API. The gateway and the server log in to
the broker as its dynamic-security admin (one account for the stack; a city gives each its own).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kits.errors import ConfigError, SuitcaseError
from suitcase.broker import MosquittoBroker, free_port, wait_for_port
from suitcase.services.mosquitto import GATEWAY_RECORDS
from suitcase.simulate.http import Api, ApiError

__all__ = ["DYNSEC_PLUGIN", "LocalStack"]

DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
ADMIN_EMAIL = "simulate@example.org"


def _plugin() -> Path:
    for candidate in (
        DYNSEC_PLUGIN,
        Path("/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"),
        Path("/usr/lib/mosquitto_dynamic_security.so"),
    ):
        if candidate.exists():
            return candidate
    raise ConfigError(
        "Mosquitto's dynamic-security plugin is not installed: `apt-get install mosquitto` "
        "(Debian ships it in the mosquitto package)"
    )


@dataclass
class LocalStack:
    """Broker, gateway and server on loopback under ``workdir``; a context manager.

    Args:
        workdir: where configs, databases and logs go.
        gateways: gateway processes sharing one subscription group.
        dynsec: every device its own broker account; off, devices log in anonymously.
        device_accounts: with ``dynsec``, where the server makes the devices' accounts: "files"
            (Mosquitto's password and ACL files, one reload per import: 10,000 in seconds) or
            "dynsec" (the plugin's commands, O(n^2): README, "Sizing").
    """

    workdir: Path
    gateways: int = 1
    dynsec: bool = True
    device_accounts: str = "files"
    server_env: dict[str, str] = field(default_factory=dict)
    broker: MosquittoBroker | None = None
    server_url: str = ""
    token: str = ""
    org_id: int = 0
    _admin: tuple[str, str] = ("admin", "")
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def web_password(self) -> str:
        """The password of the stack's global admin (``simulate@example.org``) for the pages."""
        return self._admin[1] + "-web"

    @property
    def store_path(self) -> Path:
        return self.workdir / "store.db"

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        """The process id of each part (broker, gateway-N, server)."""
        out = {name: p.pid for name, p in self._processes.items() if p.poll() is None}
        if self.broker is not None and self.broker.pid is not None:
            out["broker"] = self.broker.pid
        return out

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if shutil.which("mosquitto_ctrl") is None:
            raise ConfigError("mosquitto_ctrl is not installed: `apt-get install mosquitto-clients`")
        password = secrets.token_urlsafe(16)
        self._admin = ("admin", password)
        if not self.dynsec:  # devices log in anonymously; no broker accounts are made
            self.broker = MosquittoBroker(self.workdir / "mosquitto")
            self.broker.start()
            self._start_server()
            for index in range(self.gateways):
                self.start_gateway(index)
            return
        dynsec = self.workdir / "dynsec.json"
        dynsec.unlink(missing_ok=True)
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(dynsec), "admin", password],
            check=True,
            capture_output=True,
        )
        state = json.loads(dynsec.read_text())
        admin = next(role for role in state["roles"] if role["rolename"] == "admin")
        # The server sends commands to devices; the gateways read everything under suitcase/v1.
        admin["acls"] += [
            {"acltype": "publishClientSend", "topic": "suitcase/v1/+/+/cmd/#", "allow": True},
            {"acltype": "subscribePattern", "topic": "#", "allow": True},
            {"acltype": "subscribePattern", "topic": "$share/#", "allow": True},
            {"acltype": "publishClientReceive", "topic": "suitcase/v1/#", "allow": True},
            # The gateways' group records (gateway/group.py): a dead gateway's share is adopted.
            {"acltype": "publishClientSend", "topic": GATEWAY_RECORDS, "allow": True},
            {"acltype": "publishClientReceive", "topic": GATEWAY_RECORDS, "allow": True},
        ]
        dynsec.write_text(json.dumps(state))
        self.broker = MosquittoBroker(
            self.workdir / "mosquitto",
            allow_anonymous=False,
            extra_config=f"plugin {_plugin()}\nplugin_opt_config_file {dynsec}\n",
            device_accounts_dir=self._accounts_dir,
        )
        self.broker.start()
        self._start_server()
        for index in range(self.gateways):
            self.start_gateway(index)

    @property
    def _accounts_dir(self) -> Path | None:
        return self.workdir / "device-accounts" if self.dynsec and self.device_accounts == "files" else None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        assert self.broker is not None
        env.update(
            {
                "SUITCASE_SERVER_REGISTRY_URL": f"sqlite:///{self.workdir / 'registry.db'}",
                "SUITCASE_SERVER_MQTT_HOST": self.broker.host,
                "SUITCASE_SERVER_MQTT_PORT": str(self.broker.port),
                "SUITCASE_SERVER_MQTT_USERNAME": self._admin[0],
                "SUITCASE_SERVER_MQTT_PASSWORD": self._admin[1],
                "SUITCASE_SERVER_MQTT_DYNSEC": "true" if self.dynsec else "false",
                "SUITCASE_SERVER_DEVICE_ACCOUNTS": "files" if self._accounts_dir else "dynsec",
                "SUITCASE_SERVER_OPEN_READS": "false",
                "SUITCASE_GATEWAY_USERNAME": self._admin[0],
                "SUITCASE_GATEWAY_PASSWORD": self._admin[1],
                "SUITCASE_ADMIN_PASSWORD": self.web_password,
                **self.server_env,
            }
        )
        if self._accounts_dir is not None:
            env["SUITCASE_SERVER_DEVICE_ACCOUNTS_DIR"] = str(self._accounts_dir)
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "suitcase", *args],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._processes[name] = process
        return process

    def log_tail(self, name: str, chars: int = 1500) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _start_server(self) -> None:
        for command in (["server", "migrate"], ["server", "create-admin", "--email", ADMIN_EMAIL]):
            done = subprocess.run(
                [sys.executable, "-m", "suitcase", *command],
                env=self._env(),
                capture_output=True,
                timeout=120,
            )
            if done.returncode:
                raise SuitcaseError(
                    f"`suitcase {' '.join(command)}` failed: {done.stderr.decode(errors='replace')[-800:]}"
                )
        port = free_port()
        self._spawn(
            "server",
            ["server", "run", "--host", "127.0.0.1", "--port", str(port), "--store", str(self.store_path)],
        )
        try:
            wait_for_port("127.0.0.1", port, timeout=60)
        except SuitcaseError as exc:
            raise SuitcaseError(f"the server did not start: {self.log_tail('server')}") from exc
        self.server_url = f"http://127.0.0.1:{port}"
        api = Api(self.server_url, timeout=60)  # a session: the cookie, then the CSRF header
        login = api.call(
            "POST", "/auth/login", "logging in", body={"email": ADMIN_EMAIL, "password": self.web_password}
        )
        api.headers["X-CSRF-Token"] = login["csrf"]
        org = api.call(
            "POST",
            "/orgs",
            "creating the organisation",
            body={"slug": "simcity", "name": "Sim City", "kind": "municipality"},
        )
        self.org_id = org["id"]
        token = api.call(
            "POST",
            "/tokens",
            "making an API token",
            body={"name": "simulate", "org_id": self.org_id, "role": "admin"},
        )
        self.token = token["token"]

    def start_gateway(self, index: int) -> None:
        """Start gateway ``index`` (client id ``sim-gateway-{index}``, shared group ``sim``)."""
        assert self.broker is not None
        args = [
            "gateway",
            "run",
            "--store",
            f"sqlite:///{self.store_path}",
            "--mqtt-host",
            self.broker.host,
            "--mqtt-port",
            str(self.broker.port),
            "--client-id",
            f"sim-gateway-{index}",
            "--quiet",
        ]
        if self.gateways > 1:
            args += ["--group", "sim", "--mqtt-version", "5"]
        self._spawn(f"gateway-{index}", args)

    def kill(self, name: str) -> None:
        """Kill one part at once (SIGKILL), e.g. ``gateway-1``."""
        process = self._processes.get(name)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def stop(self) -> None:
        """Stop the gateways, then the server, then the broker (each within a few seconds)."""
        order = sorted(self._processes, key=lambda n: (n == "server", n))
        for name in order:
            process = self._processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self._processes.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the server answers and every gateway is still running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise SuitcaseError(f"{name} stopped (exit {process.returncode}): {self.log_tail(name)}")
            try:
                Api(self.server_url, timeout=5).call("GET", "/health", "the health check")
                return
            except ApiError as exc:
                if exc.status < 500:
                    return
            except SuitcaseError:
                pass
            time.sleep(0.2)
        raise SuitcaseError(f"the stack was not ready within {timeout:.0f} s")
