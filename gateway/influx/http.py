"""A small keep-alive HTTP client for InfluxDB (stdlib only: no client library), for the sinks and readers."""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Mapping
from urllib.parse import urlencode

from kits.errors import SuitcaseError

__all__ = ["HttpClient"]


class HttpClient:
    """One persistent connection to ``host:port``; reconnects after any failure.

    Every failure (refused, timed out, reset) raises ``error`` (the caller's error class: the
    sinks' ``SinkError``, the store's ``StoreError``) naming the server, what happened and what
    to check.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        timeout: float = 10.0,
        username: str = "",
        password: str = "",
        what: str = "InfluxDB",
        error: type[SuitcaseError] = SuitcaseError,
        token: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout = timeout
        self.what = what
        self.error = error
        self._headers: dict[str, str] = {}
        if username:
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        elif token:
            self._headers["Authorization"] = f"Token {token}"
        self._conn: http.client.HTTPConnection | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.tls:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body).

        Raises:
            SuitcaseError: (``error``) the server could not be reached or did not answer in time.
        """
        url = f"{path}?{urlencode(params)}" if params else path
        all_headers = dict(self._headers)
        if headers:
            all_headers.update(headers)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, url, body=body, headers=all_headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()  # a keep-alive connection the server closed: one fresh try
                if attempt == 2:
                    raise self.error(
                        f"{self.what} at {self.base} dropped the connection ({exc}): check that it runs"
                    ) from exc
            except TimeoutError as exc:
                self.close()
                raise self.error(
                    f"{self.what} at {self.base} did not answer within {self.timeout:.0f} s: "
                    "it is overloaded or stuck"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self.error(
                    f"cannot reach {self.what} at {self.base} ({exc}): check that it runs "
                    "and the host and port are right"
                ) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
