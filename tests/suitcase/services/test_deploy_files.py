"""Tests of deploy/: the shipped units and configs are what `suitcase services up` renders, and
systemd accepts every unit (systemd-analyze verify; PID 1 here is not systemd, so units are checked,
not run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from deploy import DEPLOY_DIR
from suitcase.services.deploy_files import DEFAULT_LAYOUT, render_deploy_files
from suitcase.services.processes import find_binaries, process_specs
from suitcase.services.systemd import render_units
from tests.services import require_service


def test_deploy_files_are_the_rendered_ones() -> None:
    """Test that every file of deploy/systemd and deploy/config is what the code renders (run
    `python -m suitcase.services.deploy_files` after changing the configuration code)."""
    rendered = render_deploy_files()
    for name, text in rendered.items():
        path = DEPLOY_DIR / name
        assert path.exists(), f"deploy/{name} is missing: python -m suitcase.services.deploy_files"
        assert path.read_text() == text, f"deploy/{name} is stale: python -m suitcase.services.deploy_files"
    shipped = {
        str(p.relative_to(DEPLOY_DIR)) for d in ("systemd", "config") for p in (DEPLOY_DIR / d).iterdir()
    }
    assert shipped == set(rendered)


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """Test that systemd accepts every unit, the gateway template as two instances."""
    if shutil.which("systemd-analyze") is None:
        require_service("systemd-analyze", "apt-get install systemd")
    binaries, missing = find_binaries()
    if binaries is None:
        require_service(", ".join(missing), "apt-get install mosquitto influxdb postgresql openssl")
    assert binaries is not None
    suitcase = shutil.which("suitcase") or str(Path(__file__).parents[3] / ".venv" / "bin" / "suitcase")
    units = render_units(DEFAULT_LAYOUT, process_specs(DEFAULT_LAYOUT, binaries, as_root=True), suitcase)
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    for instance in ("9101", "9102"):
        (tmp_path / f"suitcase-gateway@{instance}.service").write_text(units["suitcase-gateway@.service"])
    names = [str(tmp_path / n) for n in units if "@." not in n]
    names += [str(tmp_path / f"suitcase-gateway@{i}.service") for i in ("9101", "9102")]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    # A misspelt key is what verify would report: the check can fail.
    (tmp_path / "bad.service").write_text(
        units["suitcase-server.service"].replace("ExecStart=", "ExecStrat=")
    )
    bad = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "bad.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "ExecStrat" in bad.stderr or bad.returncode != 0
