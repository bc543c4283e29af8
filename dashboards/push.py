"""Provision Grafana: per organisation (municipality) a Grafana organisation, its own InfluxDB
data source scoped to that organisation's database or bucket, a folder and the dashboards.

Idempotent: every object is looked up by its stable uid (organisations by name) and written only
when it differs, so a second run with the same input sends no writes. Talks to Grafana's HTTP API
through ``grafana-client``; every Grafana or network failure becomes a :class:`GrafanaError` that
says what to do.

Authentication: organisations can only be created and entered by a Grafana *server admin* with
basic auth (``basic_auth=("admin", "...")``). A service-account ``token`` belongs to exactly one
Grafana organisation, so with a token the push provisions that organisation only, and its name
must be the one organisation asked for.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, model_validator

from dashboards.build import (
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    TEMPLATES,
    build_dashboard,
)
from dashboards.errors import GrafanaAuthError, GrafanaConflict, GrafanaError, GrafanaUnreachable
from dashboards.schema import Flavour, database_for
from kits.catalog import Catalog, load_catalog
from kits.config_file import load_yaml_model
from kits.errors import ConfigError

__all__ = [
    "DATASOURCE_NAME",
    "Credentials",
    "InfluxTarget",
    "PushReport",
    "ReadCredential",
    "datasource_model",
    "load_credentials",
    "push",
]

log = logging.getLogger(__name__)

DATASOURCE_NAME = "IoT Suitcase InfluxDB"
_MESSAGE = "suitcase dashboards push"


class ReadCredential(BaseModel):
    """A read-only InfluxDB credential for one organisation's database or bucket.

    InfluxDB 1.x (InfluxQL): ``user`` and ``password`` of a user granted READ on that database only.
    InfluxDB 2 (Flux): ``token``, a read token scoped to that bucket only.
    """

    model_config = ConfigDict(extra="forbid")
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ReadCredential:
        if self.token is None and (self.user is None or self.password is None):
            raise ValueError("give either token (InfluxDB 2) or user and password (InfluxDB 1.x)")
        return self


class Credentials(BaseModel):
    """The credentials file: organisation slug -> its read credential."""

    model_config = ConfigDict(extra="forbid")
    orgs: dict[str, ReadCredential]


def load_credentials(path: Path) -> dict[str, ReadCredential]:
    """Read a YAML credentials file (``orgs: {aarhus: {user: ..., password: ...}}``).

    Raises:
        ConfigError: the file is missing or malformed; the message names the line and field.
    """
    return load_yaml_model(path, Credentials).orgs


@dataclass(frozen=True)
class InfluxTarget:
    """Where the data sources point: the InfluxDB URL, the query flavour, the InfluxDB 2 org."""

    url: str
    flavour: Flavour = "influxql"
    influx_org: str = "suitcase"


@dataclass
class PushReport:
    """What a push did: one line per write, and how many objects were already up to date."""

    changes: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def datasource_model(
    org: str, target: InfluxTarget, credential: ReadCredential
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the data source Grafana should hold for ``org`` and its secrets (sent apart).

    Raises:
        ConfigError: the credential does not fit the flavour.
    """
    db = database_for(org)
    base: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": target.url,
        "basicAuth": False,
        "isDefault": True,
    }
    if target.flavour == "influxql":
        if credential.user is None or credential.password is None:
            raise ConfigError(
                f"organisation {org!r}: InfluxQL needs user and password of a reader of database {db}; "
                "set them in the credentials file or use --flavour flux with a token"
            )
        base["user"] = credential.user
        base["jsonData"] = {"version": "InfluxQL", "dbName": db, "httpMode": "POST"}
        return base, {"password": credential.password}
    if credential.token is None:
        raise ConfigError(
            f"organisation {org!r}: Flux needs a read token scoped to bucket {db}; "
            "set token in the credentials file or use --flavour influxql"
        )
    base["jsonData"] = {
        "version": "Flux",
        "organization": target.influx_org,
        "defaultBucket": db,
        "httpMode": "POST",
    }
    return base, {"token": credential.token}


def _status(exc: BaseException) -> int:
    status = getattr(exc, "status_code", 0)
    return status if isinstance(status, int) else 0


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "message" in response:
        status = f" {response['status']}" if "status" in response else ""
        return f"{response['message']}{status}"
    return str(exc)


