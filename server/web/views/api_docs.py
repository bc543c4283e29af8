"""``GET /docs`` (and ``/redoc``): the JSON API's reference, rendered on the server from its
OpenAPI description.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which the pages' Content-Security-Policy
(scripts from this server only) blocks, and which a suitcase on a network without the internet
cannot reach: they showed a blank page. This page needs no script: every operation grouped by tag,
with its parameters, body and answers, and a link to the description itself for tools.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.api import API_PREFIX
from server.web.render import render

__all__ = ["operations", "router"]

router = APIRouter()

_METHODS = ("get", "post", "put", "patch", "delete")


def _schema_name(schema: dict[str, Any] | None) -> str:
    """A short name for a JSON schema: its model's name, ``list of X``, or its type."""
    if not schema:
        return ""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        inner = _schema_name(schema.get("items"))
        return f"list of {inner}" if inner else "list"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            names = [n for n in (_schema_name(s) for s in schema[key]) if n]
            return " or ".join(dict.fromkeys(names))
    return str(schema.get("type", schema.get("title", "")))


def _body(operation: dict[str, Any]) -> str:
    content = (operation.get("requestBody") or {}).get("content") or {}
    return ", ".join(
        f"{kind}: {_schema_name(media.get('schema'))}".rstrip(": ") for kind, media in content.items()
    )


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The description's operations grouped by their first tag, in path order within a group:
    ``[{"tag": .., "operations": [{"method", "path", "summary", "description", "parameters",
    "body", "responses", "anchor"}]}]``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, item in spec.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            tag = (op.get("tags") or ["other"])[0]
            groups.setdefault(tag, []).append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": (op.get("description") or "").strip(),
                    "parameters": [
                        {
                            "name": p.get("name", ""),
                            "in": p.get("in", ""),
                            "required": bool(p.get("required")),
                            "type": _schema_name(p.get("schema")),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": _body(op),
                    "responses": [
                        {"status": status, "description": answer.get("description", "")}
                        for status, answer in sorted(op.get("responses", {}).items())
                    ],
                    "anchor": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
                }
            )
    return [{"tag": tag, "operations": ops} for tag, ops in sorted(groups.items())]


@router.get("/docs", response_class=HTMLResponse)
@router.get("/redoc", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    """The JSON API's reference, readable without scripts (and without the internet)."""
    spec = request.app.openapi()
    return render(
        request,
        "api_docs.html",
        {
            "info": spec.get("info", {}),
            "groups": operations(spec),
            "openapi_url": f"{API_PREFIX}/openapi.json",
        },
    )
