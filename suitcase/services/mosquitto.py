"""Mosquitto's configuration: the config file every broker we start loads, and the dynamic-security state.

The same functions make the broker of ``suitcase services up``, of the demo and of the tests:
:func:`render_conf` appends a run's listeners, persistence and authentication to
``deploy/mosquitto/suitcase.conf``; :func:`dynsec_state` writes the dynamic-security plugin's
JSON with the least-privilege roles of the gateway and the server (devices get theirs from the
server at enrollment, ``server/broker_admin.py``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy import MOSQUITTO_CONF
from kits.wire import TOPIC_ROOT
from server.broker_admin import ACCOUNTS_REQUEST_TOPIC, ACCOUNTS_RESPONSE_TOPIC
from suitcase.services.tls import TlsFiles

__all__ = [
    "ACCOUNTS_ROLE",
    "DYNSEC_PLUGIN",
    "GATEWAY_ROLE",
    "SERVER_ROLE",
    "Account",
    "Listener",
    "dynsec_state",
    "find_dynsec_plugin",
    "merge_accounts",
    "move_device_accounts",
    "owner_of",
    "password_matches",
    "render_conf",
    "role_acls",
]

DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
_PLUGIN_GLOB = "/usr/lib/*/mosquitto_dynamic_security.so"

GATEWAY_ROLE = "suitcase-gateway"
SERVER_ROLE = "suitcase-server"
# The broker host's device-accounts service (`suitcase broker accounts`, suitcase/broker_accounts.py).
ACCOUNTS_ROLE = "suitcase-accounts"
GATEWAY_RECORDS = "suitcase/gateways/+/+"  # gateway/group.py: each member's record in its group
_CONTROL = "$CONTROL/dynamic-security/#"


@dataclass(frozen=True)
class Listener:
    """One listener: ``port`` on ``bind``; with ``tls``, only TLS (1.2 or later) is spoken there, and
    with ``require_certificate`` each client also shows a certificate the CA signed."""

    port: int
    bind: str = "127.0.0.1"
    tls: TlsFiles | None = None
    require_certificate: bool = False


@dataclass(frozen=True)
class Account:
    """A broker client of the dynamic-security plugin: username, password and role names."""

    username: str
    password: str
    roles: tuple[str, ...]


def find_dynsec_plugin() -> Path | None:
    """Return the dynamic-security plugin of the installed Mosquitto, or None."""
    if DYNSEC_PLUGIN.exists():
        return DYNSEC_PLUGIN
    return next((p for p in sorted(Path("/").glob(_PLUGIN_GLOB.lstrip("/")))), None)


def owner_of(path: Path) -> str:
    """The name of the user owning ``path``: Mosquitto runs as them, so it can write its persistence."""
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def render_conf(
    listeners: Sequence[Listener],
    *,
    persistence_dir: Path,
    log_file: Path,
    dynsec_file: Path | None = None,
    plugin: Path | None = None,
    device_accounts_dir: Path | None = None,
    allow_anonymous: bool | None = None,
    user: str | None = None,
    extra: str = "",
) -> str:
    """The complete Mosquitto config of one broker.

    Without ``dynsec_file`` the broker takes anonymous clients (tests of the wire, the demo); with
    it, every client authenticates through the dynamic-security plugin (``allow_anonymous``
    overrides either, e.g. for a test's password file in ``extra``). When started as root,
    Mosquitto drops to ``user``: by default the owner of ``persistence_dir``, so it can write its
    persistence and the plugin's file (a root-owned directory keeps root).

    With ``device_accounts_dir``, devices' accounts are in Mosquitto's own password and ACL files
    there (``server/broker_files.py``; the plugin defers to them for names it does not know) and the
    broker writes its pid there, for the server's reload.
    """
    lines = [
        f"# --- this broker (written by {__name__}) ---",
        "per_listener_settings false",
    ]
    if user is not None:
        lines.append(f"user {user}")
    elif os.geteuid() == 0:
        lines.append(f"user {owner_of(persistence_dir)}")
    lines += [
        f"persistence_location {persistence_dir}/",
        f"log_dest file {log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages false",
    ]
    anonymous = dynsec_file is None if allow_anonymous is None else allow_anonymous
    lines.append(f"allow_anonymous {'true' if anonymous else 'false'}")
    if dynsec_file is not None:
        lines += [
            f"plugin {plugin or find_dynsec_plugin() or DYNSEC_PLUGIN}",
            f"plugin_opt_config_file {dynsec_file}",
        ]
    if device_accounts_dir is not None:
        from server.broker_files import ACL_FILE, PASSWORD_FILE, PID_FILE

        lines += [
            f"password_file {device_accounts_dir / PASSWORD_FILE}",
            f"acl_file {device_accounts_dir / ACL_FILE}",
            f"pid_file {device_accounts_dir / PID_FILE}",
        ]
    for listener in listeners:
        lines.append(f"listener {listener.port} {listener.bind}")
        if listener.tls is not None:
            lines += [
                f"cafile {listener.tls.ca}",
                f"certfile {listener.tls.cert}",
                f"keyfile {listener.tls.key}",
                "tls_version tlsv1.2",
            ]
            if listener.require_certificate:
                lines.append("require_certificate true")
    return MOSQUITTO_CONF.read_text() + "\n" + "\n".join(lines) + "\n" + extra + ("\n" if extra else "")


def role_acls(role: str) -> list[dict[str, Any]]:
    """The ACL of a stack role; everything not listed is denied (see :func:`dynsec_state`)."""
    every = f"{TOPIC_ROOT}/+/+"
    allow: list[tuple[str, str]]
    if role == GATEWAY_ROLE:
        # Telemetry, alone or through a shared subscription; and its group's records (up, or its
        # Last Will down), so a live member adopts a dead one's session (gateway/group.py).
        allow = [
            ("subscribePattern", f"{every}/telemetry"),
            ("subscribePattern", f"$share/+/{every}/telemetry"),
            ("publishClientReceive", f"{every}/telemetry"),
            ("subscribePattern", GATEWAY_RECORDS),
            ("publishClientReceive", GATEWAY_RECORDS),
            ("publishClientSend", GATEWAY_RECORDS),
            ("unsubscribePattern", "#"),
        ]
    elif role == SERVER_ROLE:
        # Devices' status, meta and command replies; commands to devices; device accounts.
        allow = [
            ("subscribePattern", f"{every}/status"),
            ("subscribePattern", f"{every}/meta"),
            ("subscribePattern", f"{every}/cmd/+/reply"),
            ("publishClientReceive", f"{every}/status"),
            ("publishClientReceive", f"{every}/meta"),
            ("publishClientReceive", f"{every}/cmd/+/reply"),
            ("publishClientSend", f"{every}/cmd/+"),
            ("publishClientSend", _CONTROL),
            ("subscribePattern", _CONTROL),
            ("publishClientReceive", _CONTROL),
            # Requests to the accounts service (device_accounts=files-remote) and its replies.
            ("publishClientSend", ACCOUNTS_REQUEST_TOPIC),
            ("subscribePattern", ACCOUNTS_RESPONSE_TOPIC),
            ("publishClientReceive", ACCOUNTS_RESPONSE_TOPIC),
            ("unsubscribePattern", "#"),
        ]
    elif role == ACCOUNTS_ROLE:
        # Only this role reads the requests (they carry devices' passwords); it answers them.
        allow = [
            ("subscribePattern", ACCOUNTS_REQUEST_TOPIC),
            ("publishClientReceive", ACCOUNTS_REQUEST_TOPIC),
            ("publishClientSend", ACCOUNTS_RESPONSE_TOPIC),
            ("unsubscribePattern", "#"),
        ]
    else:
        raise ValueError(f"unknown role {role!r}: {GATEWAY_ROLE}, {SERVER_ROLE} or {ACCOUNTS_ROLE}")
    return [{"acltype": kind, "topic": topic, "priority": 0, "allow": True} for kind, topic in allow]


def _hashed(password: str, salt: bytes | None = None, iterations: int = 101) -> dict[str, Any]:
    """The plugin's password fields: PBKDF2-SHA512 as ``mosquitto_ctrl`` makes them."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def password_matches(client: dict[str, Any], password: str) -> bool:
    """Whether ``client`` (an entry of the plugin's JSON) has ``password``."""
    try:
        salt = base64.b64decode(client["salt"])
        iterations = int(client["iterations"])
    except (KeyError, ValueError, TypeError):
        return False
    return bool(_hashed(password, salt, iterations)["password"] == client.get("password"))


def dynsec_state(accounts: Sequence[Account], extra_roles: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The dynamic-security plugin's JSON for ``accounts``: default deny, the stack's roles.

    Args:
        accounts: the clients to create (roles: :data:`GATEWAY_ROLE`, :data:`SERVER_ROLE`,
            :data:`ACCOUNTS_ROLE` or one of ``extra_roles``).
        extra_roles: further roles (``{"rolename": ..., "acls": [...]}``), e.g. a test's operator.
    """
    roles = [
        {"rolename": name, "acls": role_acls(name)} for name in (GATEWAY_ROLE, SERVER_ROLE, ACCOUNTS_ROLE)
    ]
    roles += [dict(role) for role in extra_roles]
    clients = [
        {
            "username": account.username,
            "textName": f"IoT Suitcase {account.username}",
            **_hashed(account.password),
            "roles": [{"rolename": name} for name in account.roles],
        }
        for account in accounts
    ]
    return {
        "clients": clients,
        "groups": [],
        "roles": roles,
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def merge_accounts(state: dict[str, Any], accounts: Sequence[Account]) -> tuple[dict[str, Any], bool]:
    """Bring an existing plugin state up to the stack's roles and ``accounts``; keep everything else.

    The plugin's file also holds every device account the server made: those are kept as they
    are. Returns the new state and whether anything changed (False: a second ``up`` writes nothing).
    """
    changed = False
    wanted = dynsec_state(accounts)
    roles = {r["rolename"]: r for r in state.setdefault("roles", [])}
    for role in wanted["roles"]:
        if role["rolename"] not in roles:
            state["roles"].append(role)
            changed = True
        elif roles[role["rolename"]].get("acls") != role["acls"]:
            roles[role["rolename"]]["acls"] = role["acls"]
            changed = True
    clients = {c["username"]: c for c in state.setdefault("clients", [])}
    for account, client in zip(accounts, wanted["clients"], strict=True):
        have = clients.get(account.username)
        if have is None:
            state["clients"].append(client)
            changed = True
        elif not password_matches(have, account.password) or [
            r.get("rolename") for r in have.get("roles", [])
        ] != list(account.roles):
            have.update({k: client[k] for k in ("password", "salt", "iterations", "roles")})
            changed = True
    return state, changed


def move_device_accounts(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, list[str]]]]:
    """Take the devices' accounts out of a plugin state, for Mosquitto's password and ACL files.

    A device account is a client whose only role is ``device-<id>`` with ACLs under its own
    ``suitcase/v1/<org>/<id>/`` (what ``DynSecAdmin`` made). Its PBKDF2-SHA512 hash moves as it is
    (the password file's ``$7$iterations$salt$hash``), so the device logs in with the same
    password; its ACL becomes the files' one line (``server.broker_files.device_acl_lines``).
    Everything else (the stack's accounts, any other client or role) stays.

    Returns the state without those clients and their roles, and ``username -> (hash, ACL lines)``.
    """
    from server.broker_files import device_acl_lines

    roles = {r.get("rolename"): r for r in state.get("roles", [])}
    moved: dict[str, tuple[str, list[str]]] = {}
    moved_roles: set[str] = set()
    for client in state.get("clients", []):
        names = [r.get("rolename") for r in client.get("roles", [])]
        if len(names) != 1 or not str(names[0]).startswith("device-") or names[0] not in roles:
            continue
        device = str(names[0]).removeprefix("device-")
        topics = [acl.get("topic", "") for acl in roles[names[0]].get("acls", [])]
        parts = topics[0].split("/") if topics else []
        if (
            len(parts) < 4
            or parts[3] != device
            or not all(t.startswith(f"{TOPIC_ROOT}/{parts[2]}/{device}/") for t in topics)
        ):
            continue
        if not all(isinstance(client.get(k), str | int) for k in ("password", "salt", "iterations")):
            continue
        hashed = f"$7${int(client['iterations'])}${client['salt']}${client['password']}"
        moved[client["username"]] = (hashed, device_acl_lines(parts[2], device))
        moved_roles.add(names[0])
    if not moved:
        return state, moved
    state = dict(state)
    state["clients"] = [c for c in state.get("clients", []) if c.get("username") not in moved]
    state["roles"] = [r for r in state.get("roles", []) if r.get("rolename") not in moved_roles]
    return state, moved
