"""The server: registry API, catalogue and web pages (FastAPI).

Imports ``kits`` and the read side of ``gateway.store`` only (docs/architecture.md). The names below
are imported on first use, so ``import server.cli`` (the ``suitcase`` CLI) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.app import create_app
    from server.runner import ServerThread
    from server.settings import ServerSettings

__all__ = ["ServerSettings", "ServerThread", "create_app"]

_LAZY = {
    "create_app": "server.app",
    "ServerThread": "server.runner",
    "ServerSettings": "server.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'server' has no attribute {name!r}")
