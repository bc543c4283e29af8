"""The commands an agent answers on ``cmd/{name}`` (docs/architecture.md, "Commands").

A request is ``{"id": uuid, "args": {...}}``; the reply on ``cmd/{name}/reply`` is
``{"id": uuid, "ok": true, "result": ...}`` or ``{"id": uuid, "ok": false, "error": "..."}``.

Every command arrives from the network, so each is that command's problem and never the agent's:
a request that names an id gets a reply saying what was wrong; one without an id to answer to is
counted (``bad_commands`` in ``meta``) and logged at a limited rate by the agent. A ``config`` command may not
set what would harm the device (:data:`COMMAND_LIMITS`): a local config file still may.

The handlers see the agent through :class:`CommandTarget` only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from edge.drivers import DRIVERS
from kits.errors import ConfigError, SuitcaseError
from kits.models import DeviceConfig
from kits.wire import COMMANDS, CommandReply

__all__ = [
    "COMMAND_LIMITS",
    "HANDLERS",
    "LATER_HANDLERS",
    "CommandError",
    "CommandLimits",
    "CommandTarget",
    "check_command_limits",
    "check_sampling",
    "run_command",
]

log = logging.getLogger(__name__)


class CommandError(SuitcaseError):
    """A command's arguments are wrong or it cannot run now."""


