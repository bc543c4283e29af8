"""Tests of `suitcase services up | down | status` on the real services (no systemd here: the stack's
own supervisor runs them), and of every refusal of `up` (nothing written when it refuses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from suitcase.services.influxdb import READINGS_DATABASE, influx_query
from suitcase.services.layout import Layout, load_layout
from suitcase.services.preflight import ServicesError
from suitcase.services.secrets import load_or_make_secrets
from suitcase.services.settings_files import parse_env
from suitcase.services.stack import down, status, up
from suitcase.services.supervisor import supervisor_pid
from suitcase.services.tls import TlsFiles, make_ca, make_server_cert
from tests.services.mosquitto import tls_session
from tests.services.stack import new_layout, running_stack
from tests.waiting import wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.postgres]


def _snapshot(*roots: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``roots`` with its modification time and content."""
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file() and "postgres" not in path.parts and path.suffix != ".log":
                files[str(path)] = (path.stat().st_mtime_ns, path.read_bytes())
    return files


@pytest.fixture(scope="module")
def stack() -> Iterator[Layout]:
    with running_stack() as layout:
        yield layout


def test_second_up_changes_nothing(stack: Layout) -> None:
    """Test that `up` on a running stack writes no file and makes no account."""
    config = _snapshot(stack.config_dir)
    assert up(stack, use_systemd=False) == []
    assert _snapshot(stack.config_dir) == config
    assert load_layout(stack.config_dir) == stack
    assert [(s.name, s.listening) for s in status(stack)] == [
        ("mosquitto", True), ("influxdb", True), ("postgres", True), ("accounts", True)
    ]  # fmt: skip


def _env(path: Path) -> dict[str, str]:
    assert path.stat().st_mode & 0o007 == 0, f"{path} is readable by everyone"
    return parse_env(path.read_text())


def test_settings_files_are_what_the_parts_accept(stack: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that gateway.env and server.env load as the parts' settings (production checks included)."""
    from gateway.settings import load_settings as gateway_settings
    from server.settings import load_settings as server_settings

    for key, value in {**_env(stack.gateway_env), **_env(stack.server_env)}.items():
        monkeypatch.setenv(key, value)
    gateway = gateway_settings()
    server = server_settings()
    assert gateway.username == "suitcase-gateway" and gateway.group == "gw"
    assert server.environment == "production" and not server.reads_open and server.mqtt_dynsec


def test_accounts_have_least_privilege(stack: Layout) -> None:
    """Test the accounts `up` made: the gateway's InfluxDB user writes, the server's only reads; the
    server's PostgreSQL role owns the registry; the broker takes TLS with the stack's CA only."""
    from gateway.sinks import open_sink
    from gateway.store import open_reader

    gateway = _env(stack.gateway_env)
    server = _env(stack.server_env)
    sink = open_sink(json.loads(gateway["SUITCASE_GATEWAY_SINKS"])[0])
    sink.open()
    from kits.wire import Record

    now = time.time()
    sink.write(
        [Record(org="city", device="dev-1", sensor="bme280", quantity="temperature", value=21.5, time=now)]
    )
    sink.close()
    reader = open_reader(server["SUITCASE_SERVER_STORE"])
    assert [d.device for d in reader.devices("city")] == ["dev-1"]
    assert [r.value for r in reader.latest()] == [21.5]
    secrets, _ = load_or_make_secrets(stack.secrets_file)
    url = f"http://{stack.bind}:{stack.ports.influx_http}"
    # The gateway's user (no right to create) wrote the log of devices seen that `up` made room for.
    admin = ("suitcase_admin", secrets.influx_admin)
    log = '"suitcase"."seen_log"."devices_seen_log"'
    assert influx_query(url, f'SELECT count("readings") FROM {log}', admin)[0]["values"][0][1] == 1
    with pytest.raises(Exception, match="not authorized"):
        influx_query(url, f'DROP DATABASE "{READINGS_DATABASE}"', ("suitcase_server", secrets.influx_server))
    with pytest.raises(Exception, match="not authorized"):
        influx_query(url, 'CREATE DATABASE "other"', ("suitcase_gateway", secrets.influx_gateway))
    registry = server["SUITCASE_SERVER_REGISTRY_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(registry, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe (id int)")
        conn.execute("DROP TABLE probe")
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
        )
    # The broker: the gateway's account over TLS with the CA of gateway.env.
    with tls_session(
        gateway["SUITCASE_GATEWAY_MQTT_HOST"], int(gateway["SUITCASE_GATEWAY_MQTT_PORT"]),
        gateway["SUITCASE_GATEWAY_USERNAME"], gateway["SUITCASE_GATEWAY_PASSWORD"],
        gateway["SUITCASE_GATEWAY_MQTT_CA_FILE"], client_id="probe-gw",
    ) as (_client, accepted):  # fmt: skip
        assert accepted


