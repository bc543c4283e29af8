"""``up``, ``down`` and ``status`` of a stack: check, write what differs, start, make the accounts.

``up`` is idempotent: it writes a file only when its content differs and creates an account only
when it is missing, and returns what it changed (nothing, the second time).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kits.errors import SuitcaseError
from suitcase.broker import wait_for_port
from suitcase.services import influxdb, postgres
from suitcase.services.layout import LAYOUT_VERSION, Layout, read_marker, save_layout
from suitcase.services.mosquitto import (
    Account,
    Listener,
    dynsec_state,
    merge_accounts,
    move_device_accounts,
    render_conf,
)
from suitcase.services.preflight import (
    ServicesError,
    check_data_versions,
    check_ports,
    check_tls,
    ensure_installed,
)
from suitcase.services.processes import ACCOUNTS_SERVICE, Binaries, data_owner, ensure_dir, process_specs
from suitcase.services.secrets import Secrets, load_or_make_secrets
from suitcase.services.settings_files import (
    INFLUX_ADMIN_USER,
    INFLUX_GATEWAY_USER,
    INFLUX_SERVER_USER,
    MQTT_ACCOUNTS_USER,
    MQTT_GATEWAY_USER,
    MQTT_SERVER_USER,
    accounts_env,
    gateway_env,
    render_env,
    server_env,
)
from suitcase.services.supervisor import supervisor_pid
from suitcase.services.systemd import install_units, render_units, restart_units, systemd_runs, units_active
from suitcase.services.tls import TlsFiles, make_ca, make_server_cert

__all__ = ["ServiceState", "down", "influx_admin", "postgres_admin_url", "status", "up"]

_READY_S = 90.0


def _write(path: Path, text: str, changes: list[str], *, mode: int = 0o644, owner: str | None = None) -> bool:
    """Write ``text`` to ``path`` when it differs; record it in ``changes``."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(mode)
    if owner is not None and os.geteuid() == 0:
        shutil.chown(tmp, owner)
    tmp.replace(path)
    changes.append(f"wrote {path}")
    return True


def _tls_files(layout: Layout) -> TlsFiles:
    return TlsFiles(layout.tls_dir / "ca.crt", layout.tls_dir / "server.crt", layout.tls_dir / "server.key")


def _place_tls(layout: Layout, given: TlsFiles | None, changes: list[str]) -> TlsFiles:
    files = _tls_files(layout)
    broker_user = data_owner("mosquitto")
    if given is not None:
        for source, target, mode in ((given.ca, files.ca, 0o644), (given.cert, files.cert, 0o644),
                                     (given.key, files.key, 0o600)):  # fmt: skip
            _write(
                target, source.read_text(), changes, mode=mode, owner=broker_user if mode == 0o600 else None
            )
    elif not files.cert.exists():
        ca = make_ca(layout.tls_dir / "ca")
        shutil.copyfile(ca[0], files.ca)
        files.ca.chmod(0o644)
        hosts = list(dict.fromkeys([layout.hostname, "localhost", "127.0.0.1"]))
        made = make_server_cert(ca, layout.tls_dir, hosts)
        assert made.cert == files.cert
        changes.append(f"made a CA ({files.ca}) and the broker's certificate for {', '.join(hosts)}")
    if broker_user is not None and os.geteuid() == 0:
        shutil.chown(files.key, broker_user)  # Mosquitto reads its key after dropping root
    return files


def _accounts(secrets: Secrets) -> list[Account]:
    from suitcase.services.mosquitto import ACCOUNTS_ROLE, GATEWAY_ROLE, SERVER_ROLE

    return [
        Account(MQTT_GATEWAY_USER, secrets.mqtt_gateway, (GATEWAY_ROLE,)),
        Account(MQTT_SERVER_USER, secrets.mqtt_server, (SERVER_ROLE,)),
        Account(MQTT_ACCOUNTS_USER, secrets.mqtt_accounts, (ACCOUNTS_ROLE,)),
    ]


