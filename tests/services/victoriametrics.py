"""A real VictoriaMetrics for tests marked ``victoriametrics``: it serves InfluxDB 2's write API.

Started with ``-dedup.minScrapeInterval=1ms`` so a rewritten point replaces its twin, as in
InfluxDB. It keeps millisecond timestamps and has no Flux: Flux reads are tested against recorded
responses (tests/gateway/test_store_influxdb2.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suitcase.broker import free_port, wait_for_port
from tests.services import require_service

__all__ = ["VictoriaMetrics", "victoriametrics"]


def find_victoria_metrics() -> str | None:
    return shutil.which("victoria-metrics") or shutil.which("victoria-metrics", path="/usr/bin")


class VictoriaMetrics:
    """One victoria-metrics process on a free loopback port with its own storage."""

    def __init__(self, root: Path) -> None:
        binary = find_victoria_metrics()
        assert binary is not None
        self.binary = binary
        self.root = root
        self.host = "127.0.0.1"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "vm.log").open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr={self.host}:{self.port}",
                f"-storageDataPath={self.root / 'data'}",
                "-dedup.minScrapeInterval=1ms",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.host, self.port, timeout=30)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(20)
        self._process = None

    def export(self, match: str = '{__name__=~".+"}') -> list[dict[str, Any]]:
        """Flush, then return every series matching ``match`` with its (deduplicated) samples."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]

    def wait_samples(self, expected: int, match: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll :meth:`export` until it holds ``expected`` samples (or the timeout); return it."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.export(match)
            if sum(len(s["values"]) for s in series) >= expected or time.monotonic() > deadline:
                return series
            time.sleep(0.2)


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A running VictoriaMetrics shared by the session (tests use their own org names)."""
    if find_victoria_metrics() is None:
        require_service("victoria-metrics", "apt-get install victoria-metrics")
    vm = VictoriaMetrics(tmp_path_factory.mktemp("victoriametrics"))
    vm.start()
    yield vm
    vm.stop()
