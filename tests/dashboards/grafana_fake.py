"""A contract fake of Grafana's HTTP API: Grafana cannot run on this machine.

It implements only the endpoints ``dashboards.push`` calls through grafana-client, as Grafana's
HTTP API documentation describes them (Organisation, Data source, Folder and Dashboard APIs,
``X-Grafana-Org-Id``), checks each request field by field (method, path, auth, org header, body
keys and types) and keeps state per organisation, so idempotency and isolation tests are real.
A request that breaks the documented contract is answered 400 and recorded in ``violations``;
tests assert that list stays empty. It is not Grafana: behaviour the docs leave open is kept
minimal and says so in a comment.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = ["FakeGrafana", "Request"]

_UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
_DS_ADD_KEYS = {
    "name", "type", "access", "url", "user", "database", "basicAuth", "basicAuthUser",
    "withCredentials", "isDefault", "jsonData", "secureJsonData", "uid",
}  # fmt: skip
_DS_UPDATE_KEYS = _DS_ADD_KEYS | {"version"}
_DASH_SAVE_KEYS = {"dashboard", "folderId", "folderUid", "overwrite", "message"}
_FOLDER_KEYS = {"uid", "title", "parentUid", "description"}
_FOLDER_UPDATE_KEYS = {"uid", "title", "version", "overwrite", "description"}


@dataclass
class Request:
    method: str
    path: str
    org_header: str | None
    auth: str
    body: Any


@dataclass
class _Org:
    id: int
    name: str
    members: dict[str, str] = field(default_factory=dict)  # login -> role
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {"dashboard", "folderUid"}


class _Reply(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class FakeGrafana:
    """Start with ``with FakeGrafana() as g:``; ``g.url`` is its base URL.

    Users: a server admin ``admin``/``admin`` (member of org 1 "Main Org."). Service-account
    tokens are added with :meth:`add_token` and belong to one organisation each.
    """

    def __init__(self) -> None:
        self.admin = ("admin", "admin")
        self.orgs: dict[int, _Org] = {1: _Org(1, "Main Org.", {"admin": "Admin"})}
        self.tokens: dict[str, int] = {}
        self.requests: list[Request] = []
        self.violations: list[str] = []
        self._ids = 100
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- helpers for tests -------------------------------------------------------------------
    def add_token(self, token: str, org_name: str) -> None:
        org = self.org(org_name) or self._create_org(org_name, None)
        self.tokens[token] = org.id

    def org(self, name: str) -> _Org | None:
        return next((o for o in self.orgs.values() if o.name == name), None)

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _create_org(self, name: str, creator: str | None) -> _Org:
        org = _Org(self._next_id(), name)
        if creator is not None:
            # Grafana makes the user who creates an organisation its Admin (org API docs).
            org.members[creator] = "Admin"
        self.orgs[org.id] = org
        return org

    # -- request handling ------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle plus delayed ACK
                # stall every request by ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = fake._dispatch(self.command, self.path, dict(self.headers), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler

    def _dispatch(self, method: str, raw_path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        with self._lock:
            path = unquote(urlparse(raw_path).path)
            body: Any = None
            auth_header = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
            org_header = {k.lower(): v for k, v in headers.items()}.get("x-grafana-org-id")
            try:
                if raw:
                    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
                    if "application/json" not in ctype:
                        self._violate(f"{method} {path}: body sent as {ctype!r}, not application/json")
                    body = json.loads(raw)
                self.requests.append(Request(method, path, org_header, auth_header.split(" ")[0], body))
                return 200, self._route(method, path, auth_header, org_header, body)
            except _Reply as reply:
                return reply.status, reply.body

    def _violate(self, what: str) -> None:
        self.violations.append(what)
        raise _Reply(400, {"message": f"bad request: {what}"})

    def _identity(self, auth: str) -> tuple[str, int | None]:
        """Return (login or 'token', org id of a token); 401 like Grafana when wrong."""
        kind, _, value = auth.partition(" ")
        if kind == "Basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
            if (user, password) == self.admin:
                return user, None
            raise _Reply(401, {"message": "Invalid username or password"})
        if kind == "Bearer":
            if value in self.tokens:
                return "token", self.tokens[value]
            raise _Reply(401, {"message": "Invalid API key"})
        raise _Reply(401, {"message": "Unauthorized"})

    def _context(self, auth: str, org_header: str | None) -> tuple[str, _Org]:
        who, token_org = self._identity(auth)
        if token_org is not None:
            if org_header is not None and int(org_header) != token_org:
                raise _Reply(401, {"message": "Unauthorized"})
            return who, self.orgs[token_org]
        org_id = int(org_header) if org_header is not None else 1
        org = self.orgs.get(org_id)
        # Docs leave the exact answer open; Grafana refuses a user outside the org in the header.
        if org is None or who not in org.members:
            raise _Reply(401, {"message": "Unauthorized"})
        return who, org

    def _server_admin(self, auth: str) -> str:
        who, token_org = self._identity(auth)
        if token_org is not None:
            raise _Reply(403, {"message": "Permission denied"})
        return who

    @staticmethod
    def _keys(
        what: str, body: Any, allowed: set[str], required: set[str], fake: FakeGrafana
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            fake._violate(f"{what}: body must be a JSON object")
        extra = set(body) - allowed
        missing = required - set(body)
        if extra:
            fake._violate(f"{what}: fields not in Grafana's API: {sorted(extra)}")
        if missing:
            fake._violate(f"{what}: missing required fields {sorted(missing)}")
        return body  # type: ignore[no-any-return]

    def _route(self, method: str, path: str, auth: str, org_header: str | None, body: Any) -> Any:
        parts = path.strip("/").split("/")
        if parts[0] != "api":
            raise _Reply(404, {"message": "Not found"})
        rest = parts[1:]
        # --- organisations (Admin Organizations API: server admin, basic auth) ---
        if rest == ["orgs"] and method == "POST":
            who = self._server_admin(auth)
            data = self._keys("POST /api/orgs", body, {"name"}, {"name"}, self)
            if not isinstance(data["name"], str) or not data["name"]:
                self._violate("POST /api/orgs: name must be a non-empty string")
            if self.org(data["name"]):
                raise _Reply(409, {"message": "Organization name taken"})
            org = self._create_org(data["name"], who)
            return {"message": "Organization created", "orgId": org.id}
        if rest[:2] == ["orgs", "name"] and len(rest) == 3 and method == "GET":
            self._server_admin(auth)
            found = self.org(rest[2])
            if found is None:
                raise _Reply(404, {"message": "Organization not found"})
            return {"id": found.id, "name": found.name, "address": {}}
        if len(rest) == 3 and rest[0] == "orgs" and rest[2] == "users":
            self._server_admin(auth)
            org = self.orgs.get(int(rest[1]))
            if org is None:
                raise _Reply(404, {"message": "Organization not found"})
            if method == "GET":
                return [
                    {"orgId": org.id, "login": login, "role": role} for login, role in org.members.items()
                ]
            if method == "POST":
                data = self._keys(
                    "POST /api/orgs/:id/users", body, {"loginOrEmail", "role"}, {"loginOrEmail", "role"}, self
                )
                if data["role"] not in ("Viewer", "Editor", "Admin"):
                    self._violate(f"POST /api/orgs/:id/users: role {data['role']!r} not Viewer/Editor/Admin")
                if data["loginOrEmail"] in org.members:
                    raise _Reply(409, {"message": "User is already member of this organization"})
                org.members[data["loginOrEmail"]] = data["role"]
                return {"message": "User added to organization", "userId": 1}
        if rest == ["org"] and method == "GET":
            _, org = self._context(auth, org_header)
            return {"id": org.id, "name": org.name, "address": {}}
        _, org = self._context(auth, org_header)
        # --- folders ---
        if rest == ["folders"] and method == "POST":
            data = self._keys("POST /api/folders", body, _FOLDER_KEYS, {"title"}, self)
            uid = data.get("uid") or f"f{self._next_id()}"
            if not _UID.match(uid):
                self._violate(f"POST /api/folders: uid {uid!r} is not 1-40 of [a-zA-Z0-9_-]")
            if uid in org.folders:
                raise _Reply(409, {"message": "a folder with the same uid already exists"})
            if any(f["title"] == data["title"] for f in org.folders.values()):
                raise _Reply(
                    409,
                    {
                        "message": "a folder or dashboard in the general folder "
                        "with the same name already exists"
                    },
                )
            folder = {"id": self._next_id(), "uid": uid, "title": data["title"], "version": 1}
            org.folders[uid] = folder
            return folder
        if len(rest) == 2 and rest[0] == "folders":
            folder = org.folders.get(rest[1])
            if folder is None:
                raise _Reply(404, {"message": "folder not found"})
            if method == "GET":
                return folder
            if method == "PUT":
                data = self._keys("PUT /api/folders/:uid", body, _FOLDER_UPDATE_KEYS, {"title"}, self)
                if not data.get("overwrite") and data.get("version") != folder["version"]:
                    raise _Reply(
                        412,
                        {
                            "message": "the folder has been changed by someone else",
                            "status": "version-mismatch",
                        },
                    )
                folder.update(title=data["title"], version=folder["version"] + 1)
                return folder
        # --- data sources ---
        if rest == ["datasources"] and method == "POST":
            data = self._keys("POST /api/datasources", body, _DS_ADD_KEYS, {"name", "type", "access"}, self)
            self._check_datasource("POST /api/datasources", data, creating=True)
            uid = data.get("uid") or f"ds{self._next_id()}"
            if any(d["name"] == data["name"] for d in org.datasources.values()):
                raise _Reply(409, {"message": "data source with the same name already exists"})
            if uid in org.datasources:
                raise _Reply(409, {"message": "data source with the same uid already exists"})
            stored = self._store_datasource(org, uid, data, None)
            return {
                "datasource": stored,
                "id": stored["id"],
                "message": "Datasource added",
                "name": stored["name"],
            }
        if len(rest) == 3 and rest[:2] == ["datasources", "uid"]:
            ds = org.datasources.get(rest[2])
            if ds is None:
                raise _Reply(404, {"message": "Data source not found"})
            if method == "GET":
                return ds
            if method == "PUT":
                data = self._keys(
                    "PUT /api/datasources/uid/:uid", body, _DS_UPDATE_KEYS, {"name", "type", "access"}, self
                )
                self._check_datasource("PUT /api/datasources/uid/:uid", data, creating=False)
                if "version" in data and data["version"] != ds["version"]:
                    raise _Reply(
                        409,
                        {
                            "message": "Datasource has already been updated by someone else. "
                            "Please reload and try again"
                        },
                    )
                if any(d["name"] == data["name"] and u != rest[2] for u, d in org.datasources.items()):
                    raise _Reply(409, {"message": "data source with the same name already exists"})
                stored = self._store_datasource(org, rest[2], data, ds)
                return {
                    "datasource": stored,
                    "id": stored["id"],
                    "message": "Datasource updated",
                    "name": stored["name"],
                }
        if len(rest) == 3 and rest[:2] == ["datasources", "name"] and method == "GET":
            found = next((d for d in org.datasources.values() if d["name"] == rest[2]), None)
            if found is None:
                raise _Reply(404, {"message": "Data source not found"})
            return found
        # --- dashboards ---
        if rest == ["dashboards", "db"] and method == "POST":
            return self._save_dashboard(org, body)
        if len(rest) == 3 and rest[:2] == ["dashboards", "uid"] and method == "GET":
            entry = org.dashboards.get(rest[2])
            if entry is None:
                raise _Reply(404, {"message": "Dashboard not found"})
            folder = org.folders.get(entry["folderUid"] or "", {})
            return {
                "dashboard": entry["dashboard"],
                "meta": {
                    "type": "db",
                    "slug": entry["dashboard"]["title"].lower().replace(" ", "-"),
                    "url": f"/d/{rest[2]}",
                    "version": entry["dashboard"]["version"],
                    "folderUid": entry["folderUid"],
                    "folderTitle": folder.get("title", "General"),
                    "provisioned": False,
                },
            }
        self._violate(f"{method} {path}: not an endpoint the push should call")
        return None

    def _check_datasource(self, what: str, data: dict[str, Any], *, creating: bool) -> None:
        if data["access"] not in ("proxy", "direct"):
            self._violate(f"{what}: access {data['access']!r} is not proxy or direct")
        for key, kind in (
            ("jsonData", dict),
            ("secureJsonData", dict),
            ("isDefault", bool),
            ("basicAuth", bool),
        ):
            if key in data and not isinstance(data[key], kind):
                self._violate(f"{what}: {key} must be {kind.__name__}")
        if data["type"] == "influxdb":
            jd = data.get("jsonData", {})
            version = jd.get("version", "InfluxQL")
            if version not in ("InfluxQL", "Flux", "SQL"):
                self._violate(f"{what}: jsonData.version {version!r} is not InfluxQL, Flux or SQL")
            if version == "InfluxQL" and not jd.get("dbName"):
                self._violate(f"{what}: an InfluxQL data source needs jsonData.dbName")
            if version == "Flux" and not (jd.get("organization") and jd.get("defaultBucket")):
                self._violate(f"{what}: a Flux data source needs jsonData.organization and defaultBucket")
            if creating and version == "Flux" and "token" not in data.get("secureJsonData", {}):
                self._violate(f"{what}: a Flux data source needs secureJsonData.token")

    def _store_datasource(
        self, org: _Org, uid: str, data: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        secrets = dict(org.secrets.get(uid, {}))
        secrets.update(data.get("secureJsonData") or {})  # Grafana keeps secrets not sent again
        org.secrets[uid] = secrets
        stored = {
            "id": old["id"] if old else self._next_id(),
            "uid": uid,
            "orgId": org.id,
            "name": data["name"],
            "type": data["type"],
            "typeName": "InfluxDB" if data["type"] == "influxdb" else data["type"],
            "access": data["access"],
            "url": data.get("url", ""),
            "user": data.get("user", ""),
            "database": data.get("database", ""),
            "basicAuth": data.get("basicAuth", False),
            "basicAuthUser": data.get("basicAuthUser", ""),
            "withCredentials": data.get("withCredentials", False),
            "isDefault": data.get("isDefault", False),
            "jsonData": data.get("jsonData", {}),
            "secureJsonFields": {k: True for k in secrets},
            "version": (old["version"] + 1) if old else 1,
            "readOnly": False,
        }
        org.datasources[uid] = stored
        return stored

    def _save_dashboard(self, org: _Org, body: Any) -> Any:
        data = self._keys("POST /api/dashboards/db", body, _DASH_SAVE_KEYS, {"dashboard"}, self)
        dash = data["dashboard"]
        if not isinstance(dash, dict) or not isinstance(dash.get("title"), str) or not dash["title"]:
            self._violate("POST /api/dashboards/db: dashboard must be an object with a title")
        if "folderId" in data and "folderUid" in data:
            self._violate("POST /api/dashboards/db: give folderUid or folderId, not both")
        folder_uid = data.get("folderUid") or None
        if folder_uid is not None and folder_uid not in org.folders:
            raise _Reply(400, {"message": "folder not found", "status": "not-found"})
        uid = dash.get("uid") or f"d{self._next_id()}"
        if not _UID.match(uid):
            raise _Reply(400, {"message": "uid contains illegal characters or is too long"})
        overwrite = bool(data.get("overwrite"))
        existing = org.dashboards.get(uid)
        if existing is None and dash.get("id") is not None:
            raise _Reply(404, {"message": "Dashboard not found", "status": "not-found"})
        if existing is not None and not overwrite and dash.get("version") != existing["dashboard"]["version"]:
            raise _Reply(
                412,
                {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"},
            )
        clash = any(
            e["folderUid"] == folder_uid and e["dashboard"]["title"] == dash["title"] and u != uid
            for u, e in org.dashboards.items()
        )
        if clash and not overwrite:
            raise _Reply(
                412,
                {
                    "message": "A dashboard with the same name in the folder already exists",
                    "status": "name-exists",
                },
            )
        version = existing["dashboard"]["version"] + 1 if existing else 1
        dash_id = existing["dashboard"]["id"] if existing else self._next_id()
        stored = {**dash, "id": dash_id, "uid": uid, "version": version}
        org.dashboards[uid] = {"dashboard": stored, "folderUid": folder_uid}
        slug = dash["title"].lower().replace(" ", "-")
        return {
            "id": dash_id,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }
