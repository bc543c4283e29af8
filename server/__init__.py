"""The server: registry API, catalogue and web pages (FastAPI).

Imports ``kits`` and the read side of ``gateway.store`` only (ARCHITECTURE.md).
"""

from server.app import create_app
from server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
