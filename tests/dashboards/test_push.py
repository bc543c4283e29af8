"""Tests of dashboards.push against a contract fake of Grafana's HTTP API.

Grafana cannot run on this machine, so ``grafana_fake.FakeGrafana`` stands in: a local HTTP server
implementing the documented endpoints grafana-client calls, checking every request field by field
and keeping state, so the idempotency and isolation checks below are real round trips over HTTP.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from dashboards.build import DATASOURCE_UID, FOLDER_UID, TEMPLATES, build_dashboard, dashboard_uid
from dashboards.errors import GrafanaAuthError, GrafanaConflict, GrafanaUnreachable, UnknownTemplate
from dashboards.push import InfluxTarget, ReadCredential, push
from kits.errors import ConfigError
from tests.dashboards.grafana_fake import FakeGrafana

ADMIN = ("admin", "admin")
INFLUX = InfluxTarget("http://influxdb:8086")
CREDS = {
    "aarhus": ReadCredential(user="aarhus_reader", password="secret-a"),
    "odense": ReadCredential(user="odense_reader", password="secret-o"),
}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake
    assert fake.violations == [], "requests broke Grafana's documented API contract"


def _push(g: FakeGrafana, orgs: list[str] | None = None, **kw: object) -> object:
    args: dict[str, object] = {"orgs": orgs or ["aarhus", "odense"], "target": INFLUX, "credentials": CREDS}
    args.update(kw)
    if "token" not in args:
        args.setdefault("basic_auth", ADMIN)
    return push(g.url, timeout=5, **args)  # type: ignore[arg-type]


def test_push_creates_an_organisation_data_source_folder_and_dashboards_per_org(grafana: FakeGrafana) -> None:
    """Test that each municipality gets its Grafana org, scoped data source, folder and dashboards."""
    report = _push(grafana)
    assert report.changed  # type: ignore[attr-defined]
    for name in ("aarhus", "odense"):
        org = grafana.org(name)
        assert org is not None and org.members == {"admin": "Admin"}
        assert set(org.folders) == {FOLDER_UID}
        ds = org.datasources[DATASOURCE_UID]
        assert ds["type"] == "influxdb" and ds["access"] == "proxy" and ds["url"] == "http://influxdb:8086"
        assert ds["jsonData"] == {"version": "InfluxQL", "dbName": f"suitcase_{name}", "httpMode": "POST"}
        assert ds["user"] == f"{name}_reader" and ds["secureJsonFields"] == {"password": True}
        assert "password" not in ds and "secureJsonData" not in ds
        assert set(org.dashboards) == {dashboard_uid(t) for t in TEMPLATES}
        for uid, entry in org.dashboards.items():
            assert entry["folderUid"] == FOLDER_UID
            assert entry["dashboard"]["version"] == 1
            refs = {t["datasource"]["uid"] for p in entry["dashboard"]["panels"] for t in p["targets"]}
            assert refs == {DATASOURCE_UID} and DATASOURCE_UID in org.datasources, uid
    # Work inside an org went through its X-Grafana-Org-Id, never through a switch of user context.
    scoped = [r for r in grafana.requests if r.path.startswith(("/api/dashboards", "/api/datasources"))]
    assert scoped and all(r.org_header is not None for r in scoped)
    assert not [r for r in grafana.requests if r.path.startswith("/api/user/using")]


def test_a_second_push_changes_nothing(grafana: FakeGrafana) -> None:
    """Test idempotency: a second identical push sends no write request at all."""
    _push(grafana)
    writes = len(grafana.writes)
    again = _push(grafana)
    assert again.changes == []  # type: ignore[attr-defined]
    assert again.unchanged == 2 * (1 + 1 + 1 + len(TEMPLATES))  # type: ignore[attr-defined]
    assert len(grafana.writes) == writes
    assert all(e["dashboard"]["version"] == 1 for o in grafana.orgs.values() for e in o.dashboards.values())


def test_organisations_are_isolated(grafana: FakeGrafana) -> None:
    """Test that each org's only data source reads its own database with its own reader credential.

    A viewer of aarhus can pick, in Explore, only the data sources of the aarhus Grafana org; that
    one's credential can read database suitcase_aarhus only, so odense's data is out of reach.
    """
    _push(grafana)
    aarhus, odense = grafana.org("aarhus"), grafana.org("odense")
    assert aarhus is not None and odense is not None
    assert list(aarhus.datasources) == [DATASOURCE_UID] == list(odense.datasources)
    assert aarhus.datasources[DATASOURCE_UID]["jsonData"]["dbName"] == "suitcase_aarhus"
    assert odense.datasources[DATASOURCE_UID]["jsonData"]["dbName"] == "suitcase_odense"
    assert aarhus.secrets[DATASOURCE_UID] == {"password": "secret-a"}
    assert odense.secrets[DATASOURCE_UID] == {"password": "secret-o"}
    assert grafana.orgs[1].datasources == {} and grafana.orgs[1].dashboards == {}


def test_a_dashboard_edited_in_grafana_is_updated_in_place(grafana: FakeGrafana) -> None:
    """Test that drift is put back under the same uid and id, and the next push is quiet again."""
    _push(grafana, ["aarhus"])
    org = grafana.org("aarhus")
    assert org is not None
    entry = org.dashboards[dashboard_uid("energy")]
    first_id = entry["dashboard"]["id"]
    entry["dashboard"] = {**entry["dashboard"], "title": "Edited by hand", "version": 2}
    report = _push(grafana, ["aarhus"])
    assert report.changes == [f"updated dashboard {dashboard_uid('energy')} in aarhus"]  # type: ignore[attr-defined]
    stored = org.dashboards[dashboard_uid("energy")]["dashboard"]
    assert stored["id"] == first_id and stored["version"] == 3
    assert {k: v for k, v in stored.items() if k not in ("id", "version")} == build_dashboard("energy")
    assert _push(grafana, ["aarhus"]).changes == []  # type: ignore[attr-defined]


def test_changed_data_source_settings_are_updated_and_secrets_kept(grafana: FakeGrafana) -> None:
    """Test that a new InfluxDB URL updates the data source without resending the password."""
    _push(grafana, ["aarhus"])
    report = _push(grafana, ["aarhus"], target=InfluxTarget("http://influx.internal:8086"))
    assert report.changes == [f"updated data source {DATASOURCE_UID} in aarhus"]  # type: ignore[attr-defined]
    put = [r for r in grafana.requests if r.method == "PUT" and r.path.startswith("/api/datasources")]
    assert len(put) == 1 and "secureJsonData" not in put[0].body and put[0].body["version"] == 1
    org = grafana.org("aarhus")
    assert org is not None and org.secrets[DATASOURCE_UID] == {"password": "secret-a"}
    rotated = {"aarhus": ReadCredential(user="aarhus_reader", password="new")}
    _push(
        grafana,
        ["aarhus"],
        credentials=rotated,
        rotate_secrets=True,
        target=InfluxTarget("http://influx.internal:8086"),
    )
    assert org.secrets[DATASOURCE_UID] == {"password": "new"}


def test_an_existing_org_gets_the_admin_added(grafana: FakeGrafana) -> None:
    """Test that an organisation made by hand is reused and the admin joins it as Admin."""
    grafana.add_token("unused", "aarhus")  # creates org "aarhus" without the admin as member
    org = grafana.org("aarhus")
    assert org is not None and "admin" not in org.members
    report = _push(grafana, ["aarhus"])
    assert "added admin as Admin of organisation aarhus" in report.changes  # type: ignore[attr-defined]
    assert "created organisation aarhus" not in report.changes  # type: ignore[attr-defined]
    assert grafana.org("aarhus") is org and org.members["admin"] == "Admin"


def test_flux_data_source_uses_a_bucket_token(grafana: FakeGrafana) -> None:
    """Test that the Flux flavour makes an InfluxDB 2 data source on the org's bucket, with a token."""
    creds = {"aarhus": ReadCredential(token="tok-a")}
    _push(
        grafana,
        ["aarhus"],
        target=InfluxTarget("http://influx2:8086", "flux", "municipal"),
        credentials=creds,
    )
    org = grafana.org("aarhus")
    assert org is not None
    ds = org.datasources[DATASOURCE_UID]
    assert ds["jsonData"] == {
        "version": "Flux",
        "organization": "municipal",
        "defaultBucket": "suitcase_aarhus",
        "httpMode": "POST",
    }
    assert org.secrets[DATASOURCE_UID] == {"token": "tok-a"}
    assert (
        "from(bucket: v.defaultBucket)"
        in org.dashboards[dashboard_uid("air-quality")]["dashboard"]["panels"][0]["targets"][0]["query"]
    )