class _Grafana:
    """A thin, typed shell over ``grafana_client.GrafanaApi`` that translates its errors."""

    def __init__(
        self, url: str, auth: str | tuple[str, str], timeout: float, org_id: int | None = None
    ) -> None:
        from grafana_client.api import GrafanaApi  # type: ignore[import-untyped]

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"--grafana-url {url!r} is not an http(s) URL: give e.g. http://grafana:3000")
        self.url = url
        self.api: Any = GrafanaApi(
            auth,
            host=parsed.hostname,
            port=parsed.port,
            protocol=parsed.scheme,
            url_path_prefix=parsed.path.strip("/") + "/" if parsed.path.strip("/") else "",
            timeout=timeout,
            organization_id=org_id,
        )

    @contextlib.contextmanager
    def doing(self, action: str, conflict_hint: str = "") -> Iterator[None]:
        """Translate Grafana and network errors raised while doing ``action``."""
        from grafana_client.client import GrafanaException  # type: ignore[import-untyped]

        try:
            yield
        except GrafanaException as exc:
            status = _status(exc)
            if status == 0:
                raise GrafanaUnreachable(
                    f"cannot reach Grafana at {self.url} while {action} ({exc}): check --grafana-url "
                    "and that Grafana is running"
                ) from exc
            if status == 401:
                raise GrafanaAuthError(
                    f"Grafana at {self.url} refused the credentials (401) while {action}: check --token "
                    "(a service-account token) or --basic-auth user:password"
                ) from exc
            if status == 403:
                raise GrafanaAuthError(
                    f"Grafana at {self.url} denied {action} (403 {_message(exc)}): creating and entering "
                    "organisations needs a Grafana server admin (--basic-auth admin:password); a "
                    "service-account token can only provision its own organisation"
                ) from exc
            if status in (409, 412):
                raise GrafanaConflict(
                    f"Grafana at {self.url} refused {action} ({status} {_message(exc)}): {conflict_hint}"
                ) from exc
            raise GrafanaError(
                f"Grafana at {self.url} failed {action} ({status} {_message(exc)}): check the Grafana "
                "server log; the push is idempotent, so run it again once fixed"
            ) from exc
        except OSError as exc:  # niquests' connection errors are OSErrors
            raise GrafanaUnreachable(
                f"cannot reach Grafana at {self.url} while {action} ({exc}): check --grafana-url and "
                "that Grafana is running"
            ) from exc

    def get_or_none(self, action: str, call: Any, *args: Any) -> Any:
        """Call a grafana-client getter; None on 404."""
        from grafana_client.client import GrafanaClientError

        with self.doing(action):
            try:
                return call(*args)
            except GrafanaClientError as exc:
                if _status(exc) == 404:
                    return None
                raise


def push(
    grafana_url: str,
    *,
    orgs: list[str],
    target: InfluxTarget,
    credentials: dict[str, ReadCredential],
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    templates: list[str] | None = None,
    catalog: Catalog | None = None,
    force: bool = False,
    rotate_secrets: bool = False,
    timeout: float = 10.0,
) -> PushReport:
    """Create or update, per organisation, its Grafana organisation, data source and dashboards.

    Args:
        grafana_url: Grafana's base URL, e.g. ``http://grafana:3000``.
        orgs: organisation slugs (the registry's ``org``); each becomes a Grafana organisation
            of the same name.
        target: the InfluxDB the data sources query and the query flavour.
        credentials: per organisation, a read credential limited to its database or bucket.
        token: a Grafana service-account token (one organisation only).
        basic_auth: a Grafana server admin's ``(user, password)``: needed to create organisations.
        templates: template ids to push; all by default.
        catalog: the catalogue giving thresholds; the packaged one by default.
        force: overwrite dashboards changed in Grafana since the last push (412 otherwise).
        rotate_secrets: send the read credentials even when Grafana already holds some.
        timeout: seconds per HTTP request.

    Raises:
        ConfigError: bad arguments (no orgs, missing credential, unknown template, both auths).
        GrafanaError: Grafana unreachable, credentials refused, or a conflict; the message says
            what to do.
    """
    if (token is None) == (basic_auth is None):
        raise ConfigError("give exactly one of --token (service account) or --basic-auth user:password")
    if not orgs:
        raise ConfigError("no organisations given: pass --orgs with the organisation slugs to provision")
    wanted = templates or list(TEMPLATES)
    catalog = catalog if catalog is not None else load_catalog()
    dashboards = [build_dashboard(t, target.flavour, catalog) for t in wanted]
    models: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
    for org in orgs:
        if org not in credentials:
            raise ConfigError(
                f"no read credential for organisation {org!r}: add it under orgs: in the credentials file "
                f"(a reader of InfluxDB database/bucket {database_for(org)} only)"
            )
        models[org] = datasource_model(org, target, credentials[org])

    report = PushReport()
    auth: str | tuple[str, str]
    if token is not None:
        auth = token
    else:
        assert basic_auth is not None
        auth = basic_auth
    root = _Grafana(grafana_url, auth, timeout)
    if token is not None:
        with root.doing("reading the token's organisation (GET /api/org)"):
            current = root.api.organization.get_current_organization()
        if orgs != [current["name"]]:
            raise ConfigError(
                f"the service-account token belongs to Grafana organisation {current['name']!r}, but "
                f"{', '.join(orgs)} were asked for: give --orgs {current['name']} or use --basic-auth "
                "with a Grafana server admin to provision several organisations"
            )
        org_ids = {current["name"]: int(current["id"])}
    else:
        assert basic_auth is not None
        org_ids = {org: _ensure_org(root, org, basic_auth[0], report) for org in orgs}

    for org in orgs:
        scoped = _Grafana(grafana_url, auth, timeout, org_id=org_ids[org] if basic_auth else None)
        _ensure_folder(scoped, org, report)
        desired, secrets = models[org]
        _ensure_datasource(scoped, org, desired, secrets, rotate_secrets, report)
        for dashboard in dashboards:
            _ensure_dashboard(scoped, org, dashboard, force, report)
    for line in report.changes:
        log.info("grafana: %s", line)
    return report


