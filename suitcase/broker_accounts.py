"""The broker host's device-accounts service: ``suitcase broker accounts``.

Runs beside Mosquitto, as its user, with a stack account of its own (role ``suitcase-accounts``).
It reads the server's requests on :data:`~server.broker_admin.ACCOUNTS_REQUEST_TOPIC` (only this
role may), applies each with :class:`~server.broker_files.MosquittoFilesAdmin` to the broker's
password and ACL files here, reloads the broker and answers on
:data:`~server.broker_admin.ACCOUNTS_RESPONSE_TOPIC` once the broker took them. So the server
needs nothing of the broker's host but its URL (``server/broker_remote.py``).

A request is ``{"commands": [{"command": ..., "correlationData": ..., ...}]}`` and its reply
``{"responses": [{"command": ..., "correlationData": ..., "error"?: ...}]}`` (the format of
Mosquitto's dynamic-security plugin). A request that cannot be read, or a command that fails, is
answered with its error; the service goes on with the next. ``ping`` changes nothing: its answer
says the service is subscribed and serving (what ``suitcase services up`` and ``status`` wait for).
Once subscribed the service also tells systemd (``sd_notify`` ``READY=1`` on ``$NOTIFY_SOCKET``;
its unit is ``Type=notify``), so units ordered after it start when it can serve.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kits.config_file import settings_from
from kits.errors import SuitcaseError
from kits.tls import check_tls_files, client_context
from server.broker_admin import (
    ACCOUNTS_REQUEST_TOPIC,
    ACCOUNTS_RESPONSE_TOPIC,
    BrokerAdminError,
    DeviceAccount,
    tls_refusal,
)

__all__ = [
    "ENV_PREFIX",
    "AccountsService",
    "AccountsSettings",
    "FilesBackend",
    "files_backend",
    "handle_request",
    "load_settings",
    "notify_systemd",
]

log = logging.getLogger(__name__)

ENV_PREFIX = "SUITCASE_ACCOUNTS_"


class AccountsSettings(BaseSettings):
    """The accounts service's broker connection and the broker's account files.

    Every field can be set by an environment variable ``SUITCASE_ACCOUNTS_<FIELD>``.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    dir: Path = Field(
        description="the directory of devices.passwd, devices.acl and the broker's pid file (its "
        "config names them in password_file, acl_file, pid_file)"
    )
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_username: str = Field(default="suitcase-accounts", description="the service's stack account")
    mqtt_password: SecretStr | None = None
    reload_timeout_s: float = Field(
        default=30.0, gt=0, description="how long to wait for the broker to take new files"
    )

    def mqtt_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of the service's broker clients (None without ``mqtt_tls``)."""
        if not self.mqtt_tls:
            return None
        return client_context(
            ca_file=self.mqtt_ca_file,
            cert_file=self.mqtt_cert_file,
            key_file=self.mqtt_key_file,
            setting=f"{ENV_PREFIX}MQTT",
        )

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> AccountsSettings:
        check_tls_files(ENV_PREFIX, self)
        return self


def load_settings(**overrides: Any) -> AccountsSettings:
    """The settings from ``overrides`` (those not None) and the environment.

    Raises:
        ConfigError: a value is invalid; the message names the setting and its variable.
    """
    return settings_from(AccountsSettings, ENV_PREFIX, "accounts service", **overrides)


class FilesBackend(Protocol):
    """What the service needs of ``MosquittoFilesAdmin``."""

    def create_device(self, org: str, device: str, username: str, password: str) -> None: ...
    def create_devices(self, accounts: Sequence[DeviceAccount]) -> None: ...
    def delete_device(self, username: str) -> None: ...
    def delete_devices(self, usernames: Sequence[str]) -> None: ...


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")
    correlationData: str = ""  # the wire's name


