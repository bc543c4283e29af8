"""The commands an agent answers on ``cmd/{name}`` (docs/architecture.md, "Commands").

A request is ``{"id": uuid, "args": {...}}``; the reply on ``cmd/{name}/reply`` is
``{"id": uuid, "ok": true, "result": ...}`` or ``{"id": uuid, "ok": false, "error": "..."}``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from kits.errors import SuitcaseError
from kits.wire import COMMANDS, CommandReply, CommandRequest

if TYPE_CHECKING:
    from edge.agent import Agent

__all__ = ["HANDLERS", "run_command"]

log = logging.getLogger(__name__)


class CommandError(SuitcaseError):
    """A command's arguments are wrong or it cannot run now."""


def _number(args: dict[str, Any], key: str, default: float | None = None) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError(f"argument {key!r} must be a number (UTC epoch seconds for times), got {value!r}")
    return float(value)


def _ping(agent: Agent, args: dict[str, Any]) -> Any:
    return {"pong": agent._clock(), "agent": agent.agent_version, "uptime_s": agent.meta()["uptime_s"]}


def _identify(agent: Agent, args: dict[str, Any]) -> Any:
    seconds = _number(args, "seconds", 10.0)
    try:
        return {"blinking": True, "detail": agent.identify(min(max(seconds, 1.0), 300.0))}
    except OSError as exc:
        return {"blinking": False, "detail": f"{exc}: find the device by its label instead"}


def _config(agent: Agent, args: dict[str, Any]) -> Any:
    applied = agent.apply_config(args)
    return {"applied": applied, "calibration_version": agent.calibrator.version()}


def _resend(agent: Agent, args: dict[str, Any]) -> Any:
    start, end = _number(args, "from"), _number(args, "to")
    if end < start:
        raise CommandError(f"'to' ({end}) is before 'from' ({start}): swap them")
    return {"readings": agent.resend(start, end)}


HANDLERS: dict[str, Callable[[Agent, dict[str, Any]], Any]] = {
    "ping": _ping,
    "identify": _identify,
    "config": _config,
    "resend": _resend,
}
assert set(HANDLERS) == set(COMMANDS)


def run_command(agent: Agent, name: str, payload: bytes) -> CommandReply | None:
    """Run command ``name`` with ``payload``; return the reply (None if no id to answer to)."""
    try:
        request = CommandRequest.model_validate_json(payload)
    except ValidationError as exc:
        log.warning('command %s with a bad request ignored (%s): send {"id": ..., "args": {...}}', name, exc)
        return None
    handler = HANDLERS.get(name)
    if handler is None:
        return CommandReply(
            id=request.id, ok=False, error=f"unknown command {name!r}: use one of {', '.join(COMMANDS)}"
        )
    try:
        result = handler(agent, request.args)
    except SuitcaseError as exc:
        return CommandReply(id=request.id, ok=False, error=str(exc))
    except Exception as exc:  # a command bug must not stop the agent
        log.exception("command %s failed", name)
        return CommandReply(id=request.id, ok=False, error=f"internal error {type(exc).__name__}: {exc}")
    log.info("command %s (%s) done", name, request.id)
    return CommandReply(id=request.id, ok=True, result=result)
