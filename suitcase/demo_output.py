"""What ``suitcase demo`` shows while it runs: a live panel on a terminal, plain lines otherwise.

Piped, logged (``make demo > demo.log``) or under systemd there is no terminal: the URLs, the login
and the progress are then printed as plain lines, each flushed at once, so a reader of the log sees
them as they happen.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Protocol

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = ["DemoOutput", "LivePanel", "PlainLines", "Progress", "open_output"]

PLAIN_PROGRESS_EVERY_S = 10.0
PLAIN_FIRST_PROGRESS_S = 3.0  # the first line comes early: it shows that readings land


@dataclass(frozen=True)
class Progress:
    """What the demo reports while it runs."""

    url: str
    broker: str
    devices: int
    readings: int
    dead_letters: int
    elapsed: float
    kiosk_url: str = ""
    login: str = ""
    history: int = 0
    history_seconds: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class DemoOutput(Protocol):
    def start(self, progress: Progress) -> None: ...
    def update(self, progress: Progress) -> None: ...
    def say(self, line: str) -> None: ...
    def stop(self) -> None: ...


def _rows(p: Progress) -> list[tuple[str, str]]:
    rows = [("page", p.url), ("public", f"{p.url}public")]
    if p.kiosk_url:
        rows.append(("kiosk", p.kiosk_url))
    if p.login:
        rows.append(("fleet", f"{p.url}fleet  (log in as {p.login})"))
    rows += list(p.extra.items())
    if p.history:
        rows.append(("history", f"{p.history} simulated readings ({p.history_seconds:.1f} s)"))
    rows += [("broker", p.broker), ("devices", str(p.devices))]
    return rows


class PlainLines:
    """One line per fact, flushed; a progress line every ``every`` seconds."""

    def __init__(self, stream: IO[str] | None = None, every: float = PLAIN_PROGRESS_EVERY_S) -> None:
        self.stream = stream or sys.stdout
        self.every = every
        self._last = -1e9
        self._lock = threading.RLock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, progress: Progress) -> None:
        self._line("IoT Suitcase demo")
        for name, value in _rows(progress):
            self._line(f"{name}: {value}")
        self._line("running (Ctrl-C or SIGTERM to stop)")
        self._last = progress.elapsed - self.every + PLAIN_FIRST_PROGRESS_S

    def update(self, progress: Progress) -> None:
        if progress.elapsed - self._last < self.every:
            return
        self._last = progress.elapsed
        self._line(
            f"running {progress.elapsed:.0f} s: {progress.readings} readings landed, "
            f"{progress.dead_letters} dead letters"
        )

    def say(self, line: str) -> None:
        self._line(line)

    def stop(self) -> None:
        return None


class LivePanel:
    """The panel of URLs and counts, redrawn twice a second on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None

    @staticmethod
    def _panel(p: Progress) -> Panel:
        table = Table.grid(padding=(0, 2))
        # Text, never markup: a URL or a password may hold "[" (rich would read it as a tag).
        for name, value in _rows(p):
            table.add_row(name, Text(value, style=f"bold link {value}" if name == "page" else ""))
        table.add_row("readings landed", Text(str(p.readings), style="green"))
        table.add_row("dead letters", Text(str(p.dead_letters)))
        table.add_row("running", Text(f"{p.elapsed:.0f} s  (Ctrl-C to stop)"))
        return Panel(table, title="IoT Suitcase demo", border_style="cyan")

    def start(self, progress: Progress) -> None:
        self._live = Live(self._panel(progress), console=self.console, refresh_per_second=2, transient=False)
        self._live.start()

    def update(self, progress: Progress) -> None:
        if self._live is not None:
            self._live.update(self._panel(progress))

    def say(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def open_output(console: Console) -> DemoOutput:
    """The live panel on a terminal, plain flushed lines otherwise."""
    if console.is_terminal:
        return LivePanel(console)
    return PlainLines(console.file)