def test_supervisor_restarts_a_killed_service(stack: Layout) -> None:
    """Test that a service killed with SIGKILL is started again by the supervisor."""
    pid = supervisor_pid(stack)
    assert pid is not None
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    mosquitto = next(c for c in children if b"mosquitto" in Path(f"/proc/{c}/cmdline").read_bytes())
    os.kill(mosquitto, signal.SIGKILL)

    def back() -> bool:
        return status(stack)[0].listening and any(
            b"mosquitto" in Path(f"/proc/{c}/cmdline").read_bytes()
            for c in map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
            if c != mosquitto
        )

    wait_until(back, timeout=60)


def test_down_stops_and_up_starts_again(stack: Layout) -> None:
    """Test that down stops every service (data kept) and up brings the same stack back (this
    module's stack: it runs after the tests above)."""
    secrets = stack.secrets_file.read_text()
    assert down(stack, use_systemd=False)
    assert [s.listening for s in status(stack)] == [False, False, False, False]
    assert not down(stack, use_systemd=False)
    assert up(stack, use_systemd=False) == ["started the services"]
    assert stack.secrets_file.read_text() == secrets
    # `up` returned once the accounts service answers (it has no port to wait on): one request
    # right after it, sent once, is served (before, it could go out before the service subscribed).
    assert _answered_at_once(stack)
    assert [s.listening for s in status(stack)] == [True, True, True, True]


def _answered_at_once(layout: Layout) -> bool:
    """Whether the accounts service answers the first ping the server's account sends."""
    from kits.tls import client_context
    from server.broker_remote import RemoteFilesAdmin

    secrets, _ = load_or_make_secrets(layout.secrets_file)
    admin = RemoteFilesAdmin(layout.hostname, layout.ports.mqtt_tls, "suitcase-server", secrets.mqtt_server,
                             tls=client_context(ca_file=layout.tls_dir / "ca.crt"))  # fmt: skip
    try:
        return admin._control.call([{"command": "ping"}], 60) is not None
    finally:
        admin.close()


# --- bad input: each refusal names the problem and the fix, and writes nothing ---


def _refused(layout: Layout, match: str, **kwargs: Any) -> ServicesError:
    before = _snapshot(layout.config_dir, layout.data_dir)
    with pytest.raises(ServicesError, match=match) as caught:
        up(layout, use_systemd=False, **kwargs)
    assert _snapshot(layout.config_dir, layout.data_dir) == before
    return caught.value


