"""A small JSON client over the standard library (the simulator needs no HTTP package)."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kits.errors import SuitcaseError

__all__ = ["Api", "ApiError"]


class ApiError(SuitcaseError):
    """The server answered with an error status; ``status`` and ``detail`` say which and why."""

    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(f"{what} failed ({status}): {detail}")
        self.status, self.detail = status, detail


class Api:
    """Calls ``{base}/api/v1...`` with a bearer token or a session cookie (and its CSRF header)."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 600.0) -> None:
        self.base = base.rstrip("/") + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def call(
        self, method: str, path: str, what: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """Send one request; return the JSON answer.

        Raises:
            ApiError: an error status (the server's ``detail`` in the message).
            SuitcaseError: the server could not be reached.
        """
        url = self.base + path + (("?" + urllib.parse.urlencode(params)) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(what, exc.code, _detail(exc.read())) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SuitcaseError(f"{what}: cannot reach {self.base}: {exc}") from exc
        return json.loads(raw) if raw else None


def _detail(raw: bytes) -> str:
    try:
        detail = json.loads(raw).get("detail")
    except (ValueError, AttributeError):
        return raw[:300].decode(errors="replace")
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail[:5])
    return str(detail)