def _ensure_org(root: _Grafana, org: str, login: str, report: PushReport) -> int:
    found = root.get_or_none(f"looking up organisation {org!r}", root.api.organization.find_organization, org)
    if found is None:
        hint = "it was created meanwhile by someone else: run the push again"
        with root.doing(f"creating organisation {org!r}", hint):
            created = root.api.organization.create_organization({"name": org})
        report.changes.append(f"created organisation {org}")
        return int(created["orgId"])
    org_id = int(found["id"])
    with root.doing(f"listing the members of organisation {org!r}"):
        members = root.api.organizations.organization_user_list(org_id)
    if any(m.get("login") == login for m in members):
        report.unchanged += 1
    else:
        with root.doing(f"adding {login} as Admin of organisation {org!r}", "run the push again"):
            root.api.organizations.organization_user_add(org_id, {"loginOrEmail": login, "role": "Admin"})
        report.changes.append(f"added {login} as Admin of organisation {org}")
    return org_id


def _ensure_folder(g: _Grafana, org: str, report: PushReport) -> None:
    found = g.get_or_none(f"looking up folder {FOLDER_UID} in {org}", g.api.folder.get_folder, FOLDER_UID)
    hint = (
        f"a folder titled {FOLDER_TITLE!r} with another uid exists in organisation {org}: rename or "
        "delete it in Grafana, then push again"
    )
    if found is None:
        with g.doing(f"creating folder {FOLDER_UID} in {org}", hint):
            g.api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        report.changes.append(f"created folder {FOLDER_UID} in {org}")
    elif found.get("title") != FOLDER_TITLE:
        with g.doing(f"renaming folder {FOLDER_UID} in {org}", hint):
            g.api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, version=found.get("version"))
        report.changes.append(f"renamed folder {FOLDER_UID} in {org}")
    else:
        report.unchanged += 1


def _ensure_datasource(
    g: _Grafana,
    org: str,
    desired: dict[str, Any],
    secrets: dict[str, str],
    rotate: bool,
    report: PushReport,
) -> None:
    found = g.get_or_none(
        f"looking up data source {DATASOURCE_UID} in {org}",
        g.api.datasource.get_datasource_by_uid,
        DATASOURCE_UID,
    )
    if found is None:
        hint = (
            f"a data source named {DATASOURCE_NAME!r} with another uid exists in organisation {org}: "
            "rename or delete it in Grafana (Connections > Data sources), then push again"
        )
        with g.doing(f"creating data source {DATASOURCE_UID} in {org}", hint):
            g.api.datasource.create_datasource({**desired, "secureJsonData": secrets})
        report.changes.append(f"created data source {DATASOURCE_UID} in {org}")
        return
    held = {k for k, v in (found.get("secureJsonFields") or {}).items() if v}
    same = all(found.get(k) == v for k, v in desired.items())
    if same and not rotate and set(secrets) <= held:
        report.unchanged += 1
        return
    body: dict[str, Any] = {**desired}
    if rotate or not set(secrets) <= held:
        body["secureJsonData"] = secrets  # Grafana never returns secrets: send only when needed
    if "version" in found:
        body["version"] = found["version"]
    hint = f"the data source changed in Grafana meanwhile, or its name is taken in {org}: push again"
    with g.doing(f"updating data source {DATASOURCE_UID} in {org}", hint):
        g.api.datasource.update_datasource_by_uid(DATASOURCE_UID, body)
    report.changes.append(f"updated data source {DATASOURCE_UID} in {org}")


def _ensure_dashboard(
    g: _Grafana, org: str, dashboard: dict[str, Any], force: bool, report: PushReport
) -> None:
    uid = dashboard["uid"]
    found = g.get_or_none(f"looking up dashboard {uid} in {org}", g.api.dashboard.get_dashboard, uid)
    body: dict[str, Any] = {"folderUid": FOLDER_UID, "overwrite": force, "message": _MESSAGE}
    if found is None:
        body["dashboard"] = {**dashboard, "id": None}
        verb = "created"
    else:
        stored = {k: v for k, v in found["dashboard"].items() if k not in ("id", "version")}
        if stored == dashboard and found.get("meta", {}).get("folderUid") == FOLDER_UID:
            report.unchanged += 1
            return
        body["dashboard"] = {
            **dashboard,
            "id": found["dashboard"].get("id"),
            "version": found["dashboard"].get("version"),
        }
        verb = "updated"
    hint = (
        f"dashboard {uid} (title {dashboard['title']!r}) changed in Grafana during the push, or another "
        f"dashboard with that title exists in folder {FOLDER_TITLE!r} of organisation {org}: push again, "
        "rename or delete the other dashboard, or pass --force to overwrite"
    )
    with g.doing(f"saving dashboard {uid} in {org}", hint):
        g.api.dashboard.update_dashboard(body)
    report.changes.append(f"{verb} dashboard {uid} in {org}")
