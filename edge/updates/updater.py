"""The agent's side of an update: take the offer, install beside, switch, report the outcome.

:meth:`Updater.offer` answers the ``update`` command at once when it refuses (no agent home, the
Pi's owner opted out, bad arguments, another update running) or when the offered version already
runs; otherwise the fetch and install run on their own thread while the agent goes on sampling.
A failure there is the command's reply. A success asks the agent to stop; once its outbox is
closed (:meth:`Updater.commit_switch`, never during an outbox write) ``current`` is switched and
the agent exits for the launcher to start the new version. The version that then runs sends the
reply: the new one once the launcher judged it healthy, the previous one after a rollback, with
the reason.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from edge.logs import AgentLog
from edge.updates.home import AgentHome
from edge.updates.installer import UpdateError, download, install, parse_offer
from kits.wire import CommandReply

__all__ = ["Updater"]

_OUTCOMES = ("healthy", "rolled_back", "failed")


class Updater:
    """Updates of one agent.

    Args:
        home: the agent home (from the launcher); None: this agent was not started by the
            launcher and refuses updates.
        version: the running agent's version.
        allowed: False when the Pi's owner opted out (``updates = false`` in the agent's config).
        reply: publishes ``update``'s reply; returns whether it went out.
        request_restart: asks the agent to stop so the switch can happen.
        healthy: whether the agent is connected and has sampled.
        log: the agent's log.
    """

    def __init__(
        self,
        home: AgentHome | None,
        version: str,
        *,
        allowed: bool,
        reply: Callable[[CommandReply], bool],
        request_restart: Callable[[], None],
        healthy: Callable[[], bool],
        log: AgentLog,
    ) -> None:
        self.home = home
        self.version = version
        self.allowed = allowed
        self._reply = reply
        self._request_restart = request_restart
        self._healthy = healthy
        self.log = log
        self._busy = threading.Lock()
        self._stop = threading.Event()
        self.last_outcome: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the offer

    def offer(self, command_id: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Take an ``update`` offer: the reply's result now, or None when the reply comes later.

        Raises:
            UpdateError: refused, with the reason; nothing changed.
        """
        if self.home is None:
            raise UpdateError(
                "update refused: this agent was not started by the launcher (python -m "
                "edge.updates.launcher, which `suitcase edge install-service` sets up), so it could "
                "not roll back: reinstall the service, then offer the update again"
            )
        if not self.allowed:
            raise UpdateError(
                "update refused: this Pi's owner opted out of updates (updates = false in its agent "
                "config); set updates = true there to take updates again"
            )
        offer = parse_offer(args)
        if offer.version == self.version:
            return {"version": self.version, "already": True}
        if not self._busy.acquire(blocking=False):
            raise UpdateError("update refused: another update is being installed; offer it again later")
        state = self.home.read_state()
        if state is not None and state.get("phase") in ("switching", "trial"):
            self._busy.release()
            raise UpdateError(
                f"update refused: agent {state.get('to')} is still on trial; offer it again later"
            )
        threading.Thread(target=self._install, args=(command_id, offer), name="update", daemon=True).start()
        return None

    def _install(self, command_id: str, offer: Any) -> None:
        assert self.home is not None
        began = time.monotonic()
        try:
            wheel = download(offer, self.home)
            install_s = install(offer, wheel, self.home)
        except UpdateError as exc:
            self.log.error("update to %s refused: %s", offer.version, exc)
            self._reply(CommandReply(id=command_id, ok=False, error=f"{exc} (agent {self.version} runs on)"))
            self.home.prune({self.home.current_version()})
            self._busy.release()
            return
        except Exception as exc:  # a bug here must not stop the agent
            self.log.exception("update to %s failed", offer.version)
            self._reply(
                CommandReply(id=command_id, ok=False, error=f"internal error {type(exc).__name__}: {exc}")
            )
            self._busy.release()
            return
        self.home.write_state(
            {
                "phase": "switching",
                "command_id": command_id,
                "from": self.home.current_version(),
                "from_version": self.version,
                "to": offer.version,
                "deadline_s": offer.deadline_s,
                "installed_s": round(time.monotonic() - began, 3),
                "pip_s": round(install_s, 3),
                "replied": False,
            }
        )
        self.log.info("agent %s installed in %.1f s: switching", offer.version, time.monotonic() - began)
        self._request_restart()

    def commit_switch(self) -> bool:
        """Switch ``current`` to the installed version (the agent has stopped; its outbox is closed).

        Returns whether it switched (the agent then exits for the launcher to start the new version).
        """
        if self.home is None:
            return False
        state = self.home.read_state()
        if state is None or state.get("phase") != "switching":
            return False
        self.home.clear_health()
        state.update(phase="trial", switched_at=time.time())
        self.home.write_state(state)
        self.home.switch(str(state["to"]))
        return True

    # ------------------------------------------------------------------ after a switch

    def watch(self) -> None:
        """Start the thread that reports this version healthy on trial and replies the outcome."""
        if self.home is None or self.home.read_state() is None:
            return
        threading.Thread(target=self._watch, name="update-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        assert self.home is not None
        reported = False
        while not self._stop.wait(0.2):
            state = self.home.read_state()
            if state is None:
                return
            phase = state.get("phase")
            if phase == "trial" and state.get("to") == self.home.current_version():
                if not reported and self._healthy():
                    self.home.write_health(self.version, os.getpid())
                    reported = True
                continue
            if phase not in _OUTCOMES or state.get("replied"):
                return
            if self._reply(self._outcome(state)):
                state["replied"] = True
                self.home.write_state(state)
                self.last_outcome = state
                return

    def _outcome(self, state: dict[str, Any]) -> CommandReply:
        command_id = str(state.get("command_id"))
        if state.get("phase") == "healthy":
            self.log.info(
                "agent %s healthy after %.1f s: update done", self.version, state.get("healthy_after_s", 0)
            )
            return CommandReply(
                id=command_id,
                ok=True,
                result={
                    "version": self.version,
                    "from": state.get("from_version"),
                    "installed_s": state.get("installed_s"),
                    "healthy_after_s": state.get("healthy_after_s"),
                },
            )
        reason = str(state.get("reason", "unknown"))
        rollback = f" in {state['rollback_s']:g} s" if "rollback_s" in state else ""
        self.log.error("update to %s rolled back: %s", state.get("to"), reason)
        return CommandReply(
            id=command_id,
            ok=False,
            error=(
                f"update to {state.get('to')} rolled back{rollback}: {reason}; "
                f"agent {self.version} runs and samples"
            ),
        )
