"""Device accounts in the broker's password and ACL files, through the broker host's accounts service.

``server/broker_files.py`` writes Mosquitto's files and signals it, so the server would have to run
on the broker's host as its user. Here the server only talks MQTT: it publishes requests on
:data:`~server.broker_admin.ACCOUNTS_REQUEST_TOPIC`, which only the accounts service
(``suitcase broker accounts``, ``suitcase/broker_accounts.py``) may read; the service applies them
with ``MosquittoFilesAdmin`` on the broker's host and answers on
:data:`~server.broker_admin.ACCOUNTS_RESPONSE_TOPIC`. A reply comes once the broker has taken the
new files, so on return new logins work and deleted ones are refused.

Selected by ``SUITCASE_SERVER_DEVICE_ACCOUNTS=files-remote`` (README, "Device accounts").
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

from server.broker_admin import (
    ACCOUNTS_REQUEST_TOPIC,
    ACCOUNTS_RESPONSE_TOPIC,
    BrokerAdminError,
    ControlClient,
    DeviceAccount,
)

__all__ = ["MAX_REQUEST_BYTES", "RemoteFilesAdmin"]

log = logging.getLogger(__name__)

# A request stays under the broker's max_packet_size (300,000 in deploy/mosquitto/suitcase.conf):
# about 2,500 devices per message, one reload each.
MAX_REQUEST_BYTES = 250_000


class RemoteFilesAdmin:
    """Creates and deletes device accounts by asking the broker host's accounts service.

    Args:
        host, port, username, password: the broker and the server's account (role
            ``suitcase-server``, which may publish account requests).
        tls: connect with TLS using this context (``ServerSettings.mqtt_tls_context``).
        timeout: seconds to wait for each reply: the service writes the files, reloads the broker
            and waits (up to 30 s) until it took them.
        max_request_bytes: largest request (default :data:`MAX_REQUEST_BYTES`); a bigger bulk
            creation goes in several.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 60.0,
        max_request_bytes: int | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes or MAX_REQUEST_BYTES
        self._control = ControlClient(
            host,
            port,
            username,
            password,
            request_topic=ACCOUNTS_REQUEST_TOPIC,
            response_topic=ACCOUNTS_RESPONSE_TOPIC,
            tls=tls,
            timeout=min(timeout, 10.0),
            role_hint=" (the server's stack account, role suitcase-server)",
        )

    def _call(self, command: dict[str, Any]) -> None:
        replies = self._control.call([command], self.timeout)
        if replies is None:
            raise BrokerAdminError(
                f"the broker's accounts service did not answer {command['command']} within "
                f"{self.timeout:.0f} s: check that `suitcase broker accounts` runs on the broker's host "
                "(its log) with an account of role suitcase-accounts"
            )
        error = replies[0].get("error")
        if error:
            raise BrokerAdminError(f"the broker's accounts service refused {command['command']}: {error}")

    def wait_answering(self, timeout: float) -> None:
        """Return once the accounts service answers (a ``ping``, which changes nothing).

        A request published before the service has subscribed reaches no one, so the ping is sent
        again, with a longer wait each time, until ``timeout`` seconds have passed.

        Raises:
            BrokerAdminError: no answer within ``timeout``; the message says where to look.
        """
        deadline = time.monotonic() + timeout
        wait = 0.5
        while True:
            left = deadline - time.monotonic()
            # Any answer will do: a service older than `ping` answers it with an error, but answers.
            if self._control.call([{"command": "ping"}], max(min(wait, left), 0.05)) is not None:
                return
            if time.monotonic() >= deadline:
                raise BrokerAdminError(
                    f"the broker's accounts service did not answer within {timeout:.0f} s: check that "
                    "`suitcase broker accounts` runs on the broker's host (its log, or `journalctl -u "
                    "suitcase-accounts`) with an account of role suitcase-accounts"
                )
            wait = min(wait * 2, 8.0)

    def create_device(self, org: str, device: str, username: str, password: str) -> None:
        """Create (or replace) the device's account."""
        self._call(
            {
                "command": "createDevice",
                "org": org,
                "device": device,
                "username": username,
                "password": password,
            }
        )
        log.info("broker account created", extra={"device": device, "org": org})

    def create_devices(self, accounts: Sequence[DeviceAccount]) -> None:
        """Create many new devices' accounts, as few requests as fit :attr:`max_request_bytes`.

        All or nothing: when the service refuses one request (an account exists already, a name
        the files cannot hold, a broker that does not reload), the accounts the earlier requests
        made are deleted again and :class:`BrokerAdminError` says why.
        """
        made: list[str] = []
        try:
            for chunk in self._chunks(accounts):
                self._call({"command": "createDevices", "accounts": [a._asdict() for a in chunk]})
                made.extend(a.username for a in chunk)
        except BrokerAdminError:
            if made:
                try:
                    self._call({"command": "deleteDevices", "usernames": made})
                except BrokerAdminError:
                    log.error("could not delete broker accounts after a refused bulk creation")
            raise
        log.info("broker accounts created", extra={"devices": len(accounts)})

    def _chunks(self, accounts: Sequence[DeviceAccount]) -> list[list[DeviceAccount]]:
        chunks: list[list[DeviceAccount]] = [[]]
        size = 0
        for account in accounts:
            length = len(json.dumps(account._asdict())) + 2
            if chunks[-1] and size + length > self.max_request_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(account)
            size += length
        return [chunk for chunk in chunks if chunk]

    def delete_device(self, username: str) -> None:
        """Delete the device's account; the broker drops a session still using it."""
        self._call({"command": "deleteDevice", "username": username})
        log.info("broker account deleted", extra={"device": username})

    def close(self) -> None:
        self._control.close()
