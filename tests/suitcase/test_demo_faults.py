"""Tests of suitcase/demo_faults.py: the script of faults and the player that plays it."""

from __future__ import annotations

import pytest

from suitcase.demo_faults import SCRIPT_S, FaultPlayer, script


class _Fleet:
    """Records what the script does (the real fleet is exercised by the demo's browser test)."""

    def __init__(self, size: int, broken: str | None = None) -> None:
        self.size = size
        self.done: list[tuple[str, int, str]] = []
        self.broken = broken

    def _do(self, what: str, pi: int, sensor: str = "") -> None:
        if what == self.broken:
            raise RuntimeError(f"{what} broke")
        self.done.append((what, pi, sensor))

    def unplug(self, pi: int, sensor: str) -> None:
        self._do("unplug", pi, sensor)

    def plug(self, pi: int, sensor: str) -> None:
        self._do("plug", pi, sensor)

    def freeze(self, pi: int) -> None:
        self._do("freeze", pi)

    def thaw(self, pi: int) -> None:
        self._do("thaw", pi)

    def offline(self, pi: int) -> None:
        self._do("offline", pi)

    def online(self, pi: int) -> None:
        self._do("online", pi)

    def recalibrate(self, pi: int, sensor: str, quantity: str) -> None:
        self._do("recalibrate", pi, f"{sensor}/{quantity}")


class _Clock:
    """A monotonic clock that the player's waits advance (no real sleeping)."""

    def __init__(self) -> None:
        self.now = 0.0


def _play(fleet: _Fleet, speed: float) -> tuple[FaultPlayer, list[str], _Clock]:
    clock = _Clock()
    lines: list[str] = []
    player = FaultPlayer(fleet, script(fleet.size), speed=speed, say=lines.append, clock=lambda: clock.now)

    def wait(seconds: float) -> bool:  # the stop event's wait, advancing the fake clock instead
        clock.now += seconds
        return False

    player._stop.wait = wait  # type: ignore[method-assign]
    player.run()
    return player, lines, clock


def test_every_fault_is_undone_within_the_ten_minutes() -> None:
    """Test that the script of a three-Pi demo unplugs and plugs back, freezes and thaws, takes a Pi
    offline and back and recalibrates, each undo after its fault, all within SCRIPT_S."""
    fleet = _Fleet(3)
    player, lines, clock = _play(fleet, speed=1)
    done = fleet.done
    assert done.index(("unplug", 2, "bme280")) < done.index(("plug", 2, "bme280"))
    assert done.index(("freeze", 1, "")) < done.index(("thaw", 1, ""))
    assert done.index(("offline", 3, "")) < done.index(("online", 3, ""))
    assert ("recalibrate", 1, "bme280/temperature") in done
    assert clock.now == pytest.approx(SCRIPT_S)
    assert lines[0] == "t+30 s: the loan of kit OPEN-LAB-LOAN falls overdue (it stays so)"
    assert lines[-1].startswith("t+600 s: end of the fault script")
    assert not player.failed


def test_speed_plays_the_same_script_faster() -> None:
    """Test that speed 20 plays the same steps in the same order in a twentieth of the time."""
    slow, fast = _Fleet(3), _Fleet(3)
    _, slow_lines, _ = _play(slow, speed=1)
    _, fast_lines, clock = _play(fast, speed=20)
    assert fast.done == slow.done and fast_lines == slow_lines
    assert clock.now == pytest.approx(SCRIPT_S / 20)


def test_one_pi_is_never_taken_offline() -> None:
    """Test that a one-Pi demo unplugs its BME280 but never takes its only Pi offline."""
    fleet = _Fleet(1)
    _play(fleet, speed=1)
    assert ("unplug", 1, "bme280") in fleet.done
    assert not any(what == "offline" for what, _, _ in fleet.done)


def test_a_failing_fault_is_reported_and_the_script_goes_on() -> None:
    """Test that a fault whose action raises is reported as FAILED and the later ones still run."""
    fleet = _Fleet(3, broken="freeze")
    player, lines, _ = _play(fleet, speed=1)
    assert any("stuck (reads the same values) FAILED: freeze broke" in line for line in lines)
    assert [f.text for f, _ in player.failed] == ["sensor bme280 of demo-pi-1 stuck (reads the same values)"]
    assert ("thaw", 1, "") in fleet.done and ("online", 3, "") in fleet.done


def test_speed_must_be_positive() -> None:
    """Test that speed 0 is refused with a message naming the value."""
    with pytest.raises(ValueError, match="speed 0 must be above 0"):
        FaultPlayer(_Fleet(1), [], speed=0)
