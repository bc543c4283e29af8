"""The pages' scripts (``server/web/static/*.js``) never put a data string into HTML.

A static check, so a new script that does fails here before it reaches a browser: every HTML sink
(``innerHTML``, Leaflet's tooltip and popup content) gets a DOM node built with ``textContent``, an
empty string, or (marked ``// trusted:``) a fragment the server's autoescaping templates rendered.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.web.pages import STATIC_DIR

SCRIPTS = sorted(STATIC_DIR.glob("*.js"))
_NEVER = re.compile(r"insertAdjacentHTML|outerHTML\s*=|document\.write|\beval\(|new Function\(|srcdoc")
_INNER = re.compile(r"\.innerHTML\s*=\s*([^;]+);")
_LEAFLET = re.compile(r"\.(bindTooltip|bindPopup|setContent|setTooltipContent|setPopupContent)\(\s*([^,)]+)")


def problems(path: Path) -> list[str]:
    """Where ``path`` hands a string to an HTML sink, one line each."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines, start=1):
        if _NEVER.search(line):
            found.append(f"{path.name}:{number}: {line.strip()}")
        for match in _INNER.finditer(line):
            trusted = number >= 2 and lines[number - 2].strip().startswith("// trusted:")
            if match.group(1).strip() not in ('""', "''") and not trusted:
                found.append(f"{path.name}:{number}: innerHTML from {match.group(1).strip()}")
        for match in _LEAFLET.finditer(line):
            name = match.group(2).strip()
            built = re.search(rf"\b(const|let)\s+{re.escape(name)}\s*=\s*document\.createElement\(", text)
            if not re.fullmatch(r"[A-Za-z_]\w*", name) or built is None:
                found.append(f"{path.name}:{number}: {match.group(1)}({name}) is not a DOM node")
    return found


def test_the_check_finds_a_name_given_to_a_tooltip_as_html(tmp_path: Path) -> None:
    """Test that the check itself flags the stored-XSS pattern and the other sinks."""
    bad = tmp_path / "bad.js"
    bad.write_text(
        "marker.bindTooltip(m.name);\nel.innerHTML = '<b>' + name;\nel.insertAdjacentHTML('x', s);\n"
        "const a = document.createElement('a');\nmarker.bindPopup(a);\nel.innerHTML = \"\";\n"
    )
    assert [p.split(":")[1] for p in problems(bad)] == ["1", "2", "3"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_no_script_puts_a_string_into_html(script: Path) -> None:
    """Test that the script hands HTML sinks only DOM nodes, "" or trusted server fragments."""
    assert problems(script) == []
