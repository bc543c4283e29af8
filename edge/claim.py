"""Claiming a device config from the server (docs/architecture.md, "Enrollment").

The agent, with no credentials yet, POSTs its claim code to ``{server}/api/v1/claims/poll``:

- request body ``{"code": "<claim or enrollment code>"}``;
- ``200`` with ``{"config": {<kits.models.DeviceConfig>}}`` (or the server's
  ``{"status": "ready", "device": {"config": ...}}``) once a staff member has bound the
  device (also accepted: the DeviceConfig itself as the body);
- ``202``/``204``, or ``200`` with ``{"state": "pending"}`` or ``{"status": "pending"|"delivered"}``:
  not bound (again) yet, poll again;
- ``403``/``404``/``410``: the code is unknown, revoked or expired: polling stops with an error.

Anything else (the server down, a 5xx) is retried with backoff and jitter. So is a reply the agent
cannot use (not JSON, too deep or too large, not a device config it understands): it is that
reply's problem, counted and logged at a limited rate, and the next poll may bring a good one.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from edge.config import ClaimSettings
from edge.logs import RateLimit
from kits.errors import ConfigError, SuitcaseError
from kits.models import DeviceConfig

__all__ = ["CLAIM_PATH", "MAX_REPLY_BYTES", "BadReply", "ClaimError", "claim", "poll_once"]

log = logging.getLogger(__name__)
CLAIM_PATH = "/api/v1/claims/poll"
# A device config is a few KiB; a reply larger than this is not one.
MAX_REPLY_BYTES = 1024 * 1024


class ClaimError(ConfigError):
    """The server refused the claim code for good."""


class _Transient(SuitcaseError):
    """The server could not answer now; poll again later."""


class BadReply(_Transient):
    """The server's reply is not one the agent can use; poll again later."""


def poll_once(server: str, code: str, *, timeout: float = 10.0) -> DeviceConfig | None:
    """Poll the server once; return the device config once bound, else None.

    Raises:
        ClaimError: the code is unknown, revoked or expired.
        BadReply: the answer is not a device config this agent can use (poll again).
        SuitcaseError: the server could not be reached or failed (transient: poll again).
    """
    url = server.rstrip("/") + CLAIM_PATH
    request = urllib.request.Request(
        url,
        data=json.dumps({"code": code}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            body = response.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 404, 410):
            raise ClaimError(
                f"the server {server} refused claim code {code[:4]}... (HTTP {exc.code}): the code is "
                "unknown, revoked or expired: check the label on the Pi, or ask for a new enrollment code"
            ) from exc
        raise _Transient(f"the server {server} answered HTTP {exc.code}; polling again later") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # the last: a garbled answer
        raise _Transient(f"cannot reach {url} ({exc}); polling again later") from exc
    if status in (202, 204) or not body:
        return None
    if len(body) > MAX_REPLY_BYTES:
        raise BadReply(f"the server {server} answered more than {MAX_REPLY_BYTES} bytes: is the URL right?")
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadReply(
            f"the server {server} answered something that is not JSON ({type(exc).__name__}): "
            "is the URL right?"
        ) from exc
    if isinstance(data, dict) and data.get("state") == "pending" and "config" not in data:
        return None
    if isinstance(data, dict) and "status" in data and "config" not in data:
        # The server's shape: {"status": "pending"|"ready"|"delivered", "message", "device": {"config"}}.
        device = data.get("device")
        if data["status"] != "ready" or not isinstance(device, dict):
            if data["status"] == "delivered":
                message = data.get("message")
                log.warning(
                    "%.500s", message if isinstance(message, str) else "the config was already delivered"
                )
            return None
        data = device
    payload = data.get("config", data) if isinstance(data, dict) else data
    try:
        return DeviceConfig.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadReply(
            f"the server {server} sent a device config this agent cannot use ({exc.error_count()} problems, "
            f"first: {first['msg']} at {'.'.join(map(str, first['loc']))[:200]}): "
            "update the agent (`pip install -U iot-suitcase`)"
        ) from exc


def claim(
    settings: ClaimSettings,
    *,
    stop: threading.Event,
    rng: random.Random | None = None,
    wait: Callable[[float], object] | None = None,
) -> DeviceConfig | None:
    """Poll until the device is bound and return its config; None if ``stop`` is set first.

    Polls every ``poll_s`` seconds while pending, backing off by 1.5x up to ``max_poll_s`` (with
    +-20 % jitter so a suitcase of Pis does not poll in step) while the server is unreachable or
    its replies cannot be used. ``wait`` (``stop.wait`` by default) waits between polls.

    Raises:
        ClaimError: the server refused the code for good.
    """
    rng = rng or random.Random()
    wait = wait or stop.wait
    delay = settings.poll_s
    bad_replies = 0
    rate = RateLimit()
    while not stop.is_set():
        try:
            config = poll_once(settings.server, settings.code)
        except ClaimError:
            raise
        except BadReply as exc:
            bad_replies += 1
            rate.log(log, logging.WARNING, "%s (bad reply %d; polling again)", exc, bad_replies)
            delay = min(settings.max_poll_s, delay * 1.5)
        except SuitcaseError as exc:
            log.warning("%s", exc)
            delay = min(settings.max_poll_s, delay * 1.5)
        else:
            if config is not None:
                log.info("claimed: this Pi is device %s of %s", config.device, config.org)
                return config
            log.info("not bound yet: waiting for staff to scan the label (code %s...)", settings.code[:4])
            delay = settings.poll_s
        wait(delay * rng.uniform(0.8, 1.2))
    return None
