"""Reading kit import CSVs: every malformed file or row is named by row and column."""

from __future__ import annotations

import pytest

from server.kit_csv import MAX_ROWS, parse_kit_csv

CODE = "SC-0A1B2-C3D4E-F5G6H-J7K8M-N9P0Q"


def test_a_good_file_groups_pis_by_kit() -> None:
    """Test that rows become kits with their Pis, in any column order, with a byte-order mark,
    lower-case codes normalised and blank lines skipped."""
    plan = parse_kit_csv(
        "\ufeffpi,kit,profile,claim_code,deployment,interval_s\n"
        f"1,K-1,starter,{CODE.lower()},7,60\n\n2,K-1,starter,,,\n1,K-2,full,,,\n"
    )
    assert plan.problems == []
    assert [(k.inventory_code, k.profile, [p.pi for p in k.pis]) for k in plan.kits] == [
        ("K-1", "starter", [1, 2]),
        ("K-2", "full", [1]),
    ]
    first = plan.kits[0].pis[0]
    assert (first.claim_code, first.deployment, first.interval_s, first.row) == (CODE, 7, 60.0, 2)
    assert plan.pi_count == 3


@pytest.mark.parametrize(
    ("text", "row", "column", "words"),
    [
        ("", 1, None, "empty"),
        ("kit,profile,pi\n", 0, None, "no rows"),
        ("kit,profil,pi\nK,starter,1\n", 1, "profil", "did you mean 'profile'"),
        ("kit,pi\nK,1\n", 1, "profile", "missing"),
        ("kit,profile,pi,pi\nK,s,1,1\n", 1, "pi", "named twice"),
        ("kit,profile,pi\nK,starter\n", 2, None, "2 values where the header names 3"),
        ("kit,profile,pi\nK,starter,one\n", 2, "pi", "not a Pi number"),
        ("kit,profile,pi\nK,starter,0\n", 2, "pi", "not a Pi number"),
        ("kit,profile,pi\nK K,starter,1\n", 2, "kit", "not an inventory code"),
        ("kit,profile,pi\nK,Start er,1\n", 2, "profile", "not a kit profile id"),
        ("kit,profile,pi\nK,starter,1\nK,starter,1\n", 3, "pi", "also on row 2"),
        ("kit,profile,pi\nK,starter,1\nK,full,2\n", 3, "profile", "one profile per kit"),
        ("kit,profile,pi,claim_code\nK,starter,1,SC-123\n", 2, "claim_code", "not a claim code"),
        (f"kit,profile,pi,claim_code\nK,starter,1,{CODE}\nL,starter,1,{CODE}\n", 3, "claim_code", "row 2"),
        ("kit,profile,pi,deployment\nK,starter,1,x\n", 2, "deployment", "not a deployment id"),
        ("kit,profile,pi,interval_s\nK,starter,1,nan\n", 2, "interval_s", "not an interval"),
        ("kit,profile,pi,interval_s\nK,starter,1,0\n", 2, "interval_s", "not an interval"),
        ('kit,profile,pi\n"K,starter,1\n', 2, None, "values where the header names 3"),
    ],
)
def test_malformed_files_name_row_and_column(text: str, row: int, column: str | None, words: str) -> None:
    """Test that each malformed file gives a problem naming its row, its column and the fix."""
    plan = parse_kit_csv(text)
    assert plan.problems, text
    problem = plan.problems[0]
    assert (problem.row, problem.column) == (row, column), plan.problems
    assert words in problem.problem
    assert str(problem).startswith(f"row {row}" if row else "the file")


def test_every_bad_row_is_reported_not_only_the_first() -> None:
    """Test that a file with several bad rows lists each of them, and the good rows are not planned
    as if the file were fine."""
    plan = parse_kit_csv("kit,profile,pi\nK,starter,1\nK,starter,x\nK,starter,1\nL,?,2\n")
    assert [(p.row, p.column) for p in plan.problems] == [(3, "pi"), (4, "pi"), (5, "profile")]


def test_too_many_rows_is_refused_whole() -> None:
    """Test that a file over the row limit is refused with the limit and the fix."""
    text = "kit,profile,pi\n" + "".join(f"K{i},starter,1\n" for i in range(MAX_ROWS + 1))
    plan = parse_kit_csv(text)
    assert "split the file" in plan.problems[0].problem
