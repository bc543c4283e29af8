"""Agent releases: the wheels the server offers to devices, with their SHA-256.

A release is kept in the registry (:class:`~server.tables.AgentReleaseRow`), so every server
replica serves it and no tier reads a file another wrote. Only a wheel of this project whose name,
metadata and version agree is taken; the agent checks the SHA-256 it is offered against what it
downloads (``edge.updates.installer``).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

from sqlmodel import Session, select

from kits.errors import SuitcaseError
from server.tables import AgentReleaseRow

__all__ = ["MAX_WHEEL_BYTES", "BadRelease", "add_release", "release_by_version", "wheel_url"]

MAX_WHEEL_BYTES = 64 * 1024 * 1024  # the agent's own bound (edge.updates.installer)
_WHEEL_NAME = re.compile(r"^iot_suitcase-([0-9A-Za-z][0-9A-Za-z.+_]{0,31})-py3-none-any\.whl$")


class BadRelease(SuitcaseError):
    """A wheel the server will not offer (not this project's, not the version its name says, a duplicate)."""


def release_by_version(session: Session, version: str) -> AgentReleaseRow | None:
    return session.exec(select(AgentReleaseRow).where(AgentReleaseRow.version == version)).first()


def _metadata_version(data: bytes, filename: str, version: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            text = wheel.read(f"iot_suitcase-{version}.dist-info/METADATA").decode("utf-8", "replace")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise BadRelease(
            f"{filename} is not a wheel of iot-suitcase {version} ({exc}): upload the file `make dist` built"
        ) from None
    name = re.search(r"^Name: *(\S+)", text, re.M)
    found = re.search(r"^Version: *(\S+)", text, re.M)
    if name is None or name.group(1).lower().replace("_", "-") != "iot-suitcase":
        raise BadRelease(
            f"{filename} is not an iot-suitcase wheel (its METADATA names {name and name.group(1)})"
        )
    return found.group(1) if found else ""


def add_release(
    session: Session, filename: str, data: bytes, now: float, created_by: str = ""
) -> AgentReleaseRow:
    """Check and keep a wheel as a release (the caller commits).

    Raises:
        BadRelease: a wrong name, not a wheel of this project, a version that disagrees with its
            name, too large, or a version already released (each says what to do).
    """
    match = _WHEEL_NAME.match(filename)
    if match is None:
        raise BadRelease(
            f"{filename[:200]!r} is not an agent wheel name: expected "
            "iot_suitcase-<version>-py3-none-any.whl (what `make dist` builds)"
        )
    version = match.group(1)
    if not data or len(data) > MAX_WHEEL_BYTES:
        raise BadRelease(f"{filename} is {len(data)} bytes: a release is 1 byte to {MAX_WHEEL_BYTES} bytes")
    inside = _metadata_version(data, filename, version)
    if inside.replace("-", "_") != version:
        raise BadRelease(f"{filename} says version {version} but its METADATA says {inside!r}: rebuild it")
    if release_by_version(session, version) is not None:
        raise BadRelease(
            f"agent {version} is already released: a release never changes; bump the version and build again"
        )
    row = AgentReleaseRow(
        version=version,
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        wheel=data,
        created_at=now,
        created_by=created_by[:254],
    )
    session.add(row)
    return row


def wheel_url(base_url: str, release: AgentReleaseRow) -> str:
    """Where devices fetch the release's wheel (``GET /api/v1/agent-releases/{version}/{filename}``)."""
    return f"{base_url.rstrip('/')}/api/v1/agent-releases/{release.version}/{release.filename}"