def _device_account_files(layout: Layout, changes: list[str]) -> None:
    """The broker's (empty) device password and ACL files, owned by its user: Mosquitto does not
    start without the files its config names; the accounts service rewrites them."""
    from server.broker_files import ensure_account_files

    owner = data_owner("mosquitto")
    directory = layout.device_accounts_dir
    made = not directory.exists()
    ensure_dir(directory, owner, 0o750)
    ensure_account_files(directory)
    (directory / ".lock").touch()  # the writers' lock, made here so root never makes it theirs
    if owner is not None and os.geteuid() == 0:
        for path in directory.iterdir():
            shutil.chown(path, owner)
    if made:
        changes.append(f"made the broker's device account files in {directory}")


def _dynsec(layout: Layout, secrets: Secrets, changes: list[str]) -> None:
    owner = data_owner("mosquitto")
    if layout.dynsec_file.exists():
        state, changed = merge_accounts(json.loads(layout.dynsec_file.read_text()), _accounts(secrets))
        # An install from before the accounts service: its devices' accounts move to the files, with
        # their password hashes, so they log in as before and the server's revocations reach them.
        state, moved = move_device_accounts(state)
        if moved:
            from server.broker_files import import_accounts

            import_accounts(layout.device_accounts_dir, moved)
            if owner is not None and os.geteuid() == 0:
                for path in layout.device_accounts_dir.iterdir():
                    shutil.chown(path, owner)
            changes.append(f"moved {len(moved)} device accounts from dynamic security to the broker's files")
        if not changed and not moved:
            return
    else:
        state = dynsec_state(_accounts(secrets))
    _write(layout.dynsec_file, json.dumps(state, indent=1), changes, mode=0o600, owner=owner)


def _initdb(layout: Layout, binaries: Binaries, secrets: Secrets, changes: list[str]) -> None:
    if postgres.data_version(layout.postgres_dir) is not None:
        return
    owner = data_owner("postgres")
    ensure_dir(layout.postgres_dir, owner, 0o700)
    with tempfile.NamedTemporaryFile("w", dir=layout.run_dir, delete=False) as pw:
        pw.write(secrets.postgres_admin + "\n")
    password_file = Path(pw.name)
    try:
        if owner is not None:
            shutil.chown(password_file, owner)
        argv = postgres.initdb_argv(
            binaries.pg_bin, layout.postgres_dir, superuser=postgres.ADMIN_ROLE, password_file=password_file
        )
        result = subprocess.run(argv, capture_output=True, text=True, user=owner, check=False)
        if result.returncode != 0:
            raise ServicesError(f"initdb of the registry's cluster failed: {result.stderr.strip()[-400:]}")
    finally:
        password_file.unlink(missing_ok=True)
    changes.append(f"made the registry's PostgreSQL cluster in {layout.postgres_dir}")


def _write_configs(layout: Layout, binaries: Binaries, secrets: Secrets, tls: TlsFiles | None,
                   changes: list[str]) -> None:  # fmt: skip
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    if read_marker(layout) is None:
        _write(layout.marker, f"{LAYOUT_VERSION}\n", changes)
    for directory, owner, mode in (
        (layout.run_dir, None, 0o755),
        (layout.log_dir, None, 0o755),
        (layout.mosquitto_dir, data_owner("mosquitto"), 0o750),
        (layout.influxdb_dir, data_owner("influxdb"), 0o750),
        (layout.run_dir / "postgres", data_owner("postgres"), 0o755),
    ):
        ensure_dir(directory, owner, mode)
    files = _place_tls(layout, tls, changes)
    conf = render_conf(
        [Listener(layout.ports.mqtt_tls, layout.mqtt_bind, files)],
        persistence_dir=layout.mosquitto_dir,
        log_file=layout.mosquitto_dir / "mosquitto.log",
        dynsec_file=layout.dynsec_file,
        device_accounts_dir=layout.device_accounts_dir,
    )
    _device_account_files(layout, changes)
    _write(layout.mosquitto_conf, conf, changes)
    _dynsec(layout, secrets, changes)
    ports = layout.ports
    influx_conf = influxdb.render_conf(
        layout.influxdb_dir, port=ports.influx_http, rpc_port=ports.influx_rpc, bind=layout.bind, auth=True
    )
    _write(layout.influxdb_conf, influx_conf, changes)
    _initdb(layout, binaries, secrets, changes)
    _write(
        layout.gateway_env,
        render_env(gateway_env(layout, secrets), "IoT Suitcase gateway"),
        changes,
        mode=0o640,
    )
    _write(
        layout.server_env, render_env(server_env(layout, secrets), "IoT Suitcase server"), changes, mode=0o640
    )
    _write(
        layout.accounts_env,
        render_env(accounts_env(layout, secrets), "IoT Suitcase device-accounts service"),
        changes,
        mode=0o600,
    )


def influx_admin(secrets: Secrets) -> tuple[str, str]:
    return (INFLUX_ADMIN_USER, secrets.influx_admin)


def postgres_admin_url(layout: Layout, secrets: Secrets) -> str:
    return f"postgresql://{postgres.ADMIN_ROLE}:{secrets.postgres_admin}@{layout.bind}:{layout.ports.postgres}/postgres"


def _wait_ready(layout: Layout, binaries: Binaries) -> None:
    for spec in process_specs(layout, binaries):
        if spec.port is None:
            continue
        try:
            wait_for_port(spec.host, spec.port, timeout=_READY_S)
        except Exception as exc:
            raise ServicesError(
                f"{spec.name} did not start listening on {spec.host}:{spec.port} within {_READY_S:.0f} s: "
                f"see {layout.log_dir / (spec.name + '.log')} (or `journalctl -u suitcase-{spec.name}`)"
            ) from exc
    deadline = time.monotonic() + _READY_S
    url = f"http://{layout.bind}:{layout.ports.influx_http}/ping"
    while True:  # the port opens a moment before /ping answers
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServicesError(f"InfluxDB does not answer {url}: see its log") from None
            time.sleep(0.1)


def wait_accounts(layout: Layout, server_password: str, timeout: float = _READY_S) -> None:
    """Return once the accounts service answers the server's account (``server_password``) over
    TLS, as the server asks it.

    Raises:
        ServicesError: it did not answer within ``timeout`` seconds, or the broker refused the login.
    """
    from kits.tls import client_context
    from server.broker_admin import BrokerAdminError
    from server.broker_remote import RemoteFilesAdmin

    host = layout.mqtt_host or layout.hostname  # where the server and the service connect
    try:
        tls = client_context(ca_file=layout.tls_dir / "ca.crt")
        admin = RemoteFilesAdmin(host, layout.ports.mqtt_tls, MQTT_SERVER_USER, server_password, tls=tls)
        try:
            admin.wait_answering(timeout)
        finally:
            admin.close()
    except BrokerAdminError as exc:
        raise ServicesError(f"{exc} (the supervisor's: {layout.log_dir / 'accounts.log'})") from exc


