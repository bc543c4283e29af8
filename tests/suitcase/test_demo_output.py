"""Tests of suitcase/demo_output.py: the live panel on a terminal, plain flushed lines otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from suitcase.demo_output import LivePanel, PlainLines, Progress, open_output

PROGRESS = Progress(
    url="http://127.0.0.1:8000/",
    broker="mosquitto on 127.0.0.1:1883",
    devices=3,
    readings=120,
    dead_letters=0,
    elapsed=0.0,
    kiosk_url="http://127.0.0.1:8000/kiosk#token=sct_x",
    login="demo@open-lab.example / pa[ss]/word[/]",
)


class _Flushes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def test_without_a_terminal_every_line_is_plain_and_flushed() -> None:
    """Test that a pipe gets the URLs and the login as plain lines, each flushed, a first progress
    line after 3 s and then one every 10 s."""
    out = _Flushes()
    plain = open_output(Console(file=out))
    assert isinstance(plain, PlainLines)
    plain.start(PROGRESS)
    for second in range(1, 25):
        plain.update(Progress(**{**PROGRESS.__dict__, "elapsed": float(second), "readings": 120 + second}))
    lines = out.getvalue().splitlines()
    assert "page: http://127.0.0.1:8000/" in lines
    assert "fleet: http://127.0.0.1:8000/fleet  (log in as demo@open-lab.example / pa[ss]/word[/])" in lines
    progress = [line for line in lines if line.startswith("running ") and "readings landed" in line]
    assert progress == [
        "running 3 s: 123 readings landed, 0 dead letters",
        "running 13 s: 133 readings landed, 0 dead letters",
        "running 23 s: 143 readings landed, 0 dead letters",
    ]
    assert out.flushes == len(lines)
    assert "\x1b[" not in out.getvalue()


def test_the_panel_shows_a_password_with_brackets_as_it_is() -> None:
    """Test that the live panel on a terminal prints values as text, never as rich markup."""
    out = io.StringIO()
    panel = open_output(Console(file=out, force_terminal=True, width=160))
    assert isinstance(panel, LivePanel)
    panel.start(PROGRESS)
    panel.stop()
    text = out.getvalue()
    assert "pa[ss]/word[/]" in text and "120" in text
