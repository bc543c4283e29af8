"""Tests of server/cli.py: ``suitcase server run`` and its argument errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from server.cli import app

runner = CliRunner()


def test_help_names_the_part() -> None:
    """Test that the sub-app's help says what it is."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "Server: registry API and web pages" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "65535"),
        (["--registry-url", "nonsense"], "sqlite:///"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    """Test that a bad port or registry URL exits with code 2 and says what to use."""
    result = runner.invoke(app, ["run", "--store", str(tmp_path / "s.db"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_environment_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that production with the default secret refuses to start, naming the variable."""
    monkeypatch.setenv("SUITCASE_SERVER_ENVIRONMENT", "production")
    result = runner.invoke(app, ["run", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2 and "SUITCASE_SERVER_SECRET_KEY" in result.output


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    """Test that a taken port is reported before uvicorn starts."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            app,
            [
                "run",
                "--port",
                str(port),
                "--store",
                str(tmp_path / "s.db"),
                "--registry-url",
                f"sqlite:///{tmp_path / 'r.db'}",
            ],
        )
    assert result.exit_code == 2 and f"127.0.0.1:{port}" in result.output
