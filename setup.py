"""The build's one hook: the ``edge`` extra is the agent's own needs plus each part's library.

A sensor part is a folder ``edge/parts/<part>/`` whose ``facts.yaml`` names, under ``requires``,
the library its driver wraps; this reads them, so a new part needs no line in pyproject.toml.
The other extras are plain lists in pyproject.toml's ``[tool.suitcase.extras]``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from setuptools import setup

ROOT = Path(__file__).resolve().parent


def part_requirements() -> list[str]:
    """The ``requires`` of every part's facts, each once."""
    out: set[str] = set()
    for facts in sorted((ROOT / "edge" / "parts").glob("*/facts.yaml")):
        data = yaml.safe_load(facts.read_text(encoding="utf-8"))
        requires = data.get("requires") if isinstance(data, dict) else None
        if not isinstance(requires, list) or not requires or not all(isinstance(r, str) for r in requires):
            raise SystemExit(
                f"{facts}, field requires: expected a list of pip requirements, got {requires!r}: "
                "name the library the driver wraps, e.g. - adafruit-circuitpython-bme280>=2.6"
            )
        out.update(requires)
    return sorted(out)


def extras() -> dict[str, list[str]]:
    """pyproject.toml's extras, with the parts' libraries added to ``edge``."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {k: list(v) for k, v in table["tool"]["suitcase"]["extras"].items()}
    out["edge"] = [*out["edge"], *part_requirements()]
    return out


setup(extras_require=extras())
