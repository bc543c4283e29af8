"""Run the server in a background thread: for ``suitcase demo`` and end-to-end tests."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from kits.errors import SuitcaseError

__all__ = ["ServerThread"]


class ServerThread:
    """Serve ``app`` with uvicorn on ``host:port`` in a daemon thread.

    ``port=0`` picks a free port; :attr:`port` is the real one once started.

    Example:
        with ServerThread(create_app(settings), "127.0.0.1", 0) as server:
            httpx.get(f"{server.url}/api/v1/health")
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"):
        self.app = app
        self.host = host
        self.port = port
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"server-{host}:{port}", daemon=True)
        self.exit_code: int | str | None = None

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit as exc:  # uvicorn exits on a startup failure (port taken, lifespan error)
            self.exit_code = exc.code

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8000``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerThread:
        """Start serving; return once the server accepts connections.

        The start (migrations, the catalogue) takes 3-11 s on a loaded two-core machine: the bound
        is for a hang (a failed start is seen at once, its thread ends).

        Raises:
            SuitcaseError: the server failed to start (port taken, bad store or registry: see the
                log) or did not start within ``timeout`` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise SuitcaseError(
                    f"the server on {self.host}:{self.port} stopped while starting (exit code "
                    f"{self.exit_code}): the log above says why (port in use? store or registry not usable?)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise SuitcaseError(f"the server on {self.host}:{self.port} did not start in {timeout:.0f} s")
            time.sleep(0.02)
        if self.port == 0:
            sockets = [s for server in self._server.servers for s in server.sockets]
            self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to shut down (running the app's lifespan exit) and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