def test_a_service_account_token_provisions_its_own_org(grafana: FakeGrafana) -> None:
    """Test that a token provisions its one organisation and is refused for any other."""
    grafana.add_token("sa-token", "aarhus")
    report = _push(grafana, ["aarhus"], token="sa-token", templates=["bin-fill"])
    assert report.changes[-1] == f"created dashboard {dashboard_uid('bin-fill')} in aarhus"  # type: ignore[attr-defined]
    assert not [r for r in grafana.requests if r.path.startswith("/api/orgs")]
    with pytest.raises(ConfigError, match="belongs to Grafana organisation 'aarhus'"):
        _push(grafana, ["odense"], token="sa-token")
    with pytest.raises(ConfigError, match="--basic-auth"):
        _push(grafana, ["aarhus", "odense"], token="sa-token")


def test_wrong_credentials_fail_with_401_advice(grafana: FakeGrafana) -> None:
    """Test that a refused token or password says so and what to check."""
    with pytest.raises(GrafanaAuthError, match=r"refused the credentials \(401\).*--token"):
        _push(grafana, ["aarhus"], token="wrong")
    with pytest.raises(GrafanaAuthError, match="401"):
        _push(grafana, ["aarhus"], basic_auth=("admin", "wrong"))


def test_unreachable_grafana_is_named(grafana: FakeGrafana) -> None:
    """Test that a Grafana that does not answer fails with the URL and what to check."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GrafanaUnreachable, match=f"cannot reach Grafana at http://127.0.0.1:{port}"):
        push(
            f"http://127.0.0.1:{port}",
            orgs=["aarhus"],
            target=INFLUX,
            credentials=CREDS,
            basic_auth=ADMIN,
            timeout=2,
        )
    with pytest.raises(ConfigError, match="not an http"):
        push("grafana:3000", orgs=["aarhus"], target=INFLUX, credentials=CREDS, basic_auth=ADMIN)


def test_a_same_titled_dashboard_is_a_412_conflict_unless_forced(grafana: FakeGrafana) -> None:
    """Test that Grafana's 412 name-exists becomes a conflict that suggests --force, which resolves it."""
    _push(grafana, ["aarhus"], templates=["energy"])
    org = grafana.org("aarhus")
    assert org is not None
    squatter = {**build_dashboard("vibration"), "uid": "hand-made", "id": 999, "version": 1}
    org.dashboards["hand-made"] = {"dashboard": squatter, "folderUid": FOLDER_UID}
    with pytest.raises(GrafanaConflict, match=r"412 A dashboard with the same name.*name-exists.*--force"):
        _push(grafana, ["aarhus"], templates=["vibration"])
    _push(grafana, ["aarhus"], templates=["vibration"], force=True)
    assert dashboard_uid("vibration") in org.dashboards