def test_up_without_root_or_apt_refuses(tmp_path: Path) -> None:
    """Test that missing programs are installed only as root with apt-get; otherwise a clear error."""
    layout = new_layout(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    error = _refused(layout, "not running as root", euid=1000, path=str(empty))
    assert "sudo apt-get install" in str(error) and "mosquitto" in str(error)
    _refused(layout, "no apt-get", euid=0, path=str(empty), apt=str(tmp_path / "no-apt-get"))
    assert not layout.config_dir.exists()


def test_up_refuses_a_taken_port(tmp_path: Path) -> None:
    """Test that a port held by another program is named, with the option to choose another."""
    layout = new_layout(tmp_path)
    with socket.socket() as holder:
        holder.bind((layout.bind, layout.ports.influx_http))
        holder.listen()
        _refused(
            layout, rf"{layout.bind}:{layout.ports.influx_http} for InfluxDB \(HTTP\) \(or --influx-port\)"
        )
    assert not layout.config_dir.exists()


def test_up_refuses_a_data_dir_of_another_version(tmp_path: Path) -> None:
    """Test that a data directory of another layout, of another PostgreSQL, or of something else is
    refused and left as it was."""
    layout = new_layout(tmp_path)
    layout.data_dir.mkdir()
    layout.marker.write_text("99\n")
    _refused(layout, "made by another version of IoT Suitcase")
    layout.marker.write_text("1\n")
    layout.postgres_dir.mkdir()
    (layout.postgres_dir / "PG_VERSION").write_text("9\n")
    _refused(layout, "from PostgreSQL 9, but .* is installed.*pg_upgradecluster")
    shutil.rmtree(layout.postgres_dir)
    layout.marker.unlink()
    (layout.data_dir / "precious.db").write_text("someone's data")
    _refused(layout, "holds files but no stack")
    assert (layout.data_dir / "precious.db").read_text() == "someone's data"


def test_up_refuses_a_certificate_for_another_host(tmp_path: Path) -> None:
    """Test that a given certificate not naming the broker's host is refused before anything is
    written, and so is one made earlier when the host name changed."""
    layout = new_layout(tmp_path)
    ca = make_ca(tmp_path / "their-ca")
    theirs = make_server_cert(ca, tmp_path / "theirs", ["mqtt.elsewhere.example"])
    _refused(layout, "does not name the host 'localhost'", tls=theirs)
    assert not layout.config_dir.exists()
    mismatched = TlsFiles(ca=theirs.ca, cert=theirs.cert, key=make_server_cert(ca, tmp_path / "k", ["x"]).key)
    _refused(layout, "does not belong to the certificate", tls=mismatched)


def test_cli_up_refusal_exits_2_with_the_reason(tmp_path: Path) -> None:
    """Test `suitcase services up` on the command line: a refusal is exit 2 with the reason, and
    --cert without --key and --ca is refused before anything else."""
    from typer.testing import CliRunner

    from suitcase.cli import build_app

    layout = new_layout(tmp_path)
    runner = CliRunner()
    base = ["services", "up", "--config-dir", str(layout.config_dir), "--data-dir", str(layout.data_dir)]
    base += ["--hostname", "localhost", "--mqtt-port", str(layout.ports.mqtt_tls)]
    result = runner.invoke(build_app(base), [*base, "--cert", str(tmp_path / "x.crt")])
    assert result.exit_code == 2 and "--cert, --key and --ca go together" in result.output
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", layout.ports.mqtt_tls))
        holder.listen()
        result = runner.invoke(build_app(base), base)
    assert result.exit_code == 2, result.output
    assert f"0.0.0.0:{layout.ports.mqtt_tls} for mosquitto" in result.output
    assert not layout.config_dir.exists()


def test_status_of_the_accounts_service_without_a_stack_or_without_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that `status` reports the accounts service down when nothing answers it, and as not
    checked (not down: exit 0 if the rest is up) when secrets.yaml, which holds the server's
    password it asks with, is not readable (not root)."""
    from typer.testing import CliRunner

    from suitcase.services import stack as stack_module
    from suitcase.services.cli import app

    layout = new_layout(tmp_path)
    layout.secrets_file.parent.mkdir(parents=True)
    layout.secrets_file.write_text("mqtt_server: a-password\n")
    assert status(layout)[3].listening is False  # no broker: refused at once, no wait

    real = Path.read_text

    def root_only(path: Path, *args: Any, **kwargs: Any) -> str:
        if path == layout.secrets_file:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", root_only)
    accounts = stack_module._accounts_state(layout)
    assert (accounts.name, accounts.listening) == ("accounts", None)
    broker = stack_module.ServiceState("mosquitto", "x:1", True)
    monkeypatch.setattr(stack_module, "status", lambda _layout: [broker, accounts])
    monkeypatch.setattr("suitcase.services.cli.load_layout", lambda _dir: layout)
    shown = CliRunner().invoke(app, ["status", "--config-dir", str(tmp_path)])
    assert shown.exit_code == 0 and "not checked (run as root" in shown.output, shown.output
