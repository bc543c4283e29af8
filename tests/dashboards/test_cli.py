"""Tests of ``suitcase dashboards build|push`` (push against the Grafana contract fake)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashboards.build import TEMPLATES, dashboard_uid
from suitcase.cli import build_app
from tests.dashboards.grafana_fake import FakeGrafana

runner = CliRunner()


def _run(*args: str) -> object:
    argv = ["dashboards", *args]
    return runner.invoke(build_app(argv), argv)


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake
    assert fake.violations == []


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    path = tmp_path / "creds.yaml"
    path.write_text(
        "orgs:\n"
        "  aarhus: {user: aarhus_reader, password: pa}\n"
        "  odense: {user: odense_reader, password: po}\n",
        encoding="utf-8",
    )
    return path


def test_build_writes_json_files(tmp_path: Path) -> None:
    """Test that `suitcase dashboards build --out DIR` writes one JSON file per template."""
    result = _run("build", "--out", str(tmp_path), "--flavour", "flux")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(TEMPLATES)
    assert json.loads((tmp_path / "energy.json").read_text(encoding="utf-8"))["uid"] == dashboard_uid(
        "energy"
    )


def test_build_refuses_an_unknown_template(tmp_path: Path) -> None:
    """Test that a misspelt template id exits 2 naming the valid ids."""
    result = _run("build", "--out", str(tmp_path), "--template", "bin-fil")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "unknown dashboard template 'bin-fil'" in result.output  # type: ignore[attr-defined]


def test_push_twice_then_nothing_changes(grafana: FakeGrafana, creds: Path) -> None:
    """Test the push command end to end: creates everything, then reports nothing to change."""
    args = ["push", "--grafana-url", grafana.url, "--influx-url", "http://influxdb:8086"]
    args += ["--credentials", str(creds), "--orgs", "aarhus,odense", "--basic-auth", "admin:admin"]
    first = _run(*args)
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    assert "created organisation aarhus" in first.output  # type: ignore[attr-defined]
    second = _run(*args)
    assert second.exit_code == 0, second.output  # type: ignore[attr-defined]
    assert second.output.strip().splitlines()[-1] == "0 changed, 18 already up to date"  # type: ignore[attr-defined]


def test_push_with_a_bad_token_exits_2_with_advice(
    grafana: FakeGrafana, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a 401 from Grafana is a one-line error, not a traceback (token from GRAFANA_TOKEN)."""
    monkeypatch.setenv("GRAFANA_TOKEN", "nope")
    monkeypatch.delenv("GRAFANA_BASIC_AUTH", raising=False)
    result = _run(
        "push", "--grafana-url", grafana.url, "--influx-url", "http://i:8086",
        "--credentials", str(creds), "--orgs", "aarhus",
    )  # fmt: skip
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "refused the credentials (401)" in result.output  # type: ignore[attr-defined]
