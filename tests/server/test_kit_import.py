"""``POST /api/v1/kits/import``: kits and their Pis from CSV, all or nothing, every problem named by
row and column; bound Pis get their own broker accounts in a real Mosquitto (dynamic security, or
its password and ACL files)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from server.app import create_app
from server.settings import ServerSettings
from server.tables import DeviceRow, KitPiRow, KitRow
from suitcase.broker import MosquittoBroker
from tests.server.data import NOW
from tests.server.world import World
from tests.services.mosquitto import DYNSEC_ADMIN, STACK_SERVER, running_accounts_service

CODES = [f"SC-0A1B2-C3D4E-F5G6H-J7K8M-N9P{i:02d}" for i in range(10)]


def _counts(client: TestClient) -> tuple[int, int, int]:
    engine = client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        return (
            session.exec(select(func.count()).select_from(KitRow)).one(),
            session.exec(select(func.count()).select_from(KitPiRow)).one(),
            session.exec(select(func.count()).select_from(DeviceRow)).one(),
        )


def _import(world: World, text: str, status: int = 201, who: str = "a-operator", **extra: Any) -> Any:
    return world.ok(who, "POST", "/kits/import", status, json={"csv": text, **extra})


def test_import_registers_kits_and_binds_pis(world: World) -> None:
    """Test that one import makes two kits with all their Pis, binds the Pis that name a deployment
    (their configs wait for the Pi's poll with the label's code), and shows the codes it made once."""
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "school"})
    text = (
        "kit,profile,pi,claim_code,deployment,interval_s\n"
        f"IMP-1,starter,1,{CODES[0]},{dep['id']},60\n"
        f"IMP-1,starter,2,{CODES[1]},{dep['id']},\n"
        f"IMP-2,starter,3,{CODES[2]},,\n"
    )
    dry = _import(world, text, dry_run=True)
    assert (dry["dry_run"], dry["kits"], dry["pis"]) == (True, 2, 3)
    assert _counts(world.client) == (0, 0, 0)
    done = _import(world, text)
    assert (done["kits"], done["pis"], len(done["devices"])) == (2, 6, 2)
    made = {(c["kit"], c["pi"]) for c in done["claim_codes"]}
    assert made == {("IMP-1", 3), ("IMP-2", 1), ("IMP-2", 2)}
    assert all(c["claim_url"].endswith("/claim#code=" + c["code"]) for c in done["claim_codes"])
    ready = world.client.post("/api/v1/claims/poll", json={"code": CODES[0].lower()}).json()
    assert ready["status"] == "ready"
    assert ready["device"]["config"]["device"] in done["devices"]
    assert ready["device"]["config"]["publish_interval_s"] == 60
    assert world.client.post("/api/v1/claims/poll", json={"code": CODES[2]}).json()["status"] == "pending"
    kit = world.ok("a-viewer", "GET", f"/kits/{done['kit_ids'][0]}")
    assert kit["inventory_code"] == "IMP-1"
    audit = world.ok("a-admin", "GET", "/audit")
    assert sum(e["action"] == "import" for e in audit["data"]) == 2


def test_registry_problems_refuse_the_whole_import(world: World) -> None:
    """Test that a kit that exists, an unknown profile, a Pi beyond the profile, a claim code in use,
    and deployments of another organisation, of a kit or ended each name their row and column, and
    nothing of the file is written, not even its good rows."""
    world.ok("a-operator", "POST", "/kits", 201, json={"inventory_code": "OLD-1", "profile_id": "starter"})
    _import(world, f"kit,profile,pi,claim_code\nIN-USE,starter,1,{CODES[5]}\n")
    other = world.ok("b-operator", "POST", "/deployments", 201, json={"name": "theirs"})
    kit = world.ok(
        "a-operator", "POST", "/kits", 201, json={"inventory_code": "K-X", "profile_id": "starter"}
    )
    of_kit = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "k", "kit_id": kit["id"]})
    ended = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "old"})
    world.ok("a-operator", "POST", f"/deployments/{ended['id']}/end", 200)
    before = _counts(world.client)
    text = (
        "kit,profile,pi,claim_code,deployment\n"
        "GOOD-1,starter,1,,\n"
        "OLD-1,starter,1,,\n"
        "NEW-1,no-such-profile,1,,\n"
        "NEW-2,starter,4,,\n"
        f"NEW-3,starter,1,{CODES[5]},\n"
        f"NEW-4,starter,1,,{other['id']}\n"
        f"NEW-5,starter,1,,{of_kit['id']}\n"
        f"NEW-6,starter,1,,{ended['id']}\n"
        "NEW-7,starter,1,,999999\n"
    )
    refused = world.call("a-operator", "POST", "/kits/import", json={"csv": text})
    assert refused.status_code == 422, refused.text
    found = {(p["row"], p["column"]): p["msg"] for p in refused.json()["detail"]}
    assert set(found) == {
        (3, "kit"),
        (4, "profile"),
        (5, "pi"),
        (6, "claim_code"),
        (7, "deployment"),
        (8, "deployment"),
        (9, "deployment"),
        (10, "deployment"),
    }, found
    assert "already exists" in found[(3, "kit")]
    assert "has 3 Pis" in found[(5, "pi")]
    assert "ended" in found[(9, "deployment")]
    assert _counts(world.client) == before


def test_malformed_csv_and_roles_through_the_api(world: World) -> None:
    """Test that a malformed file answers 422 with row and column, a viewer is refused, and another
    organisation's admin cannot import into this one."""
    refused = world.call("a-operator", "POST", "/kits/import", json={"csv": "kit,profile,pi\nK,starter,x\n"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["msg"].startswith("row 2, column pi:")
    assert (
        world.call(
            "a-viewer", "POST", "/kits/import", json={"csv": "kit,profile,pi\nK,starter,1\n"}
        ).status_code
        == 403
    )
    b_admin = world.call(
        "b-admin",
        "POST",
        "/kits/import",
        json={"csv": "kit,profile,pi\nK,starter,1\n", "org_id": world.orgs["a"]},
    )
    assert b_admin.status_code == 404
    assert _counts(world.client) == (0, 0, 0)


@pytest.mark.mosquitto
def test_bound_pis_get_broker_accounts_and_a_refusal_undoes_all(
    mosquitto_dynsec: MosquittoBroker, settings: ServerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that an import binding 60 Pis makes 60 clients in Mosquitto's dynamic security, in
    batches; and that when the broker refuses one account, the accounts already made are deleted
    and the registry has none of the import."""
    settings = ServerSettings.model_validate(
        settings.model_dump()
        | {
            "open_reads": False,
            "mqtt_host": mosquitto_dynsec.host,
            "mqtt_port": mosquitto_dynsec.port,
            "mqtt_username": DYNSEC_ADMIN[0],
            "mqtt_password": DYNSEC_ADMIN[1],
            "mqtt_dynsec": True,
        }
    )
    monkeypatch.setattr("server.broker_admin.BATCH_DEVICES", 25)  # several batches from 60
    names = iter(f"dev-{i:04d}" for i in range(10_000))
    monkeypatch.setattr("server.fleet.device_slug", lambda *_a, **_k: next(names))
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        world = World.build(client)
        dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "hall"})
        text = "kit,profile,pi,deployment\n" + "".join(
            f"B-{k},starter,{p},{dep['id']}\n" for k in range(20) for p in (1, 2, 3)
        )
        done = _import(world, text)
        assert len(done["devices"]) == 60
        clients = set(_dynsec(mosquitto_dynsec, "listClients"))
        assert set(done["devices"]) <= clients
        # The broker refuses the 40th account of the next import (its role already exists).
        _dynsec(mosquitto_dynsec, "createRole", "device-dev-0099")
        before = _counts(client)
        text = "kit,profile,pi,deployment\n" + "".join(
            f"C-{k},starter,{p},{dep['id']}\n" for k in range(20) for p in (1, 2, 3)
        )
        refused = world.call("a-operator", "POST", "/kits/import", json={"csv": text})
        assert refused.status_code == 503, refused.text
        assert "device-dev-0099" in refused.json()["detail"]
        assert _counts(client) == before
        left = set(_dynsec(mosquitto_dynsec, "listClients"))
        assert left == clients, sorted(left - clients)[:5]


@pytest.mark.mosquitto
@pytest.mark.parametrize("mode", ["files", "files-remote"])
def test_bound_pis_get_file_accounts_and_a_refusal_undoes_all(
    mosquitto_dynsec_files: MosquittoBroker,
    settings: ServerSettings,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """Test that with ``device_accounts=files`` (the server writes the files) or ``files-remote``
    (the broker host's accounts service does, asked over MQTT) an import binding 60 Pis gives each
    an account in Mosquitto's password file that the broker accepts; and that an import meeting an
    account that already exists is refused whole: no new account in the files, nothing in the
    registry."""
    from server.broker_files import PASSWORD_FILE, login_probe, password_hash

    broker = mosquitto_dynsec_files
    assert broker.device_accounts_dir is not None
    where: dict[str, Any] = {"device_accounts_dir": broker.device_accounts_dir}
    account = DYNSEC_ADMIN
    if mode == "files-remote":  # the server knows only the broker's address and its stack account
        where = {}
        account = (STACK_SERVER.username, STACK_SERVER.password)
        monkeypatch.setattr("server.broker_remote.MAX_REQUEST_BYTES", 3_000)  # several requests
    settings = ServerSettings.model_validate(
        settings.model_dump()
        | {
            "open_reads": False,
            "mqtt_host": broker.host,
            "mqtt_port": broker.port,
            "mqtt_username": account[0],
            "mqtt_password": account[1],
            "mqtt_dynsec": True,
            "device_accounts": mode,
        }
        | where
    )
    names = iter(f"dev-{i:04d}" for i in range(10_000))
    monkeypatch.setattr("server.fleet.device_slug", lambda *_a, **_k: next(names))
    passwords = broker.device_accounts_dir / PASSWORD_FILE

    def accounts() -> set[str]:
        return {line.split(":")[0] for line in passwords.read_text().splitlines()} - {
            "suitcase-accounts-barrier"
        }

    with contextlib.ExitStack() as stack:
        if mode == "files-remote":
            stack.enter_context(running_accounts_service(broker))
        client = stack.enter_context(TestClient(create_app(settings, clock=lambda: NOW)))
        world = World.build(client)
        dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "hall"})
        text = "kit,profile,pi,deployment\n" + "".join(
            f"B-{k},starter,{p},{dep['id']}\n" for k in range(20) for p in (1, 2, 3)
        )
        done = _import(world, text)
        assert accounts() == set(done["devices"]) and len(done["devices"]) == 60
        # The broker knows the account (it refuses a wrong password; the Pi gets its own at poll).
        device = done["devices"][0]
        assert login_probe(broker.host, broker.port)(device, "wrong") is False
        # An account for the 40th Pi of the next import exists already.
        passwords.write_text(passwords.read_text() + f"dev-0099:{password_hash('x')}\n")
        before = _counts(client)
        text = "kit,profile,pi,deployment\n" + "".join(
            f"C-{k},starter,{p},{dep['id']}\n" for k in range(20) for p in (1, 2, 3)
        )
        refused = world.call("a-operator", "POST", "/kits/import", json={"csv": text})
        assert refused.status_code == 503, refused.text
        assert "dev-0099" in refused.json()["detail"]
        assert _counts(client) == before
        assert accounts() == set(done["devices"]) | {"dev-0099"}


def _dynsec(broker: MosquittoBroker, command: str, *args: str) -> list[str]:
    out = subprocess.run(
        [
            "mosquitto_ctrl",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-u",
            DYNSEC_ADMIN[0],
            "-P",
            DYNSEC_ADMIN[1],
            "dynsec",
            command,
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.split()


def test_cli_import_prints_problems_and_writes_codes(closed_settings: ServerSettings, tmp_path: Path) -> None:
    """Test that ``suitcase kit import`` against a running server prints each refused row with its
    column and exits 1, then imports the fixed file and writes the claim codes (mode 0600), which
    ``suitcase kit card --codes`` prints the kit's card from; a server without a scheme or a missing
    file is a message, not a traceback."""
    from typer.testing import CliRunner

    from server.runner import ServerThread
    from suitcase.kit_cli import app

    with ServerThread(create_app(closed_settings, clock=lambda: NOW), "127.0.0.1", 0) as server:
        world = World.build(TestClient(server.app))
        token = world.tokens["a-operator"]["Authorization"].removeprefix("Bearer ")
        bad = tmp_path / "bad.csv"
        bad.write_text("kit,profile,pi\nCLI-1,starter,1\nCLI-1,starter,1\n")
        args = ["import", "--server", server.url, "--token", token]
        runner = CliRunner()
        refused = runner.invoke(app, [*args, str(bad)])
        assert refused.exit_code == 1, refused.output
        assert "row 3, column pi: Pi 1 of kit CLI-1 is also on row 2" in refused.output
        good = tmp_path / "good.csv"
        good.write_text("kit,profile,pi\nCLI-1,starter,1\n")
        assert "would be imported" in runner.invoke(app, [*args, "--dry-run", str(good)]).output
        codes = tmp_path / "codes.csv"
        done = runner.invoke(app, [*args, "--codes-out", str(codes), str(good)])
        assert done.exit_code == 0, done.output
        assert "imported 1 kits with 3 Pis" in done.output
        lines = codes.read_text().splitlines()
        assert lines[0] == "kit,pi,claim_code,claim_url" and len(lines) == 4
        assert codes.stat().st_mode & 0o777 == 0o600
        unreachable = runner.invoke(
            app, ["import", "--server", "http://127.0.0.1:9", "--token", "x", str(good)]
        )
        assert unreachable.exit_code == 2 and "cannot reach the server" in unreachable.output
        # the codes file is what the kit's quick-start card is printed from
        card = runner.invoke(
            app, ["card", "starter", "--codes", str(codes), "--out", str(tmp_path / "c.html")]
        )
        assert card.exit_code == 0, card.output
        assert "3 of 3 claim codes" in card.output
        no_scheme = runner.invoke(
            app, ["import", "--server", "suitcase.example.org", "--token", "x", str(good)]
        )
        assert no_scheme.exit_code == 2 and "is not a URL" in no_scheme.output, no_scheme.output
        missing = runner.invoke(app, [*args, str(tmp_path / "nothere.csv")])
        assert missing.exit_code == 2 and "no such file: check the path" in missing.output, missing.output
