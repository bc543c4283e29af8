"""Fetch an offered wheel, check its SHA-256, install it beside the running version.

Nothing here touches the running version: a failure at any step removes what the step left
(partial download, partial install) and raises :class:`UpdateError` naming the step, the cause
and what to do. The install is ``pip install --no-index --no-deps --target`` from the folder the
wheel was downloaded to (no package index is ever asked); the agent's libraries come from the base
install. The new version is then imported once in a child process, so a wheel whose code does
not import, or that is not the version offered, never gets switched to.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edge.updates.home import VERSION_PATTERN, AgentHome
from kits.errors import SuitcaseError

__all__ = ["MAX_WHEEL_BYTES", "Offer", "UpdateError", "download", "install", "parse_offer"]

MAX_WHEEL_BYTES = 64 * 1024 * 1024
_WHEEL_NAME = re.compile(r"^iot_suitcase-([0-9A-Za-z.+_]+)-py3-none-any\.whl$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UpdateError(SuitcaseError):
    """An update could not be fetched, checked or installed; the running version is untouched."""


@dataclass(frozen=True)
class Offer:
    """An ``update`` command's arguments."""

    version: str
    url: str
    sha256: str
    size: int
    filename: str
    deadline_s: float


def parse_offer(args: dict[str, Any]) -> Offer:
    """Validate an ``update`` command's arguments.

    Raises:
        UpdateError: each wrong or missing argument, with what it should be.
    """
    problems = []
    unknown = sorted(set(args) - {"version", "url", "sha256", "size", "filename", "deadline_s"})
    if unknown:
        problems.append(f"unknown arguments {', '.join(map(repr, unknown))}")
    version, url, sha256 = args.get("version"), args.get("url"), args.get("sha256")
    filename, size, deadline = args.get("filename"), args.get("size"), args.get("deadline_s", 120)
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        problems.append(f"version must be a version like 0.2.0, got {version!r:.80}")
    if not isinstance(url, str) or not re.match(r"^https?://[^\s]{1,2000}$", url):
        problems.append(f"url must be the wheel's http(s) URL, got {url!r:.80}")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        problems.append("sha256 must be the wheel's SHA-256 as 64 lower-case hex digits")
    match = _WHEEL_NAME.match(filename) if isinstance(filename, str) else None
    if match is None:
        problems.append(f"filename must be iot_suitcase-<version>-py3-none-any.whl, got {filename!r:.80}")
    elif isinstance(version, str) and match.group(1) != version.replace("-", "_"):
        problems.append(f"filename {filename} is not version {version}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_WHEEL_BYTES:
        problems.append(f"size must be the wheel's size in bytes (1..{MAX_WHEEL_BYTES}), got {size!r:.80}")
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not 5 <= deadline <= 3600:
        problems.append(f"deadline_s must be 5..3600 seconds, got {deadline!r:.80}")
    if problems:
        raise UpdateError(f"update refused, nothing changed: {'; '.join(problems)}")
    assert isinstance(version, str) and isinstance(url, str) and isinstance(sha256, str)
    assert isinstance(filename, str) and isinstance(size, int) and isinstance(deadline, (int, float))
    return Offer(version, url, sha256, size, filename, float(deadline))


def _disk_full(exc: OSError, where: Path, step: str) -> UpdateError:
    free = shutil.disk_usage(where).free if where.exists() else 0
    return UpdateError(
        f"disk full while {step} ({exc.strerror or exc}): {free // 1024} KiB free under {where}; "
        "free space on the Pi's SD card (old logs, files in /tmp) and offer the update again"
    )


def download(
    offer: Offer, home: AgentHome, *, timeout: float = 60.0, opener: Callable[..., IO[bytes]] | None = None
) -> Path:
    """Fetch the offered wheel into ``home.downloads`` and check its size and SHA-256.

    Raises:
        UpdateError: unreachable, wrong size or hash, or the disk filled up (nothing is left behind).
    """
    home.downloads.mkdir(parents=True, exist_ok=True)
    path = home.downloads / offer.filename
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with (
            (opener or urllib.request.urlopen)(offer.url, timeout=timeout) as response,
            open(part, "wb") as out,
        ):
            while chunk := response.read(64 * 1024):
                size += len(chunk)
                if size > offer.size:
                    raise UpdateError(
                        f"the wheel at {offer.url} is larger than the offered {offer.size} bytes: "
                        "it is not the offered file; upload the release again on the server"
                    )
                digest.update(chunk)
                out.write(chunk)
    except UpdateError:
        part.unlink(missing_ok=True)
        raise
    except OSError as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
            raise UpdateError(
                f"could not fetch {offer.url}: {exc.reason}: check the server is reachable"
            ) from exc
        if exc.errno == errno.ENOSPC:
            raise _disk_full(exc, home.root, f"downloading {offer.filename}") from exc
        raise UpdateError(f"could not fetch {offer.url}: {exc}: check the server is reachable") from exc
    got = digest.hexdigest()
    if got != offer.sha256:
        part.unlink(missing_ok=True)
        raise UpdateError(
            f"SHA-256 mismatch for {offer.filename}: offered {offer.sha256}, downloaded {got} "
            f"({size} bytes): refused, nothing installed; the file on the server is not the release "
            "that was offered: upload it again and start a new rollout"
        )
    if size != offer.size:
        part.unlink(missing_ok=True)
        raise UpdateError(
            f"the wheel is {size} bytes, the offer says {offer.size}: refused, nothing installed"
        )
    part.replace(path)
    return path


def install(
    offer: Offer, wheel: Path, home: AgentHome, *, python: str = sys.executable, timeout: float = 600.0
) -> float:
    """Install ``wheel`` as ``home.version_dir(offer.version)`` and check that it imports.

    Returns the seconds the install took.

    Raises:
        UpdateError: pip failed (a full disk says so), or the new version does not import or is
            not the offered version; the partial install is removed.
    """
    began = time.monotonic()
    target = home.version_dir(offer.version)
    partial = target.with_name(f".{offer.version}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        pip = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--no-index",
                "--no-deps",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--no-compile",
                "--find-links",
                str(wheel.parent),
                "--target",
                str(partial / "site"),
                str(wheel),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if pip.returncode != 0:
            detail = _last_line(pip.stderr) or _last_line(pip.stdout) or f"exit code {pip.returncode}"
            if "No space left on device" in pip.stderr or "Errno 28" in pip.stderr:
                raise _disk_full(OSError(errno.ENOSPC, detail), home.root, f"installing {offer.filename}")
            raise UpdateError(f"pip could not install {offer.filename}: {detail}")
        check = subprocess.run(
            [python, "-P", "-c", "import edge.agent, kits; print(kits.__version__)"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=partial,
            env={"PYTHONPATH": str(partial / "site"), "PATH": "/usr/bin:/bin"},
        )
        if check.returncode != 0:
            raise UpdateError(
                f"agent {offer.version} does not import: {_last_line(check.stderr)}: "
                "refused, nothing switched"
            )
        if check.stdout.strip() != offer.version:
            raise UpdateError(
                f"the wheel {offer.filename} holds agent {check.stdout.strip()!r}, "
                f"not the offered {offer.version}"
            )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise _disk_full(exc, home.root, f"installing {offer.filename}") from exc
        raise UpdateError(f"could not install {offer.filename}: {exc}") from exc
    except (UpdateError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise UpdateError(f"installing {offer.filename} took over {timeout:g} s: gave up") from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            wheel.unlink()
    return time.monotonic() - began


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
