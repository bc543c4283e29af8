"""Real agent wheels built from this tree for the update tests (once per session).

A wheel is a zip in the PEP 427 layout (the packages, ``*.dist-info/METADATA``, ``WHEEL``,
``RECORD`` with each file's hash); writing it here takes about a second and needs no build backend
or package index. ``pip install --no-index`` installs it like any other. The versions:

- ``good``: this tree as version 0.2.0;
- ``bad``: version 0.3.0 whose agent imports but fails as it starts (a bug in ``Agent.start``),
  so only the launcher's trial can catch it.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["AgentWheel", "WheelServer", "agent_wheels", "build_wheel", "wheel_server"]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kits", "edge", "gateway", "server", "dashboards", "suitcase", "deploy")
BASE_VERSION = "0.1.0"


@dataclass(frozen=True)
class AgentWheel:
    version: str
    path: Path
    sha256: str
    size: int


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(
    out: Path, version: str, patches: dict[str, Callable[[str], str]] | None = None
) -> AgentWheel:
    """Write ``iot_suitcase-<version>-py3-none-any.whl`` of this tree into ``out``."""
    patches = {
        "kits/__init__.py": lambda text: text.replace(f'"{BASE_VERSION}"', f'"{version}"'),
        **(patches or {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"iot_suitcase-{version}-py3-none-any.whl"
    info = f"iot_suitcase-{version}.dist-info"
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as wheel:
        files = sorted(f for pkg in PACKAGES for f in (ROOT / pkg).rglob("*") if f.is_file())
        for file in files:
            arc = file.relative_to(ROOT).as_posix()
            if "__pycache__" in arc or arc.endswith(".pyc"):
                continue
            data = file.read_bytes()
            if arc in patches:
                patched = patches[arc](data.decode())
                assert patched != data.decode(), f"the patch of {arc} changed nothing"
                data = patched.encode()
            wheel.writestr(arc, data)
            records.append(f"{arc},{_record_hash(data)},{len(data)}")
        meta = {
            "METADATA": f"Metadata-Version: 2.1\nName: iot-suitcase\nVersion: {version}\n",
            "WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
        for name, text in meta.items():
            wheel.writestr(f"{info}/{name}", text)
            records.append(f"{info}/{name},{_record_hash(text.encode())},{len(text.encode())}")
        records.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    data = path.read_bytes()
    return AgentWheel(version, path, hashlib.sha256(data).hexdigest(), len(data))


def _broken_start(text: str) -> str:
    marker = (
        "        if self._sampling is not None:\n"
        '            raise RuntimeError("the agent is already running")\n'
    )
    assert marker in text
    return text.replace(
        marker, marker + '        raise RuntimeError("agent 0.3.0: broken on purpose at start")\n'
    )


@pytest.fixture(scope="session")
def agent_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, AgentWheel]:
    """The good (0.2.0) and the bad (0.3.0, fails at start) agent wheels."""
    out = tmp_path_factory.mktemp("wheels")
    return {
        "good": build_wheel(out / "good", "0.2.0"),
        "bad": build_wheel(out / "bad", "0.3.0", {"edge/agent.py": _broken_start}),
    }


class WheelServer:
    """A loopback HTTP server of files (the server's wheel route is tested in tests/server)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def wheel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelServer]:
    server = WheelServer(tmp_path_factory.mktemp("served"))
    yield server
    server.close()
