"""``suitcase kit``: docs check, the quick-start card (one A4 page), the wheel and pi-setup.sh."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge.config import DEFAULT_STATE_DIR, load_edge_settings
from edge.parts import PARTS, facts_of
from kits.catalog import load_catalog
from kits.errors import ConfigError
from kits.models import KitSensor
from suitcase.cli import build_app
from suitcase.hardware_docs import ClaimCode, load_claim_codes, load_part_facts, render_card
from tests.services import require_service

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "hardware" / "pi-setup.sh"
runner = CliRunner()

CODES_CSV = (
    "pi,claim_code,url\n"
    "1,K3F9-QX72-MM4P,https://suitcase.example.org/claim/K3F9-QX72-MM4P\n"
    "2,ZT8W-91LC-PA3D,https://suitcase.example.org/claim/ZT8W-91LC-PA3D\n"
)


def _invoke(*args: str) -> Any:
    argv = ["kit", *args]
    return runner.invoke(build_app(argv), argv)


def test_kit_docs_check_passes_on_the_committed_folder() -> None:
    """Test that `suitcase kit docs --check` finds hardware/ up to date."""
    result = _invoke("docs", "--check", "--out", str(ROOT / "hardware"))
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_kit_docs_check_fails_on_a_stale_folder(tmp_path: Path) -> None:
    """Test that --check exits 1 and names the stale files, and a plain run fixes them."""
    result = _invoke("docs", "--check", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert "README.md" in result.output
    assert _invoke("docs", "--out", str(tmp_path)).exit_code == 0
    assert _invoke("docs", "--check", "--out", str(tmp_path)).exit_code == 0


def test_claim_codes_from_csv_and_yaml(tmp_path: Path) -> None:
    """Test that CSV and YAML claim-code files give the same rows."""
    csv_file = tmp_path / "codes.csv"
    csv_file.write_text(CODES_CSV, encoding="utf-8")
    yaml_file = tmp_path / "codes.yaml"
    yaml_file.write_text(
        "- {pi: '1', claim_code: K3F9-QX72-MM4P, url: 'https://suitcase.example.org/claim/K3F9-QX72-MM4P'}\n"
        "- {pi: '2', claim_code: ZT8W-91LC-PA3D, url: 'https://suitcase.example.org/claim/ZT8W-91LC-PA3D'}\n",
        encoding="utf-8",
    )
    assert load_claim_codes(csv_file) == load_claim_codes(yaml_file)
    assert [c.pi for c in load_claim_codes(csv_file)] == ["1", "2"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("pi,code,url\n1,ABCD,https://x\n", "header `pi,claim_code,url`"),
        ("pi,claim_code,url\n1,ABCD,ftp://x\n", "line 2: url"),
        ("pi,claim_code,url\n1,ABCD,https://x\n1,EFGH,https://y\n", "Pi '1' appears twice"),
    ],
)
def test_bad_claim_code_files_say_what_to_fix(tmp_path: Path, text: str, match: str) -> None:
    """Test that a malformed codes file is refused with the line and the fix."""
    path = tmp_path / "codes.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_claim_codes(path)


def test_claim_codes_of_one_kit_from_the_import(tmp_path: Path) -> None:
    """Test that the codes `suitcase kit import --codes-out` writes are read as a card's, and a file
    of several kits is refused with the fix (a card is one kit's)."""
    one = tmp_path / "one.csv"
    one.write_text("kit,pi,claim_code,claim_url\nK-1,1,ABCD-1,https://s.example/claim#code=ABCD-1\n")
    assert load_claim_codes(one) == [
        ClaimCode(pi="1", claim_code="ABCD-1", url="https://s.example/claim#code=ABCD-1")
    ]
    two = tmp_path / "two.csv"
    two.write_text(one.read_text() + "K-2,1,EFGH-1,https://s.example/claim#code=EFGH-1\n")
    with pytest.raises(ConfigError, match=r"claim codes of 2 kits \(K-1, K-2\).*keep one kit's rows"):
        load_claim_codes(two)


def test_card_refuses_more_codes_than_pis() -> None:
    """Test that a codes file with more Pis than the kit has is refused."""
    profile = load_catalog().kit_profiles["starter"]
    codes = [ClaimCode(pi=str(i), claim_code=f"CODE{i:04d}", url="https://x.example/c") for i in range(9)]
    with pytest.raises(ConfigError, match="remove the extra rows"):
        render_card(profile, codes)


def test_kit_card_command_writes_the_card(tmp_path: Path) -> None:
    """Test that `suitcase kit card` writes HTML with a QR per code and a box for the rest."""
    codes = tmp_path / "codes.csv"
    codes.write_text(CODES_CSV, encoding="utf-8")
    out = tmp_path / "card.html"
    result = _invoke("card", "starter", "--codes", str(codes), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert text.count('<div class="qr"><svg') == 2
    assert "Stick the QR label of Pi 3 here" in text
    assert "K3F9-QX72-MM4P" in text
    bad = _invoke("card", "no-such-kit", "--out", str(out))
    assert bad.exit_code == 2
    assert "use one of" in bad.output


def _largest_card() -> str:
    """A card with the most a card may hold: 10 Pis, every part the guide documents."""
    profile = load_catalog().kit_profiles["starter"]
    facts = load_part_facts()
    from edge.drivers import load_driver

    sensors, used = [], set()
    for part in sorted(facts):
        address = next(a for a in load_driver(part).info.addresses if a not in used)
        used.add(address)
        quantities = [q for q in load_driver(part).info.quantity_names][:1]
        sensors.append(KitSensor(part=part, address=address, quantities=quantities, label=f"{part} sensor"))
    big = profile.model_copy(update={"pis": 10, "sensors": sensors})
    codes = [
        ClaimCode(pi=str(i + 1), claim_code=f"CODE-{i:04d}-ABCD-EFGH", url=f"https://s.example.org/claim/{i}")
        for i in range(10)
    ]
    return render_card(big, codes, facts)


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["starter", "largest"])
def test_card_prints_on_one_a4_page(page: Any, tmp_path: Path, screenshot_dir: Path, kind: str) -> None:
    """Test that the card prints to exactly one A4 page in Chromium, and renders to an image."""
    if kind == "starter":
        codes = tmp_path / "codes.csv"
        codes.write_text(CODES_CSV, encoding="utf-8")
        html = render_card(load_catalog().kit_profiles["starter"], load_claim_codes(codes), load_part_facts())
    else:
        html = _largest_card()
    card = tmp_path / "card.html"
    card.write_text(html, encoding="utf-8")
    page.goto(card.as_uri())
    pdf = tmp_path / "card.pdf"
    pdf.write_bytes(page.pdf(format="A4", print_background=True, prefer_css_page_size=True))
    data = pdf.read_bytes()
    pages = data.count(b"/Type /Page") - data.count(b"/Type /Pages")
    assert pages == 1, f"the {kind} card prints on {pages} pages"
    if shutil.which("pdftoppm") is None:
        require_service("pdftoppm", "apt-get install poppler-utils")
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-singlefile", str(pdf), str(screenshot_dir / f"card-{kind}")],
        check=True,
    )
    assert (screenshot_dir / f"card-{kind}.png").stat().st_size > 10_000


