"""Write the README's guarantees table from the fault suite's own output.

    python -m tests.reliability.table            # rewrite the table in README.md
    python -m tests.reliability.table --print    # print it only (make soak)
    python -m tests.reliability.table --check    # exit 1 when README.md differs from the results

The rows come from the results file each case of tests/reliability/ writes
(``.suitcase/faults/results.json``, or ``SUITCASE_FAULTS_RESULTS``); the table goes between the
two markers below in README.md. Nobody types the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.reliability.faults import RESULTS, ROOT, Tally, read_results

__all__ = ["BEGIN", "END", "render", "replace_block"]

BEGIN = "<!-- fault-table:begin (written by `make faults`: python -m tests.reliability.table) -->"
END = "<!-- fault-table:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(results: dict[str, Tally]) -> str:
    """The markdown table of ``results``, in the suite's order."""
    lines = [
        "| Fault | Conditions | Sent | Landed | Lost | Doubled | Recovery | Loss admitted (measured) |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for t in sorted(results.values(), key=lambda t: (t.order, t.fault)):
        recovery = "—" if t.recovery_s is None else f"{t.recovery_s:.1f} s"
        lines.append(
            f"| {_cell(t.fault)} | {_cell(t.conditions)} | {t.sent:,} | {t.landed:,} | {t.lost:,} | "
            f"{t.doubled:,} | {recovery} | {_cell(t.admitted) or 'none'} |"
        )
    return "\n".join(lines)


def replace_block(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced by ``table``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN!r} ... {END!r} block: add the two markers where the table goes")
    return text[: start + len(BEGIN)] + "\n" + table + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print the table, change nothing")
    mode.add_argument("--check", action="store_true", help="exit 1 when the README's table differs")
    args = parser.parse_args(argv)
    results = read_results(args.results)
    if not results:
        print(f"error: no results in {args.results}: run the fault suite (make faults)", file=sys.stderr)
        return 2
    table = render(results)
    if args.print:
        print(table)
        return 0
    text = args.readme.read_text()
    try:
        new = replace_block(text, table)
    except ValueError as exc:
        print(f"error: {args.readme}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{args.readme}: its fault table differs from {args.results}: make faults", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    print(f"{args.readme}: fault table written ({len(results)} rows from {args.results})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