def test_a_concurrent_edit_is_a_412_version_mismatch(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a dashboard saved by someone between our read and write fails with advice."""
    _push(grafana, ["aarhus"], templates=["energy"])
    org = grafana.org("aarhus")
    assert org is not None
    entry = org.dashboards[dashboard_uid("energy")]
    entry["dashboard"] = {**entry["dashboard"], "title": "drift"}
    original = grafana._save_dashboard

    def racing(o: object, body: object) -> object:
        entry["dashboard"]["version"] += 1  # someone else saves first
        return original(o, body)  # type: ignore[arg-type]

    monkeypatch.setattr(grafana, "_save_dashboard", racing)
    with pytest.raises(GrafanaConflict, match=r"version-mismatch.*push again"):
        _push(grafana, ["aarhus"], templates=["energy"])


def test_a_data_source_name_taken_is_a_409_conflict(grafana: FakeGrafana) -> None:
    """Test that a hand-made data source with our name but another uid fails with what to do."""
    _push(grafana, ["aarhus"], templates=["energy"])
    org = grafana.org("aarhus")
    assert org is not None
    org.datasources["other"] = {**org.datasources.pop(DATASOURCE_UID), "uid": "other"}
    with pytest.raises(GrafanaConflict, match=r"409 data source with the same name.*rename or delete it"):
        _push(grafana, ["aarhus"], templates=["energy"])


def test_bad_input_is_refused_before_any_request(grafana: FakeGrafana) -> None:
    """Test that unknown templates, missing credentials and auth mistakes fail before talking to Grafana."""
    with pytest.raises(UnknownTemplate):
        _push(grafana, templates=["air-qualty"])
    with pytest.raises(ConfigError, match=r"no read credential for organisation 'vejle'.*suitcase_vejle"):
        _push(grafana, ["aarhus", "vejle"])
    with pytest.raises(ConfigError, match="exactly one"):
        _push(grafana, token="t", basic_auth=ADMIN)
    with pytest.raises(ConfigError, match="--orgs"):
        push(grafana.url, orgs=[], target=INFLUX, credentials=CREDS, basic_auth=ADMIN)
    with pytest.raises(ConfigError, match="Flux needs a read token"):
        _push(grafana, ["aarhus"], target=InfluxTarget("http://x:8086", "flux"))
    assert grafana.requests == []
