"""``suitcase kit import``: send a kit import CSV to a server and print what it says.

Standard library only (the base install): ``POST /api/v1/kits/import`` with an API token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from kits.errors import SuitcaseError

__all__ = ["ImportAnswer", "post_import"]


@dataclass
class ImportAnswer:
    """The server's answer: ``ok`` and the body (problems by row and column when refused)."""

    ok: bool
    status: int
    body: dict[str, Any]

    def problems(self) -> list[str]:
        detail = self.body.get("detail")
        if isinstance(detail, list):
            return [str(p.get("msg", p)) for p in detail if isinstance(p, dict)]
        return [str(detail)] if detail else []


def post_import(
    server: str, token: str, text: str, *, org_id: int | None, dry_run: bool, timeout: float = 600.0
) -> ImportAnswer:
    """POST the CSV ``text`` to ``server``'s kit import.

    Raises:
        SuitcaseError: the server could not be reached or did not answer JSON.
    """
    if not server.startswith(("http://", "https://")):
        raise SuitcaseError(
            f"--server {server!r} is not a URL: give the server's address with its scheme, "
            "e.g. https://suitcase.example.org"
        )
    payload: dict[str, Any] = {"csv": text, "dry_run": dry_run}
    if org_id is not None:
        payload["org_id"] = org_id
    request = urllib.request.Request(
        server.rstrip("/") + "/api/v1/kits/import",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return ImportAnswer(True, response.status, json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {"detail": f"{exc.code} {exc.reason}"}
        return ImportAnswer(False, exc.code, body if isinstance(body, dict) else {"detail": str(body)})
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SuitcaseError(f"cannot reach the server at {server}: {exc}: check --server") from exc