# --- the wheel and pi-setup.sh -----------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built as `make dist` builds it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("iot_suitcase-*.whl")
    return found


def test_wheel_holds_the_data_files(wheel: Path) -> None:
    """Test that the wheel carries the catalogue YAML, the server's web files and the broker config."""
    import kits

    assert wheel.name == f"iot_suitcase-{kits.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kits/catalog/kits/starter.yaml" in names
    assert any(n.startswith("kits/catalog/usecases/") and n.endswith(".yaml") for n in names)
    assert any(n.startswith("server/web/static/") for n in names)
    assert any(n.startswith("server/web/templates/") for n in names)
    assert "deploy/mosquitto/suitcase.conf" in names
    assert "suitcase/kit_cli.py" in names
    assert {f"edge/parts/{part}/facts.yaml" for part in PARTS} <= names


def test_wheel_extras_keep_the_pi_lean(wheel: Path) -> None:
    """Test that the base install carries no server or demo library, and the edge extra carries each
    part's driver library (from its facts.yaml) but nothing of the server, the gateway or the demo."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    requires = [
        line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")
    ]
    base = {r.split(">")[0].split(";")[0].strip() for r in requires if "extra ==" not in r}
    edge = {r.split(">")[0].split(";")[0].strip() for r in requires if 'extra == "edge"' in r}
    assert base == {"pydantic", "pyyaml", "typer", "rich"}
    assert {"paho-mqtt", "adafruit-blinka"} <= edge
    for part in PARTS:
        for requirement in facts_of(part).requires:
            assert requirement.split(">")[0] in edge, part
    for heavy in ("fastapi", "uvicorn", "sqlmodel", "amqtt", "influxdb-client", "psycopg[binary]", "segno"):
        assert heavy not in base | edge, heavy
    assert "Provides-Extra: demo" in metadata


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _setup(root: Path, wheel: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "bash",
            str(SETUP),
            "--root",
            str(root),
            "--wheel",
            str(wheel),
            "--pip-args",
            "--no-deps --no-index",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pi_setup_twice_under_root_changes_nothing_the_second_time(tmp_path: Path, wheel: Path) -> None:
    """Test that pi-setup.sh writes I2C, venv, config and unit under --root, and a rerun is a no-op."""
    root = tmp_path / "pi"
    args = ("--claim-code", "K3F9-QX72-MM4P", "--server-url", "https://suitcase.example.org")
    first = _setup(root, wheel, *args)
    assert first.returncode == 0, first.stderr
    tree = _tree(root)
    second = _setup(root, wheel, *args)
    assert second.returncode == 0, second.stderr
    assert _tree(root) == tree
    assert "wrote" not in second.stdout and "installed agent" not in second.stdout

    assert "dtparam=i2c_arm=on" in (root / "boot/firmware/config.txt").read_text().splitlines()
    assert "i2c-dev" in (root / "etc/modules").read_text().splitlines()
    config = (root / "etc/suitcase/edge.toml").read_text()
    settings = load_edge_settings(root / "etc/suitcase/edge.toml")  # the agent reads what we wrote
    assert settings.claim is not None
    assert settings.claim.code == "K3F9-QX72-MM4P"
    assert settings.claim.server == "https://suitcase.example.org"
    assert settings.state_dir == DEFAULT_STATE_DIR
    assert oct((root / "etc/suitcase/edge.toml").stat().st_mode & 0o777) == "0o640"
    unit = (root / "etc/systemd/system/suitcase-edge.service").read_text()
    assert (
        "ExecStart=/opt/suitcase/venv/bin/python -m edge.updates.launcher --home /var/lib/suitcase/agent "
        "-- edge run --config /etc/suitcase/edge.toml"
    ) in unit
    assert (root / "opt/suitcase/venv/bin/suitcase").exists()
    # under --root, system commands are printed, never run
    assert "would run: raspi-config nonint do_i2c 0" in first.stdout
    assert "would run: systemctl enable suitcase-edge.service" in first.stdout
    # a later run without a code keeps the config
    third = _setup(root, wheel)
    assert third.returncode == 0, third.stderr
    assert (root / "etc/suitcase/edge.toml").read_text() == config


def test_pi_setup_keeps_an_existing_i2c_line_single(tmp_path: Path, wheel: Path) -> None:
    """Test that an `i2c_arm=off` line is replaced, not duplicated, on an older /boot/config.txt."""
    root = tmp_path / "pi"
    (root / "boot").mkdir(parents=True)
    (root / "boot/config.txt").write_text("arm_64bit=1\ndtparam=i2c_arm=off\n")
    result = _setup(root, wheel, "--claim-code", "ABCD1234", "--server-url", "http://10.0.0.2:8000")
    assert result.returncode == 0, result.stderr
    assert (root / "boot/config.txt").read_text() == "arm_64bit=1\ndtparam=i2c_arm=on\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--claim-code", "bad code!", "--server-url", "https://x"], "claim code"),
        (["--claim-code", "ABCD1234"], "give both --claim-code and --server-url"),
        ([], "give --claim-code and --server-url the first time"),
        (["--server-url", "suitcase.example.org", "--claim-code", "ABCD1234"], "must start with https://"),
    ],
)
def test_pi_setup_refuses_bad_input(tmp_path: Path, wheel: Path, args: list[str], message: str) -> None:
    """Test that a wrong claim code, URL or a missing argument stops with what to do."""
    result = _setup(tmp_path / "pi", wheel, *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_pi_setup_is_shellcheck_clean() -> None:
    """Test that shellcheck finds nothing in pi-setup.sh."""
    if shutil.which("shellcheck") is None:
        require_service("shellcheck", "apt-get install shellcheck")
    result = subprocess.run(["shellcheck", str(SETUP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_pi_setup_needs_root_without_root_dir(wheel: Path) -> None:
    """Test that a run without --root as a normal user stops and says to use sudo."""
    command = ["bash", str(SETUP), "--wheel", str(wheel)]
    if os.geteuid() == 0:  # CI runs as root: drop to an unprivileged user for this check
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert "sudo" in result.stderr