def _start_supervisor(layout: Layout) -> None:
    log = (layout.log_dir / "supervisor.out").open("ab")
    subprocess.Popen(
        [sys.executable, "-m", "suitcase.services.supervisor", str(layout.config_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while supervisor_pid(layout) is None:
        if time.monotonic() > deadline:
            raise ServicesError(f"the supervisor did not start: see {layout.log_dir / 'supervisor.out'}")
        time.sleep(0.05)


def up(
    layout: Layout,
    *,
    tls: TlsFiles | None = None,
    euid: int | None = None,
    path: str | None = None,
    apt: str | None = None,
    use_systemd: bool | None = None,
) -> list[str]:
    """Install (when root and missing), configure and start the stack; return what changed.

    Raises:
        ServicesError: a check failed; nothing was written.
    """
    binaries = ensure_installed(euid=euid, path=path, apt=apt)
    check_data_versions(layout, binaries)
    systemd = systemd_runs() if use_systemd is None else use_systemd
    running = units_active() if systemd else supervisor_pid(layout) is not None
    if not running:
        # Whatever holds a port now is not this stack (e.g. the Debian package's own instance).
        check_ports(layout)
    check_tls(layout, tls)
    changes: list[str] = []
    if save_layout(layout):
        changes.append(f"wrote {layout.config_dir / 'services.yaml'}")
    secrets, new = load_or_make_secrets(layout.secrets_file)
    if new:
        changes.append(f"made the stack's passwords in {layout.secrets_file}")
    _write_configs(layout, binaries, secrets, tls, changes)
    if systemd:
        suitcase = shutil.which("suitcase") or "/usr/local/bin/suitcase"
        settings_changed = bool(changes)
        specs = process_specs(layout, binaries, suitcase=[suitcase])
        written = install_units(render_units(layout, specs, suitcase))
        changes += [f"installed unit {name}" for name in written]
        if settings_changed:
            restart_units()
            changes.append("restarted the services with the new settings")
    elif running and changes:
        down(layout)
        _start_supervisor(layout)
        changes.append("restarted the services with the new settings")
    elif not running:
        _start_supervisor(layout)
        changes.append("started the services")
    _wait_ready(layout, binaries)
    influx_url = f"http://{layout.bind}:{layout.ports.influx_http}"
    accounts = influxdb.InfluxAccounts(
        admin=influx_admin(secrets),
        gateway=(INFLUX_GATEWAY_USER, secrets.influx_gateway),
        server=(INFLUX_SERVER_USER, secrets.influx_server),
    )
    if influxdb.apply_accounts(influx_url, accounts):
        changes.append("made InfluxDB's databases and users")
    if postgres.apply_registry(
        postgres_admin_url(layout, secrets),
        postgres.SERVER_ROLE,
        secrets.postgres_server,
        postgres.REGISTRY_DATABASE,
    ):
        changes.append("made the registry database and its role")
    # The server's first device-account request must find the service subscribed (it has no port).
    wait_accounts(layout, secrets.mqtt_server)
    return changes


def down(layout: Layout, *, use_systemd: bool | None = None) -> bool:
    """Stop the stack (its data stays); return whether anything was running."""
    if systemd_runs() if use_systemd is None else use_systemd:
        result = subprocess.run(["systemctl", "stop", "suitcase.target", "suitcase-*.service"], check=False)
        return result.returncode == 0
    pid = supervisor_pid(layout)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while supervisor_pid(layout) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if supervisor_pid(layout) == pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return True


@dataclass(frozen=True)
class ServiceState:
    """One service's state, as ``status`` shows it (``listening`` None: could not be checked)."""

    name: str
    address: str
    listening: bool | None


def status(layout: Layout) -> list[ServiceState]:
    """Whether each service of the stack accepts connections."""
    import socket

    states = []
    for name, host, port in (
        ("mosquitto", "127.0.0.1" if layout.mqtt_bind in ("0.0.0.0", "::") else layout.mqtt_bind,
         layout.ports.mqtt_tls),
        ("influxdb", layout.bind, layout.ports.influx_http),
        ("postgres", layout.bind, layout.ports.postgres),
    ):  # fmt: skip
        try:
            with socket.create_connection((host, port), timeout=1):
                listening = True
        except OSError:
            listening = False
        states.append(ServiceState(name, f"{host}:{port}", listening))
    states.append(_accounts_state(layout))
    return states


def _accounts_state(layout: Layout) -> ServiceState:
    """The accounts service (no port): whether it answers the server's account within 5 s."""
    import yaml

    address = f"{layout.mqtt_host or layout.hostname}:{layout.ports.mqtt_tls} (MQTT)"
    try:
        password = str(yaml.safe_load(layout.secrets_file.read_text())["mqtt_server"])
    except PermissionError:  # the server's password is root's: not checked, not down
        return ServiceState(ACCOUNTS_SERVICE, address, None)
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return ServiceState(ACCOUNTS_SERVICE, address, False)
    try:
        wait_accounts(layout, password, timeout=5.0)
    except SuitcaseError:
        return ServiceState(ACCOUNTS_SERVICE, address, False)
    return ServiceState(ACCOUNTS_SERVICE, address, True)
