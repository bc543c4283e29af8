"""Tests that the README's operations guide stays true: the install takes at most five commands,
every `suitcase` command and option it shows exists, and every metric its alarms name is one the
gateway serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from suitcase.cli import build_app

README = Path(__file__).parents[3] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n### ", start + len(title))
    return text[start : end if end > 0 else None]


def _commands(block: str) -> list[str]:
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def _check_suitcase_calls(text: str) -> int:
    cli = typer.main.get_command(build_app())
    checked = 0
    for call in re.findall(r"exec suitcase ([^'\n]*)|^suitcase ([^#\n]*)", text, flags=re.M):
        words = (call[0] or call[1]).split()
        command: Any = cli
        while hasattr(command, "get_command") and words and not words[0].startswith("-"):
            nxt = command.get_command(type(command).context_class(command), words.pop(0))
            assert nxt is not None, f"README shows a command that does not exist: {call}"
            command = nxt
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"README shows {word}, which {command.name} lacks"
        checked += 1
    return checked


def test_install_takes_at_most_five_commands_that_exist() -> None:
    """Test the install block: at most five commands; each `suitcase` one exists with its options."""
    install = _section("### Install")
    block = install.split("```sh", 1)[1].split("```", 1)[0]
    assert 1 <= len(_commands(block)) <= 5
    assert _check_suitcase_calls(block) == 2
    upgrade = _section("### Upgrade").split("```sh", 1)[1].split("```", 1)[0]
    assert _check_suitcase_calls(upgrade) == 3


def test_alarms_name_metrics_the_gateway_serves() -> None:
    """Test that every metric in the monitoring table is one of the gateway's."""
    from gateway.metrics import Metrics

    served = {m.name for m in Metrics().registry.collect()}
    named = set(re.findall(r"suitcase_gateway_[a-z_]+", _section("### What to monitor")))
    assert named
    for name in named:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert base in served, f"README names {name}, which the gateway does not serve"
