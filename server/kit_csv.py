"""Reading a kit import CSV: one row per Raspberry Pi, every problem named by row and column.

The file's first line names the columns (any order)::

    kit,profile,pi,claim_code,deployment,interval_s
    SCHOOL-07,air-quality-classroom,1,SC-0A1B2-...,12,60

``kit`` (inventory code), ``profile`` (kit profile id) and ``pi`` (the Pi's number in its kit) are
required; ``claim_code`` (the code already on the Pi's label; without it one is made and shown
once), ``deployment`` (bind the Pi to this deployment now: its device and broker account are made
and its config waits for the Pi's next poll) and ``interval_s`` are optional. Rows are numbered as
a spreadsheet shows them: the header is row 1.

This module only reads and checks the text; :mod:`server.kit_import` checks it against the
registry and writes it.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from dataclasses import dataclass, field

from server.security import CLAIM_PREFIX, normalise_code

__all__ = ["COLUMNS", "MAX_ROWS", "CsvProblem", "ImportPlan", "KitPlan", "PiRow", "parse_kit_csv"]

REQUIRED = ("kit", "profile", "pi")
OPTIONAL = ("claim_code", "deployment", "interval_s")
COLUMNS = REQUIRED + OPTIONAL
MAX_ROWS = 20_000
MAX_PROBLEMS = 100
MAX_PI = 1000

_KIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PROFILE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CLAIM = re.compile(rf"^{CLAIM_PREFIX}(-[0-9A-HJKMNP-TV-Z]{{5}}){{5}}$")


@dataclass(frozen=True)
class CsvProblem:
    """One problem: the row (the header is row 1; 0 for the file as a whole), the column, and what
    is wrong with the fix."""

    row: int
    column: str | None
    problem: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "the file"
        return f"{where}{f', column {self.column}' if self.column else ''}: {self.problem}"


@dataclass(frozen=True)
class PiRow:
    row: int
    pi: int
    claim_code: str | None
    deployment: int | None
    interval_s: float | None


@dataclass
class KitPlan:
    inventory_code: str
    profile: str
    row: int
    pis: list[PiRow] = field(default_factory=list)


@dataclass
class ImportPlan:
    kits: list[KitPlan]
    problems: list[CsvProblem]

    @property
    def pi_count(self) -> int:
        return sum(len(k.pis) for k in self.kits)


def _header(names: list[str]) -> tuple[dict[str, int], list[CsvProblem]]:
    problems: list[CsvProblem] = []
    where: dict[str, int] = {}
    for index, raw in enumerate(names):
        name = raw.strip().lower()
        if name in where:
            problems.append(CsvProblem(1, name, "the column is named twice: keep one"))
        elif name not in COLUMNS:
            near = difflib.get_close_matches(name, COLUMNS, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"the columns are {', '.join(COLUMNS)}"
            problems.append(CsvProblem(1, raw.strip() or f"#{index + 1}", f"unknown column: {hint}"))
        else:
            where[name] = index
    for name in REQUIRED:
        if name not in where and not any(p.column == name for p in problems):
            problems.append(
                CsvProblem(1, name, f"the column is missing: the first line must name {', '.join(REQUIRED)}")
            )
    return where, problems


def parse_kit_csv(text: str) -> ImportPlan:
    """Read ``text`` (a kit import CSV) into kits and their Pis, with every problem found.

    Checks the file on its own: the header, each value's form, and that no kit changes profile,
    no Pi and no claim code appears twice. An empty ``problems`` list means the file is well formed.
    """
    if text.startswith("\ufeff"):  # a spreadsheet's byte-order mark
        text = text[1:]
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        return ImportPlan([], [CsvProblem(0, None, f"not readable as CSV ({exc}): save it as CSV (UTF-8)")])
    if not rows or not any(cell.strip() for cell in rows[0]):
        return ImportPlan(
            [],
            [
                CsvProblem(
                    1, None, f"the file is empty or has no header: the first line names {','.join(COLUMNS)}"
                )
            ],
        )
    where, problems = _header(rows[0])
    if problems:
        return ImportPlan([], problems)
    if len(rows) - 1 > MAX_ROWS:
        return ImportPlan(
            [], [CsvProblem(0, None, f"{len(rows) - 1} rows is more than {MAX_ROWS}: split the file")]
        )
    kits: dict[str, KitPlan] = {}
    pis_seen: dict[tuple[str, int], int] = {}
    claims_seen: dict[str, int] = {}
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        if len(problems) >= MAX_PROBLEMS:
            break
        if len(cells) != len(rows[0]):
            problems.append(
                CsvProblem(
                    number,
                    None,
                    f"{len(cells)} values where the header names {len(rows[0])}: "
                    "check for a stray or missing comma (quote a value that holds one)",
                )
            )
            continue
        value = {name: cells[index].strip() for name, index in where.items()}
        before = len(problems)
        kit, profile = value["kit"], value["profile"]
        if not _KIT.match(kit):
            problems.append(
                CsvProblem(number, "kit", f"{kit!r} is not an inventory code: letters, digits, . _ - (1-64)")
            )
        if not _PROFILE.match(profile):
            problems.append(
                CsvProblem(
                    number, "profile", f"{profile!r} is not a kit profile id: see GET /api/v1/kit-profiles"
                )
            )
        pi = _int(value["pi"])
        if pi is None or not 1 <= pi <= MAX_PI:
            problems.append(
                CsvProblem(
                    number,
                    "pi",
                    f"{value['pi']!r} is not a Pi number: a whole number from 1 (the Pi's place in its kit)",
                )
            )
        claim = None
        if value.get("claim_code"):
            claim = normalise_code(value["claim_code"])
            if not _CLAIM.match(claim):
                problems.append(
                    CsvProblem(
                        number,
                        "claim_code",
                        f"{value['claim_code']!r} is not a claim code (SC- and five groups of five letters "
                        "or digits): copy it from the Pi's label, or leave it empty to have one made",
                    )
                )
                claim = None
            elif claim in claims_seen:
                problems.append(
                    CsvProblem(
                        number,
                        "claim_code",
                        f"the claim code is also on row {claims_seen[claim]}: each Pi has its own",
                    )
                )
            else:
                claims_seen[claim] = number
        deployment = None
        if value.get("deployment"):
            deployment = _int(value["deployment"])
            if deployment is None or deployment < 1:
                problems.append(
                    CsvProblem(
                        number,
                        "deployment",
                        f"{value['deployment']!r} is not a deployment id: a whole number "
                        "(GET /api/v1/deployments), or empty",
                    )
                )
        interval = None
        if value.get("interval_s"):
            interval = _float(value["interval_s"])
            if interval is None or not 0 < interval <= 86400:
                problems.append(
                    CsvProblem(
                        number,
                        "interval_s",
                        f"{value['interval_s']!r} is not an interval: seconds, more than 0 and at most 86400",
                    )
                )
        if len(problems) > before or pi is None:
            continue
        plan = kits.get(kit)
        if plan is None:
            plan = kits[kit] = KitPlan(kit, profile, number)
        elif plan.profile != profile:
            problems.append(
                CsvProblem(
                    number,
                    "profile",
                    f"kit {kit} is profile {plan.profile!r} on row {plan.row}: one profile per kit",
                )
            )
            continue
        if (kit, pi) in pis_seen:
            problems.append(
                CsvProblem(
                    number,
                    "pi",
                    f"Pi {pi} of kit {kit} is also on row {pis_seen[(kit, pi)]}: list each Pi once",
                )
            )
            continue
        pis_seen[(kit, pi)] = number
        plan.pis.append(PiRow(number, pi, claim, deployment, interval))
    if not kits and not problems:
        problems.append(CsvProblem(0, None, "no rows after the header: add one row per Pi"))
    return ImportPlan(list(kits.values()), problems)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
