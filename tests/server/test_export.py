"""The CSV export (``server/export.py``): a name never breaks the header, no cell is a formula."""

from __future__ import annotations

import csv
import io

import pytest

from gateway.store import SqliteStore
from kits.wire import Record
from server.export import csv_lines, neutralise_cell
from tests.server.data import NOW
from tests.server.world import World

_DANGEROUS = ["=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("text", _DANGEROUS)
def test_cells_that_start_a_formula_are_neutralised(text: str) -> None:
    """Test that a cell beginning with = + - @ tab or CR is prefixed with a single quote (OWASP)."""
    assert neutralise_cell(text) == "'" + text
    assert neutralise_cell("plain") == "plain" and neutralise_cell("") == ""


def _body(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO("\n".join(x for x in text.splitlines() if not x.startswith("#")))))


def test_a_newline_in_the_title_stays_on_its_header_line() -> None:
    """Test that a metadata value with newlines, commas and formulas stays one ``#`` line whose
    comma-separated pieces a spreadsheet would not evaluate."""
    record = Record("o", "@dev", "=s", "+q", 1.5, NOW)
    text = "".join(
        csv_lines([("-1", record)], {"title": "readings of a\n=cmd|' /C calc'!A0\r\n, =2+2;@x", "x": 1})
    )
    lines = text.splitlines()
    assert [x for x in lines if x.startswith("#")] == [
        "# title: readings of a =cmd|' /C calc'!A0  , '=2+2;'@x",
        "# x: 1",
    ]
    header, row = _body(text)
    assert header[0] == "time_iso"
    assert row[2:6] == ["'-1", "'@dev", "'=s", "'+q"]
    assert row[-1] == "1.5"  # numbers the export writes itself stay numbers, negative ones too


def test_export_of_a_deployment_named_with_a_newline_and_a_formula(world: World, store: SqliteStore) -> None:
    """Test that the deployment export's header survives a name with a newline and a formula."""
    dep = world.ok(
        "a-operator",
        "POST",
        "/deployments",
        201,
        json={"name": 'Hall\n=HYPERLINK("http://evil.example")', "starts_at": NOW - 3600},
    )
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    device = world.client.post("/api/v1/enroll", json={"code": code}).json()["config"]["device"]
    store.write([Record("city-a", device, "bme280", "temperature", -2.5, NOW - 60)])
    text = world.call("a-operator", "GET", f"/export/deployments/{dep['id']}/readings").text
    titles = [x for x in text.splitlines() if x.startswith("# title:")]
    assert titles == ['# title: readings of deployment Hall =HYPERLINK("http://evil.example")']
    rows = _body(text)
    assert rows[0][0] == "time_iso" and len(rows) == 2 and rows[1][-1] == "-2.5"
