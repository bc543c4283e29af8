"""Tests of suitcase/cli.py: the root command on an install that lacks a part's libraries.

The test venv has every extra, so each case runs `suitcase` in a fresh interpreter with one library
made unimportable (``sys.modules[name] = None``), as on a Pi with only ``[edge]`` or a laptop with
the base install.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def _suitcase_without(library: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys; sys.modules[{library!r}] = None; from suitcase.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_a_part_whose_library_is_missing_with_what_to_install() -> None:
    """Test that `suitcase --help` (the README's first command) works on an install without the
    demo's libraries and says which extra brings the demo, instead of a traceback."""
    result = _suitcase_without("httpx", "--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "not installed here: pip install 'iot-suitcase[demo]'" in " ".join(result.stdout.split())
    assert "edge" in result.stdout and "server" in result.stdout


@pytest.mark.parametrize(
    ("library", "args", "extra"),
    [
        ("uvicorn", ["server", "run", "--store", "store.sqlite"], "server"),
        ("segno", ["kit", "card", "starter", "--out", "card.html"], "server"),
        ("httpx", ["demo", "--help"], "demo"),
    ],
)
def test_a_command_whose_library_is_missing_says_which_extra_to_install(
    library: str, args: list[str], extra: str
) -> None:
    """Test that a command needing a library the install lacks exits 2 naming the library and the
    extra that installs it, with no traceback."""
    result = _suitcase_without(library, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert f"needs the Python library {library!r}" in text, text
    assert f"pip install 'iot-suitcase[{extra}]'" in text, text
