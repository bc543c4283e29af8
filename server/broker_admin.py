"""Device accounts in Mosquitto's dynamic-security plugin, over ``$CONTROL/dynamic-security/v1``.

Each device gets a client (username = device id) with one role that allows it to publish only
its own telemetry/status/meta/command-reply topics and to subscribe only to its own commands.
"""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from kits.errors import SuitcaseError
from kits.wire import TOPIC_ROOT

__all__ = [
    "ACCOUNTS_REQUEST_TOPIC",
    "ACCOUNTS_RESPONSE_TOPIC",
    "BATCH_DEVICES",
    "BrokerAdmin",
    "BrokerAdminError",
    "ControlClient",
    "DeviceAccount",
    "DynSecAdmin",
    "device_acls",
    "tls_refusal",
]

log = logging.getLogger(__name__)

_CONTROL = "$CONTROL/dynamic-security/v1"
# The broker host's accounts service (``suitcase broker accounts``): the server publishes requests,
# only the service may read them (``suitcase.services.mosquitto.role_acls``), and it replies here.
ACCOUNTS_REQUEST_TOPIC = "suitcase/accounts/v1/request"
ACCOUNTS_RESPONSE_TOPIC = "suitcase/accounts/v1/response"
# Most devices per control message in a bulk creation (two commands each; 250 stay under the
# broker's max_packet_size). Mosquitto 2.0's plugin rewrites its whole JSON file after every
# command, so a bulk creation costs O(n^2) bytes written whatever the batch; batching removes the
# round trip per device (README, "Sizing").
BATCH_DEVICES = 250
# The broker does nothing else while it runs a control message: every client waits, and the
# server's own client, whose pings go unanswered, drops after two keepalives (60 s) and never gets
# the reply (the stall of a 2,000-device import). So a batch holds as many devices as the last
# commands' pace fits in this many seconds.
BATCH_SECONDS = 4.0
# A first batch, small, measures that pace.
_FIRST_BATCH = 4
# Seconds per command allowed while the pace is unknown (one save of about 70,000 accounts).
_UNKNOWN_PACE_S = 2.0


class DeviceAccount(NamedTuple):
    """One device's broker account: its org, device id, username and password."""

    org: str
    device: str
    username: str
    password: str


class BrokerAdminError(SuitcaseError):
    """The broker refused or did not answer a dynamic-security command."""


class BrokerAdmin(Protocol):
    def create_device(self, org: str, device: str, username: str, password: str) -> None: ...
    def create_devices(self, accounts: Sequence[DeviceAccount]) -> None: ...
    def delete_device(self, username: str) -> None: ...
    def close(self) -> None: ...


def tls_refusal(host: str, port: int, exc: ssl.SSLError) -> str:
    """Say why TLS with the broker failed and which settings fix it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the certificate of broker {host}:{port} was not accepted ({exc.verify_message}): check "
            "that SUITCASE_SERVER_MQTT_CA_FILE is the CA that signed it and that SUITCASE_SERVER_MQTT_HOST "
            "is a name the certificate gives"
        )
    return (
        f"TLS with broker {host}:{port} failed ({exc.reason or exc}): check that SUITCASE_SERVER_MQTT_PORT "
        "is the broker's TLS listener, and SUITCASE_SERVER_MQTT_CERT_FILE/KEY_FILE if it asks for a "
        "client certificate"
    )


def device_acls(org: str, device: str) -> list[dict[str, Any]]:
    """The ACL of a device's role: its own topics only (everything else is denied by default)."""
    base = f"{TOPIC_ROOT}/{org}/{device}"
    allow = [
        ("publishClientSend", f"{base}/telemetry"),
        ("publishClientSend", f"{base}/status"),
        ("publishClientSend", f"{base}/meta"),
        ("publishClientSend", f"{base}/cmd/+/reply"),
        ("subscribePattern", f"{base}/cmd/+"),
        ("publishClientReceive", f"{base}/cmd/+"),
    ]
    return [{"acltype": kind, "topic": topic, "priority": 0, "allow": True} for kind, topic in allow]


