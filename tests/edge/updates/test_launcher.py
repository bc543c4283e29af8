"""The launcher's trial when the new version runs but never reports healthy (edge/updates/launcher.py).

The agent it starts is a stand-in script here (the real agent's trial, good and bad, runs in
tests/e2e/test_rollout.py): a version that keeps running without ever writing ``health.json`` is
what the deadline is for, and no real wheel behaves so on purpose.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge.updates.home import AgentHome
from edge.updates.launcher import Launcher


def _stand_in(tmp_path: Path) -> str:
    """A "python" that, run for a version (PYTHONPATH set), hangs; for the base install, exits 0."""
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        'if [ -n "$PYTHONPATH" ]; then\n'
        '  echo "0.9.0 waiting for a broker that never answers" >&2; exec sleep 60\n'
        "fi\n"
        'echo "base ran with $*" > "$SUITCASE_AGENT_HOME/base-ran"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_version_silent_past_its_deadline_is_stopped_and_rolled_back(tmp_path: Path) -> None:
    """Test that a version on trial that runs but never reports healthy is stopped at its deadline,
    ``current`` goes back to the previous version (the base install), the reason is kept for the
    reply, the version is removed, and the previous version is started again."""
    home = AgentHome(tmp_path / "agent")
    (home.version_dir("0.9.0") / "site").mkdir(parents=True)
    home.switch("0.9.0")
    home.write_state(
        {
            "phase": "trial",
            "command_id": "c1",
            "from": None,
            "from_version": "0.1.0",
            "to": "0.9.0",
            "deadline_s": 1,
        }
    )
    launcher = Launcher(home, ["edge", "run"], python=_stand_in(tmp_path), poll_s=0.05)
    assert launcher.run() == 0  # the base install ran and exited 0
    state = home.read_state()
    assert state is not None and state["phase"] == "rolled_back"
    assert state["reason"] == (
        "agent 0.9.0 did not report healthy (connected to the broker and sampled) within 1 s"
    )
    assert home.current_version() is None and home.installed() == []
    assert (home.root / "base-ran").read_text() == "base ran with -P -m suitcase edge run\n"
    assert not os.path.exists(home.health_file)
