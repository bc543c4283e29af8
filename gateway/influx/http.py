"""A small keep-alive HTTP client for InfluxDB (stdlib only: no client library), for the sinks and readers."""

from __future__ import annotations

import base64
import http.client
import ssl
from collections.abc import Callable, Mapping
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
        *,
        each_line: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body).

        With ``each_line``, a 200 answer's body is handed to it line by line as it arrives (each
        line without its newline; the body returned is then empty): InfluxDB's chunked query
        answers, so the caller works on one part while the server still makes the next.

        Raises:
            SuitcaseError: (``error``) the server could not be reached or did not answer in time.
        """
        url = f"{path}?{urlencode(params)}" if params else path
        all_headers = dict(self._headers)
        if headers:
            all_headers.update(headers)
        for attempt in (1, 2):
            conn = self._connection()
            streaming = False
            try:
                conn.request(method, url, body=body, headers=all_headers)
                response = conn.getresponse()
                if each_line is not None and response.status == 200:
                    streaming = True
                    _read_lines(response, each_line)
                    data = b""
                else:
                    data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()  # a keep-alive connection the server closed: one fresh try
                if attempt == 2 or streaming:  # (not once lines were handed over: never twice)
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
            except BaseException:
                self.close()  # ``each_line`` failed mid-answer: the rest of it is unread
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _read_lines(response: http.client.HTTPResponse, each_line: Callable[[bytes], None]) -> None:
    """Hand ``response``'s body to ``each_line`` line by line (empty lines left out) as it arrives."""
    pending: list[bytes] = []  # the start of a line whose newline has not arrived yet
    while piece := response.read1(1 << 16):
        *lines, rest = piece.split(b"\n")
        if lines:
            lines[0] = b"".join([*pending, lines[0]])
            pending = []
            for line in lines:
                if line:
                    each_line(line)
        if rest:
            pending.append(rest)
    if pending:
        each_line(b"".join(pending))