class ControlClient:
    """A request/response MQTT client: publishes ``{"commands": [...]}`` to a request topic and
    waits for ``{"responses": [...]}`` on a response topic, matched by each command's
    ``correlationData`` (the dynamic-security plugin's format; the broker host's accounts service,
    ``suitcase/broker_accounts.py``, speaks it too).

    Args:
        host, port, username, password: the broker and the account to log in with.
        request_topic, response_topic: where commands go and replies come back.
        tls: connect with TLS using this context (``ServerSettings.mqtt_tls_context``).
        timeout: seconds to wait for the login.
        role_hint: what the account must be, for the refused-login message.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        request_topic: str,
        response_topic: str,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        role_hint: str = "",
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.request_topic = request_topic
        self._replies: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"suitcase-server-admin-{secrets.token_hex(4)}"
        )
        self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)
        self._client.on_message = self._on_message
        self._connected = threading.Event()
        self._refused: list[str] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
            if getattr(reason, "is_failure", False):
                self._refused.append(str(reason))
            else:  # again after a reconnect: a clean session has lost the subscription
                self._client.subscribe(response_topic, qos=1)
            self._connected.set()

        self._client.on_connect = on_connect
        try:
            self._client.connect(host, port, keepalive=30)
        except ssl.SSLError as exc:
            raise BrokerAdminError(tls_refusal(host, port, exc)) from exc
        except OSError as exc:
            raise BrokerAdminError(
                f"cannot reach the broker at {host}:{port} for device accounts: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(timeout) or self._refused:
            self.close()
            raise BrokerAdminError(
                f"the broker at {host}:{port} did not accept the server's login "
                f"({', '.join(self._refused) or 'no answer'}): check SUITCASE_SERVER_MQTT_USERNAME/PASSWORD"
                f"{role_hint}"
            )

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            body = json.loads(message.payload)
            responses = body.get("responses", [])
            with self._cond:
                for response in responses:
                    if response.get("correlationData"):  # none: an answer to no call of ours
                        self._replies[str(response["correlationData"])] = response
                self._cond.notify_all()
        except (ValueError, AttributeError, TypeError):
            return  # not a reply of ours

    def call(self, commands: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]] | None:
        """Send ``commands`` in one message; their replies in order, or None if not all came
        within ``timeout`` seconds."""
        ids = []
        for command in commands:
            command["correlationData"] = secrets.token_hex(8)
            ids.append(command["correlationData"])
        self._client.publish(self.request_topic, json.dumps({"commands": commands}), qos=1)
        with self._cond:
            done = self._cond.wait_for(lambda: all(i in self._replies for i in ids), timeout)
            replies = [self._replies.pop(i, None) for i in ids]
        return [reply or {} for reply in replies] if done else None

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class DynSecAdmin:
    """Sends dynamic-security commands as the server's admin client and waits for each reply.

    Args:
        host, port, username, password: the broker and the server's admin account.
        tls: connect with TLS using this context (``ServerSettings.mqtt_tls_context``).
        timeout: seconds to wait for a reply.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.timeout = timeout
        self._pace_s: float | None = None  # seconds per command, the last control message's
        self._control = ControlClient(
            host,
            port,
            username,
            password,
            request_topic=_CONTROL,
            response_topic=f"{_CONTROL}/response",
            tls=tls,
            timeout=timeout,
            role_hint=" (a dynamic-security admin, e.g. made by `mosquitto_ctrl dynsec init`)",
        )

    def _call(self, commands: list[dict[str, Any]], *, ok_errors: tuple[str, ...] = ()) -> None:
        started = time.monotonic()
        # The plugin saves its file after each command: a long batch gets time in proportion.
        pace = _UNKNOWN_PACE_S if self._pace_s is None else 4 * self._pace_s
        replies = self._control.call(commands, self.timeout + pace * len(commands))
        if replies is None:
            raise BrokerAdminError(
                "the broker did not answer dynamic-security commands: is the dynamic-security plugin "
                "loaded and the server's account an admin of it?"
            )
        if not any(reply.get("error") for reply in replies):
            # Only when every command saved the file ("not found" saves nothing).
            self._pace_s = (time.monotonic() - started) / len(commands)
        for command, reply in zip(commands, replies, strict=True):
            error = reply.get("error")
            if error and not any(ok in error for ok in ok_errors):
                what = command.get("username") or command.get("rolename") or ""
                raise BrokerAdminError(f"the broker refused {command['command']} {what}: {error}")

    def create_device(self, org: str, device: str, username: str, password: str) -> None:
        """Create (or replace) the device's role and client."""
        role = f"device-{device}"
        self._call(
            [{"command": "deleteClient", "username": username}, {"command": "deleteRole", "rolename": role}],
            ok_errors=("not found",),
        )
        self._call(
            [
                {"command": "createRole", "rolename": role, "acls": device_acls(org, device)},
                {
                    "command": "createClient",
                    "username": username,
                    "password": password,
                    "roles": [{"rolename": role}],
                },
            ]
        )
        log.info("broker client created", extra={"device": device, "org": org})

    def create_devices(self, accounts: Sequence[DeviceAccount]) -> None:
        """Create many new devices' roles and clients, :data:`BATCH_DEVICES` per control message.

        For new device ids only (nothing is replaced). When the broker refuses one, the accounts
        already made by this call are deleted again and :class:`BrokerAdminError` names the device.
        """
        made: list[DeviceAccount] = []
        try:
            start = 0
            while start < len(accounts):
                chunk = accounts[start : start + self._batch_size()]
                start += len(chunk)
                commands: list[dict[str, Any]] = []
                for account in chunk:
                    role = f"device-{account.device}"
                    commands.append(
                        {
                            "command": "createRole",
                            "rolename": role,
                            "acls": device_acls(account.org, account.device),
                        }
                    )
                    commands.append(
                        {
                            "command": "createClient",
                            "username": account.username,
                            "password": account.password,
                            "roles": [{"rolename": role}],
                        }
                    )
                try:
                    self._call(commands)
                finally:
                    made.extend(chunk)  # a refused batch may have made some of its accounts
        except BrokerAdminError:
            self._delete_quietly(made)
            raise
        log.info("broker clients created", extra={"devices": len(accounts)})

    def _batch_size(self) -> int:
        """Devices in the next control message: :data:`BATCH_SECONDS` at the last pace."""
        if self._pace_s is None:
            return min(_FIRST_BATCH, BATCH_DEVICES)
        return max(1, min(BATCH_DEVICES, int(BATCH_SECONDS / (2 * max(self._pace_s, 1e-6)))))

    def _delete_quietly(self, accounts: Sequence[DeviceAccount]) -> None:
        start = 0
        while start < len(accounts):
            chunk = accounts[start : start + self._batch_size()]
            start += len(chunk)
            commands: list[dict[str, Any]] = []
            for account in chunk:
                commands.append({"command": "deleteClient", "username": account.username})
                commands.append({"command": "deleteRole", "rolename": f"device-{account.device}"})
            try:
                self._call(commands, ok_errors=("not found",))
            except BrokerAdminError:
                log.error("could not delete broker clients after a refused bulk creation")
                return

    def delete_device(self, username: str) -> None:
        """Delete the device's client and role (nothing to do when already gone)."""
        self._call(
            [
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": f"device-{username}"},
            ],
            ok_errors=("not found",),
        )
        # Disconnect a session still using the old credentials.
        log.info("broker client deleted", extra={"device": username})

    def close(self) -> None:
        self._control.close()