class CommandTarget(Protocol):
    """What the commands may do to an agent, and nothing more."""

    @property
    def agent_version(self) -> str:
        """The agent's version."""
        ...

    def now(self) -> float:
        """The agent's UTC epoch time."""
        ...

    def uptime_s(self) -> float:
        """Seconds since the agent started."""
        ...

    def identify(self, seconds: float) -> str:
        """Blink the ACT LED for ``seconds``; raises OSError when there is none."""
        ...

    def apply_config(
        self, changes: dict[str, Any], *, check: Callable[[DeviceConfig, Collection[str]], None]
    ) -> list[str]:
        """Validate, ``check``, apply and persist config changes; return the changed fields."""
        ...

    def calibration_version(self) -> int | None:
        """The highest calibration version in force."""
        ...

    def config_version(self) -> int | None:
        """The server's device config version in force, if any."""
        ...

    def log_lines(self, count: int) -> list[str]:
        """The agent's last ``count`` log lines, oldest first."""
        ...

    def resend(self, start: float, end: float) -> int:
        """Publish the outbox's readings stamped in ``[start, end]`` again; return how many."""
        ...

    def note_bad_command(self, name: str, reason: str) -> None:
        """Count (and log, at a limited rate) a command that could not be answered."""
        ...

    def start_update(self, command_id: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Take an ``update`` offer: the result now, or None when the reply comes later.

        Raises SuitcaseError when it is refused.
        """
        ...


@dataclass(frozen=True)
class CommandLimits:
    """What a remote ``config`` or ``resend`` may ask of a device."""

    min_interval_s: float = 1.0
    max_pending: int = 5_000_000
    min_drain_readings_per_s: float = 10.0
    max_drain_readings_per_s: float = 100_000.0
    max_resend_s: float = 86_400.0
    max_log_lines: int = 200


COMMAND_LIMITS = CommandLimits()


def check_command_limits(
    config: DeviceConfig, changed: Collection[str], limits: CommandLimits = COMMAND_LIMITS
) -> None:
    """Refuse a ``config`` command whose ``changed`` fields go beyond ``limits``.

    Only the fields the command sets are checked: a device whose local config file reads faster
    than a command may set keeps working.

    Raises:
        ConfigError: every field beyond its limit, each with the allowed range.
    """
    problems = []
    floor = limits.min_interval_s
    if "publish_interval_s" in changed and config.publish_interval_s < floor:
        problems.append(f"publish_interval_s {config.publish_interval_s:g} s is below {floor:g} s")
    if "sensors" in changed:
        problems += [
            f"sensors.{s.name}.interval_s {s.interval_s:g} s is below {floor:g} s"
            for s in config.sensors
            if s.interval_s < floor
        ]
    if "outbox" in changed:
        outbox = config.outbox
        if outbox.max_pending > limits.max_pending:
            problems.append(f"outbox.max_pending {outbox.max_pending} is over {limits.max_pending}")
        low, high = limits.min_drain_readings_per_s, limits.max_drain_readings_per_s
        if not low <= outbox.drain_readings_per_s <= high:
            problems.append(
                f"outbox.drain_readings_per_s {outbox.drain_readings_per_s:g} is outside {low:g}..{high:g}"
            )
    if problems:
        raise ConfigError(
            f"config refused, nothing changed: {'; '.join(problems)}: a config command may not set "
            "these (they would wear out or stall the device); change the device's config file instead"
        )


def check_sampling(config: DeviceConfig, changed: Collection[str]) -> None:
    """Refuse a ``config`` that would stop the device sampling: every sensor turned off, or a
    sensor whose part has no driver on this agent (an older agent, a misspelt part).

    Raises:
        ConfigError: what would break, and what to send instead; nothing changes.
    """
    if "sensors" not in changed:
        return
    problems = [
        f"sensor {s.name!r} is a {s.part!r}, which this agent has no driver for "
        f"(it has {', '.join(sorted(DRIVERS))}): fix the part or update the agent"
        for s in config.sensors
        if s.part not in DRIVERS
    ]
    if not any(s.enabled for s in config.sensors):
        problems.append(
            "every sensor would be turned off and the device would sample nothing: keep one enabled"
        )
    if problems:
        raise ConfigError(
            f"config refused, nothing changed, the device keeps sampling: {'; '.join(problems)}"
        )


def _number(args: dict[str, Any], key: str, default: float | None = None) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(
            f"argument {key!r} must be a number (UTC epoch seconds for times), got {value!r:.80}"
        )
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise CommandError(f"argument {key!r} must be a finite number, got {value!r:.80}")
    return number


def _ping(target: CommandTarget, args: dict[str, Any]) -> Any:
    return {"pong": target.now(), "agent": target.agent_version, "uptime_s": target.uptime_s()}


def _identify(target: CommandTarget, args: dict[str, Any]) -> Any:
    seconds = _number(args, "seconds", 10.0)
    try:
        return {"blinking": True, "detail": target.identify(min(max(seconds, 1.0), 300.0))}
    except OSError as exc:
        return {"blinking": False, "detail": f"{exc}: find the device by its label instead"}


def _config(target: CommandTarget, args: dict[str, Any]) -> Any:
    in_force = target.config_version()

    def check(config: DeviceConfig, changed: Collection[str]) -> None:
        check_command_limits(config, changed)
        check_sampling(config, changed)
        if in_force is not None and config.config_version is not None and config.config_version < in_force:
            raise ConfigError(
                f"config version {config.config_version} is older than version {in_force} in force "
                "(it arrived late): nothing changed; send the newest version"
            )

    applied = target.apply_config(args, check=check)
    return {
        "applied": applied,
        "calibration_version": target.calibration_version(),
        "config_version": target.config_version(),
    }


def _logs(target: CommandTarget, args: dict[str, Any]) -> Any:
    unknown = sorted(set(args) - {"lines"})
    if unknown:
        raise CommandError(f"unknown arguments {', '.join(map(repr, unknown))}: logs takes only 'lines'")
    count = _number(args, "lines", 100.0)
    limit = COMMAND_LIMITS.max_log_lines
    if count != int(count) or not 1 <= count <= limit:
        raise CommandError(f"argument 'lines' must be a whole number from 1 to {limit}, got {count:g}")
    return {"lines": target.log_lines(int(count))}


def _resend(target: CommandTarget, args: dict[str, Any]) -> Any:
    start, end = _number(args, "from"), _number(args, "to")
    if end < start:
        raise CommandError(f"'to' ({end}) is before 'from' ({start}): swap them")
    span = COMMAND_LIMITS.max_resend_s
    if end - start > span:
        raise CommandError(
            f"resend of {end - start:g} s refused: one resend covers at most {span:g} s "
            f"({span / 3600:g} h): send one command per {span / 3600:g} h"
        )
    return {"readings": target.resend(start, end)}


HANDLERS: dict[str, Callable[[CommandTarget, dict[str, Any]], Any]] = {
    "ping": _ping,
    "identify": _identify,
    "config": _config,
    "resend": _resend,
    "logs": _logs,
}


def _update(target: CommandTarget, request_id: str, args: dict[str, Any]) -> Any:
    return target.start_update(request_id, args)


# Commands that may answer later: the handler returns None and the reply is sent when known.
LATER_HANDLERS: dict[str, Callable[[CommandTarget, str, dict[str, Any]], Any]] = {"update": _update}
assert set(HANDLERS) | set(LATER_HANDLERS) == set(COMMANDS)


def _request(payload: bytes) -> tuple[str | None, dict[str, Any] | str]:
    """The request's id (None when there is none to answer to) and its args, or what is wrong."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return None, f"not JSON ({type(exc).__name__})"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    request_id = data.get("id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 64:
        return None, "no id (a string of 1 to 64 characters) to reply to"
    unknown = sorted(set(data) - {"id", "args"})
    if unknown:
        return request_id, f"unknown request keys {', '.join(map(repr, unknown))}: send only id and args"
    args = data.get("args", {})
    if not isinstance(args, dict):
        return request_id, f"args must be an object, got a JSON {type(args).__name__}"
    return request_id, args


def run_command(target: CommandTarget, name: str, payload: bytes) -> CommandReply | None:
    """Run command ``name`` with ``payload``; return the reply (None if no id to answer to).

    Never raises: whatever ``payload`` holds is this command's error.
    """
    request_id, args = _request(payload)
    if request_id is None:
        assert isinstance(args, str)
        target.note_bad_command(name[:64], args)
        return None
    if isinstance(args, str):
        return CommandReply(id=request_id, ok=False, error=f"bad request: {args}")
    handler = HANDLERS.get(name)
    later = LATER_HANDLERS.get(name)
    if handler is None and later is None:
        return CommandReply(
            id=request_id, ok=False, error=f"unknown command {name[:64]!r}: use one of {', '.join(COMMANDS)}"
        )
    try:
        if later is not None:
            result = later(target, request_id, args)
            if result is None:
                log.info("command %s (%s) started; its reply comes when it is done", name, request_id)
                return None
        else:
            assert handler is not None
            result = handler(target, args)
    except SuitcaseError as exc:
        return CommandReply(id=request_id, ok=False, error=_short(str(exc)))
    except Exception as exc:  # a command bug must not stop the agent
        log.exception("command %s failed", name)
        return CommandReply(
            id=request_id, ok=False, error=_short(f"internal error {type(exc).__name__}: {exc}")
        )
    log.info("command %s (%s) done", name, request_id)
    return CommandReply(id=request_id, ok=True, result=result)


def _short(error: str, limit: int = 2000) -> str:
    """An error for a reply: a request's huge field must not come back in full."""
    return error if len(error) <= limit else f"{error[: limit - 20]}... ({len(error)} characters)"
