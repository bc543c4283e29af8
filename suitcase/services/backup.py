"""``suitcase services backup DIR`` and ``restore DIR``: the registry, the store and the broker's accounts.

Each part is copied by its own consistent mechanism, so a backup can be made while the gateway
writes: the registry with ``pg_dump`` (one MVCC snapshot), the store with ``influxd backup
-portable`` (a snapshot of each shard, the write-ahead log flushed first), and the broker's
dynamic-security file (the stack's accounts; re-read until it parses, Mosquitto rewrites it whole)
and the devices' password and ACL files (read under the accounts service's lock).
``manifest.json`` records what was made when, and the registry's migration.

``restore`` goes only into a fresh stack (empty registry and store: nothing is overwritten), then
migrates the registry to this version, so a backup from before the latest migration restores.
The restored broker file keeps every device account; the stack's own accounts take the new
stack's passwords (``up`` merges them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.broker_files import ACL_FILE, PASSWORD_FILE, snapshot_account_files
from suitcase.services import influxdb, postgres
from suitcase.services.layout import LAYOUT_VERSION, Layout
from suitcase.services.preflight import ServicesError, ensure_installed
from suitcase.services.processes import data_owner
from suitcase.services.secrets import Secrets, load_or_make_secrets
from suitcase.services.settings_files import registry_url

__all__ = ["BACKUP_FORMAT", "backup", "restore"]

BACKUP_FORMAT = 1
_REGISTRY = "registry.dump"
_STORE = "store"
_BROKER = "dynamic-security.json"
_DEVICES = "devices"  # the broker's device password and ACL files (absent in older backups)
_MANIFEST = "manifest.json"


def _secrets(layout: Layout) -> Secrets:
    if not layout.secrets_file.exists():
        raise ServicesError(f"no stack in {layout.config_dir}: run `suitcase services up` first")
    return load_or_make_secrets(layout.secrets_file)[0]


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=3600)
    if result.returncode != 0:
        raise ServicesError(f"{what} failed: {(result.stderr or result.stdout).strip()[-600:]}")


def _pg_env(secrets: Secrets) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": secrets.postgres_admin, "PGCONNECT_TIMEOUT": "10"}


def _registry_revision(layout: Layout, secrets: Secrets) -> str | None:
    from sqlalchemy import create_engine

    from server.db import current_revision

    engine = create_engine(registry_url(layout, secrets.postgres_server))
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def _read_dynsec(layout: Layout) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        try:
            state: dict[str, Any] = json.loads(layout.dynsec_file.read_text())
            return state
        except (OSError, json.JSONDecodeError) as exc:
            if time.monotonic() > deadline:
                raise ServicesError(
                    f"cannot read the broker's accounts in {layout.dynsec_file}: {exc}"
                ) from exc
            time.sleep(0.1)


def backup(layout: Layout, dest: Path) -> dict[str, Any]:
    """Back the stack up into the new or empty directory ``dest``; return the manifest.

    Raises:
        ServicesError: ``dest`` holds files (never overwritten), or a service refused.
    """
    if dest.exists() and any(dest.iterdir()):
        raise ServicesError(f"{dest} is not empty: back up into a new directory (nothing was overwritten)")
    binaries = ensure_installed()
    secrets = _secrets(layout)
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o700)  # the registry holds password hashes and tokens
    started = datetime.now(UTC).isoformat(timespec="seconds")
    revision = _registry_revision(layout, secrets)
    _run(
        [
            str(binaries.pg_bin / "pg_dump"), "-h", layout.bind, "-p", str(layout.ports.postgres),
            "-U", postgres.ADMIN_ROLE, "-Fc", "-f", str(dest / _REGISTRY), postgres.REGISTRY_DATABASE,
        ],
        "pg_dump of the registry",
        _pg_env(secrets),
    )  # fmt: skip
    (dest / _BROKER).write_text(json.dumps(_read_dynsec(layout), indent=1))
    (dest / _BROKER).chmod(0o600)
    (dest / _DEVICES).mkdir(mode=0o700)
    for name, text in snapshot_account_files(layout.device_accounts_dir).items():
        (dest / _DEVICES / name).write_text(text)
        (dest / _DEVICES / name).chmod(0o600)
    _run(
        [binaries.influxd, "backup", "-portable", "-host", f"{layout.bind}:{layout.ports.influx_rpc}",
         str(dest / _STORE)],
        "influxd backup of the store",
    )  # fmt: skip
    manifest = {
        "format": BACKUP_FORMAT,
        "made": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "layout_version": LAYOUT_VERSION,
        "registry_revision": revision,
        "postgres_version": postgres.bin_version(binaries.pg_bin),
        "parts": {"registry": _REGISTRY, "store": _STORE, "broker": _BROKER, "device_accounts": _DEVICES},
    }
    (dest / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _read_manifest(src: Path) -> dict[str, Any]:
    path = src / _MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ServicesError(f"{src} is not a backup of `suitcase services backup` ({path}: {exc})") from exc
    if manifest.get("format") != BACKUP_FORMAT:
        raise ServicesError(
            f"{src} is a backup of format {manifest.get('format')!r}; this version restores format "
            f"{BACKUP_FORMAT}: restore it with the version that made it, then back up again"
        )
    for part in (_REGISTRY, _STORE, _BROKER):
        if not (src / part).exists():
            raise ServicesError(f"{src} lacks {part}: the backup is incomplete; use another one")
    return manifest


def _check_fresh(layout: Layout, secrets: Secrets) -> None:
    import psycopg

    admin = (influxdb.INFLUX_ADMIN_USER, secrets.influx_admin)
    url = f"http://{layout.bind}:{layout.ports.influx_http}"
    for database in (influxdb.READINGS_DATABASE, influxdb.META_DATABASE):
        if influxdb.influx_query(url, "SHOW MEASUREMENTS LIMIT 1", admin, db=database):
            raise ServicesError(
                f"the stack's store already holds data (database {database}): restore only into a fresh "
                "stack (`suitcase services up --config-dir NEW --data-dir NEW`); nothing was overwritten"
            )
    with psycopg.connect(registry_url(layout, secrets.postgres_server).replace("+psycopg", "")) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    if tables and tables[0]:
        raise ServicesError(
            f"the stack's registry already has {tables[0]} tables: restore only into a fresh stack; "
            "nothing was overwritten"
        )


def restore(layout: Layout, src: Path, *, use_systemd: bool | None = None) -> dict[str, Any]:
    """Restore the backup in ``src`` into the fresh, running stack of ``layout``; return its manifest.

    Raises:
        ServicesError: ``src`` is no complete backup, the stack is not fresh, or a service refused.
    """
    from sqlalchemy import create_engine

    from server.db import migrate
    from suitcase.services.stack import down, up

    manifest = _read_manifest(src)
    binaries = ensure_installed()
    secrets = _secrets(layout)
    _check_fresh(layout, secrets)
    _run(
        [
            str(binaries.pg_bin / "pg_restore"), "-h", layout.bind, "-p", str(layout.ports.postgres),
            "-U", postgres.ADMIN_ROLE, "-d", postgres.REGISTRY_DATABASE, "--no-owner",
            f"--role={postgres.SERVER_ROLE}", "--single-transaction", "--exit-on-error", str(src / _REGISTRY),
        ],
        "pg_restore of the registry",
        _pg_env(secrets),
    )  # fmt: skip
    engine = create_engine(registry_url(layout, secrets.postgres_server))
    try:
        migrate(engine)  # a backup from before the latest migration is brought up to this version
    finally:
        engine.dispose()
    url = f"http://{layout.bind}:{layout.ports.influx_http}"
    admin = (influxdb.INFLUX_ADMIN_USER, secrets.influx_admin)
    for database in (influxdb.READINGS_DATABASE, influxdb.META_DATABASE):
        influxdb.influx_query(url, f'DROP DATABASE "{database}"', admin)  # checked empty above
    _run(
        [binaries.influxd, "restore", "-portable", "-host", f"{layout.bind}:{layout.ports.influx_rpc}",
         str(src / _STORE)],
        "influxd restore of the store",
    )  # fmt: skip
    # The broker: the backup's accounts (every device), then `up` gives the stack's own accounts
    # this stack's passwords and grants the InfluxDB users on the restored databases again.
    # A backup from before the accounts service has no device files: its devices are in the
    # plugin's file, and `up` moves them into the files.
    down(layout, use_systemd=use_systemd)
    layout.dynsec_file.write_text((src / _BROKER).read_text())
    owner = data_owner("mosquitto")
    if owner is not None:
        shutil.chown(layout.dynsec_file, owner)
    if (src / _DEVICES).is_dir():
        for name in (PASSWORD_FILE, ACL_FILE):
            target = layout.device_accounts_dir / name
            target.write_text((src / _DEVICES / name).read_text())
            target.chmod(0o644)  # as the accounts service writes them: Mosquitto reads them
            if owner is not None:
                shutil.chown(target, owner)
    up(layout, use_systemd=use_systemd)
    return manifest
