"""The hardware guide: generated from one source each, up to date, and its pictures render."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from edge.drivers import DRIVERS
from kits.catalog import load_catalog
from kits.errors import ConfigError
from suitcase.hardware_docs import (
    build_docs,
    collect_parts,
    load_part_facts,
    stale_docs,
    write_docs,
)

HARDWARE = Path(__file__).resolve().parents[2] / "hardware"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return build_docs(load_catalog(), load_part_facts())


def test_committed_hardware_folder_is_up_to_date(files: dict[str, str]) -> None:
    """Test that hardware/ is exactly what `suitcase kit docs` generates (regenerate and diff)."""
    stale = stale_docs(HARDWARE, files)
    assert not stale, f"out of date: {stale}; run `suitcase kit docs` and commit hardware/"


def test_every_driver_and_kit_part_has_a_page_and_a_picture(files: dict[str, str]) -> None:
    """Test that each part a driver or a kit names has its page and wiring SVG."""
    named = {s.part for p in load_catalog().kit_profiles.values() for s in p.sensors}
    for part in set(DRIVERS) | named:
        assert f"parts/{part}.md" in files
        assert f"parts/{part}-wiring.svg" in files
        assert f"(parts/{part}.md)" in files["README.md"]


def test_readme_bill_of_materials_comes_from_the_kit_profile(files: dict[str, str]) -> None:
    """Test that every BOM line of every kit profile, with its part number, is in the README."""
    readme = files["README.md"]
    for profile in load_catalog().kit_profiles.values():
        assert f"### {profile.name} (`{profile.id}`)" in readme
        for line in profile.bill_of_materials:
            assert line.item in readme
            if line.part_number:
                assert f"| {line.part_number} |" in readme


def test_readme_covers_what_a_new_user_needs(files: dict[str, str]) -> None:
    """Test that the guide has the pins, the address clashes, Wi-Fi, SD wear and the set-up script."""
    readme = files["README.md"]
    for needle in (
        "pin 1",
        "pin 3",
        "pin 5",
        "pin 6",
        "TCA9548A",
        "jumper",
        "Raspberry Pi Imager",
        "Wireless LAN country",
        "outbox.sync: batched",
        "pi-setup.sh",
        "make dist",
        "https://www.adafruit.com/distributors",
    ):
        assert needle in readme, needle


def test_part_pages_carry_the_facts(files: dict[str, str]) -> None:
    """Test that each page has accuracy, warm-up, placement, calibration and its picture."""
    facts = load_part_facts()
    for part, fact in facts.items():
        page = files[f"parts/{part}.md"]
        for heading in ("## How accurate", "## Warm-up", "## Where to put it", "## Calibration"):
            assert heading in page
        assert fact.accuracy[0] in page
        assert f"({part}-wiring.svg)" in page
        assert fact.product_url in page
    assert "CPU" in facts["bme280"].placement[0] or "processor" in facts["bme280"].placement[0]
    assert "breathe" in " ".join(facts["scd4x"].placement)
    assert "inlet" in " ".join(facts["pmsa003i"].placement)
    assert "straight down" in " ".join(facts["vl53l1x"].placement)


def test_a_kit_naming_an_unknown_part_is_refused() -> None:
    """Test that a kit profile's part without a folder is refused, naming the file, field and fix."""
    facts = load_part_facts()
    del facts["bme280"]
    with pytest.raises(ConfigError, match=r"starter.yaml, field sensors.0.part: 'bme280' is not a part"):
        collect_parts(load_catalog(), facts)


def test_a_use_case_naming_an_unknown_part_is_refused() -> None:
    """Test that a use-case recommending a part without a folder is refused, naming the file and field."""
    facts = load_part_facts()
    del facts["seesaw_soil"]
    with pytest.raises(ConfigError, match=r"soil-moisture.yaml, field sensors.0: 'seesaw_soil'"):
        collect_parts(load_catalog(), facts)


def test_a_kit_price_contradicting_the_part_facts_is_refused() -> None:
    """Test that a bill of materials pricing a part's board differently from its facts is refused."""
    facts = load_part_facts()
    facts["bme280"] = facts["bme280"].model_copy(update={"price_eur": 14.0})
    with pytest.raises(ConfigError, match=r"materials.3.price_eur: 15 for product 2652.*price_eur 14"):
        collect_parts(load_catalog(), facts)


def test_write_docs_is_idempotent_and_removes_stale_pages(tmp_path: Path, files: dict[str, str]) -> None:
    """Test that a second run writes nothing and a page of a removed part is deleted."""
    assert len(write_docs(tmp_path, files)) == len(files)
    assert write_docs(tmp_path, files) == []
    (tmp_path / "parts" / "gone.md").write_text("old", encoding="utf-8")
    assert write_docs(tmp_path, files) == ["parts/gone.md"]
    assert not (tmp_path / "parts" / "gone.md").exists()


def test_every_svg_is_well_formed_xml(files: dict[str, str]) -> None:
    """Test that each wiring picture parses as SVG with a title for screen readers."""
    for name, text in files.items():
        if name.endswith(".svg"):
            root = ET.fromstring(text)
            assert root.tag == "{http://www.w3.org/2000/svg}svg"
            assert root.find("{http://www.w3.org/2000/svg}title") is not None


@pytest.mark.browser
def test_wiring_svgs_render_in_chromium(page: Any, screenshot_dir: Path) -> None:
    """Test that every committed wiring SVG renders in Chromium at its size, with all four wires."""
    for svg in sorted((HARDWARE / "parts").glob("*-wiring.svg")):
        page.set_viewport_size({"width": 640, "height": 400})
        page.goto(svg.as_uri())
        box = page.locator("svg").bounding_box()
        assert box is not None and box["width"] == 640 and box["height"] == 400
        assert page.locator("svg path").count() == 4
        assert page.locator("svg text", has_text="pin 1 3V3").count() == 1
        shot = screenshot_dir / f"{svg.stem}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 5000
