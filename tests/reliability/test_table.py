"""The README's guarantees table is written by a script from the fault suite's results."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.faults import Tally, read_results, record
from tests.reliability.table import BEGIN, END, main

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_is_written_from_the_results_and_checked(tmp_path: Path) -> None:
    """Test that the script writes one row per recorded case, in the suite's order, between the
    markers only, and that --check tells a README that differs from the results."""
    results = tmp_path / "results.json"
    record(Tally("B fault", 10, 10, 0, 0, 1.234, "2 s down", "", order=2), results)
    record(Tally("A fault", 5, 4, 1, 0, None, "cut", "1 reading (x | y)", order=1), results)
    record(Tally("A fault", 5, 5, 0, 0, 0.5, "cut", "", order=1), results)  # a rerun replaces its row
    assert set(read_results(results)) == {"A fault", "B fault"}
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    args = ["--results", str(results), "--readme", str(readme)]
    assert main([*args, "--check"]) == 1
    assert main(args) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{END}\nafter\n")
    assert "old table" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "fault" in line]
    assert rows == [
        "| A fault | cut | 5 | 5 | 0 | 0 | 0.5 s | none |",
        "| B fault | 2 s down | 10 | 10 | 0 | 0 | 1.2 s | none |",
    ]
    assert main([*args, "--check"]) == 0


def test_a_readme_without_the_markers_or_no_results_is_a_clear_error(tmp_path: Path) -> None:
    """Test that the script refuses, naming the fix, when the markers or the results are missing."""
    results = tmp_path / "results.json"
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert main(["--results", str(results), "--readme", str(readme)]) == 2
    record(Tally("A", 1, 1, 0, 0), results)
    assert main(["--results", str(results), "--readme", str(readme)]) == 2
    assert readme.read_text() == "# no markers\n"


def test_the_readme_has_the_table_block() -> None:
    """Test that README.md holds the block the script writes (with at least one row)."""
    text = (ROOT / "README.md").read_text()
    assert BEGIN in text and END in text
    block = text[text.index(BEGIN) : text.index(END)]
    assert block.count("\n| ") >= 3