class _Account(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org: str
    device: str
    username: str
    password: str


class _CreateDevice(_Command, _Account):
    command: Literal["createDevice"]


class _CreateDevices(_Command):
    command: Literal["createDevices"]
    accounts: list[_Account] = Field(max_length=100_000)


class _DeleteDevice(_Command):
    command: Literal["deleteDevice"]
    username: str


class _DeleteDevices(_Command):
    command: Literal["deleteDevices"]
    usernames: list[str] = Field(max_length=100_000)


class _Ping(_Command):
    command: Literal["ping"]


_Any = _CreateDevice | _CreateDevices | _DeleteDevice | _DeleteDevices | _Ping
_COMMAND: TypeAdapter[_Any] = TypeAdapter(Annotated[_Any, Field(discriminator="command")])


def _apply(backend: FilesBackend, raw: Any) -> dict[str, Any]:
    """One command's reply; any failure is this command's error."""
    correlation = str(raw.get("correlationData", "")) if isinstance(raw, dict) else ""
    name = str(raw.get("command", "")) if isinstance(raw, dict) else ""
    reply: dict[str, Any] = {"command": name, "correlationData": correlation}
    try:
        command = _COMMAND.validate_python(raw)
        if isinstance(command, _CreateDevice):
            backend.create_device(command.org, command.device, command.username, command.password)
        elif isinstance(command, _CreateDevices):
            backend.create_devices(
                [DeviceAccount(a.org, a.device, a.username, a.password) for a in command.accounts]
            )
        elif isinstance(command, _DeleteDevice):
            backend.delete_device(command.username)
        elif isinstance(command, _DeleteDevices):
            backend.delete_devices(command.usernames)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reply["error"] = (
            f"malformed command ({where}: {first['msg']}): commands are createDevice, createDevices, "
            "deleteDevice, deleteDevices, ping (server/broker_remote.py)"
        )
    except SuitcaseError as exc:
        reply["error"] = str(exc)
    except Exception as exc:  # any failure is this command's, never the service's
        log.exception("accounts command failed", extra={"command": name})
        reply["error"] = f"the accounts service failed ({type(exc).__name__}: {exc}): see its log"
    return reply


def handle_request(backend: FilesBackend, payload: bytes) -> dict[str, Any]:
    """The reply to one request: each command applied in order, each with its own result."""
    try:
        body = json.loads(payload)
        commands = body["commands"]
        if not isinstance(commands, list):
            raise TypeError("commands is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        return {
            "responses": [
                {
                    "command": "",
                    "correlationData": "",
                    "error": f'malformed request ({exc}): send {{"commands": [...]}} as JSON',
                }
            ]
        }
    return {"responses": [_apply(backend, command) for command in commands]}


class AccountsService:
    """Serves account requests from the broker until :meth:`stop`.

    Args:
        backend: applies the commands (``MosquittoFilesAdmin`` on the broker's files).
        host, port, username, password, tls: the broker and the service's account.
        timeout: seconds to wait for the login.
    """

    def __init__(
        self,
        backend: FilesBackend,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._backend = backend
        self._requests: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._refused: list[str] = []
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"suitcase-accounts-{secrets.token_hex(4)}"
        )
        self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
            if getattr(reason, "is_failure", False):
                self._refused.append(str(reason))
                self._subscribed.set()
            else:  # again after a reconnect: a clean session has lost the subscription
                self._client.subscribe(ACCOUNTS_REQUEST_TOPIC, qos=1)

        def on_subscribe(_c: Any, _u: Any, _mid: Any, _codes: Any, _p: Any = None) -> None:
            self._subscribed.set()

        self._client.on_connect = on_connect
        self._client.on_subscribe = on_subscribe
        # The network thread only queues: applying a request waits for the broker's reload.
        self._client.on_message = lambda _c, _u, message: self._requests.put(bytes(message.payload))
        try:
            self._client.connect(host, port, keepalive=30)
        except ssl.SSLError as exc:
            raise BrokerAdminError(tls_refusal(host, port, exc)) from exc
        except OSError as exc:
            raise BrokerAdminError(f"cannot reach the broker at {host}:{port}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(timeout) or self._refused:
            self._client.loop_stop()
            raise BrokerAdminError(
                f"the broker at {host}:{port} did not accept the accounts service's login "
                f"({', '.join(self._refused) or 'no answer'}): check {ENV_PREFIX}MQTT_USERNAME/PASSWORD "
                "(a stack account of role suitcase-accounts)"
            )
        log.info("accounts service ready", extra={"broker": f"{host}:{port}"})
        notify_systemd("READY=1")

    def serve(self) -> None:
        """Answer requests, one at a time, until :meth:`stop`."""
        while not self._stop.is_set():
            try:
                payload = self._requests.get(timeout=0.5)
            except queue.Empty:
                continue
            reply = handle_request(self._backend, payload)
            for response in reply["responses"]:
                if "error" in response:
                    log.warning(
                        "accounts request refused",
                        extra={"command": response["command"], "reason": response["error"]},
                    )
            self._client.publish(ACCOUNTS_RESPONSE_TOPIC, json.dumps(reply), qos=1)

    def stop(self) -> None:
        """End :meth:`serve` (within half a second) and disconnect."""
        self._stop.set()

    def close(self) -> None:
        notify_systemd("STOPPING=1")
        self._client.loop_stop()
        self._client.disconnect()


def notify_systemd(state: str, socket_path: str | None = None) -> bool:
    """Tell the service manager ``state`` (sd_notify(3)); return whether there was one to tell.

    ``socket_path`` defaults to ``$NOTIFY_SOCKET`` (set by systemd for a ``Type=notify`` unit; a
    leading ``@`` names an abstract socket). Without it, nothing is sent. A manager that cannot be
    reached is logged, never fatal: the service serves either way.
    """
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("could not notify the service manager", extra={"socket": path, "reason": str(exc)})
        return False
    return True


def files_backend(settings: AccountsSettings) -> FilesBackend:
    """``MosquittoFilesAdmin`` on the broker's files, reloading it through its pid file."""
    from server.broker_files import PID_FILE, MosquittoFilesAdmin, login_probe, signal_reload

    return MosquittoFilesAdmin(
        settings.dir,
        reload=signal_reload(settings.dir / PID_FILE),
        probe=login_probe(settings.mqtt_host, settings.mqtt_port, tls=settings.mqtt_tls_context()),
        timeout=settings.reload_timeout_s,
    )
