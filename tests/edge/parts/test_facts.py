"""Tests of edge/parts: one folder per part, found through one registry line, facts checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.drivers import DRIVERS, load_driver
from edge.emulated import EMULATORS
from edge.parts import PARTS, facts_of, part_dir
from edge.parts._facts import FACTS_FILE, load_facts
from kits.errors import ConfigError


def _bme280_facts(tmp_path: Path, old: str, new: str) -> Path:
    text = (part_dir("bme280") / FACTS_FILE).read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "bme280" / FACTS_FILE
    path.parent.mkdir()
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_is_one_folder_with_driver_emulator_and_facts(part: str) -> None:
    """Test that every registered part's folder holds its three files and its facts drive its INFO."""
    folder = part_dir(part)
    assert folder.name == part
    for name in ("driver.py", "emulator.py", FACTS_FILE):
        assert (folder / name).is_file(), name
    facts, info = facts_of(part), load_driver(part).info
    assert info.addresses == tuple(facts.addresses)
    assert info.quantity_names == tuple(facts.quantities)
    assert (info.chip_id_register, info.chip_id, info.warmup_s) == (
        facts.chip_id_register,
        facts.chip_id,
        facts.warmup_s,
    )
    assert DRIVERS[part] == f"{PARTS[part]}.driver"
    assert EMULATORS[part] == f"{PARTS[part]}.emulator"


def test_no_part_folder_is_left_out_of_the_registry() -> None:
    """Test that a part folder without its registry line is noticed (it would never be loaded)."""
    root = part_dir("bme280").parent
    folders = {p.name for p in root.iterdir() if (p / FACTS_FILE).is_file()}
    assert folders == set(PARTS)


def test_a_missing_fact_is_refused_with_the_file_the_field_and_the_fix(tmp_path: Path) -> None:
    """Test that facts without their warm-up time are refused, naming the file, the field and the fix."""
    path = _bme280_facts(tmp_path, "warmup_s: 0.0\n", "")
    with pytest.raises(ConfigError) as caught:
        load_facts(path, part="bme280")
    assert str(caught.value) == f"{path} line 5, field warmup_s: required field 'warmup_s' is missing: add it"


def test_a_misspelt_fact_points_at_the_right_name(tmp_path: Path) -> None:
    """Test that an unknown key is refused with the close known one."""
    path = _bme280_facts(tmp_path, "cable_label:", "cable_lable:")
    with pytest.raises(
        ConfigError, match=r"field cable_lable: unknown field 'cable_lable': did you mean 'cable_label'"
    ):
        load_facts(path, part="bme280")


@pytest.mark.parametrize(
    ("old", "new", "field", "fix"),
    [
        ("part: bme280", "part: bme680", "part", "make the three the same"),
        ("chip_id_register: 0xd0\n", "", "chip_id_register", "give both"),
        ("chip_id: 0x60", "chip_id: 0x58", "look_alikes", "remove it from look_alikes"),
        ("quantities: [temperature,", "quantities: [temprature,", "quantities", "kits/quantities.py"),
        ("product/2652\n", "product/4885\n", "product_url", "name the same product in both"),
        ("- adafruit-circuitpython-bme280>=2.6", "- adafruit circuitpython bme280", "requires", "write e.g."),
    ],
)
def test_contradictory_facts_are_refused(tmp_path: Path, old: str, new: str, field: str, fix: str) -> None:
    """Test that facts contradicting each other (or the folder) are refused with the field and the fix."""
    path = _bme280_facts(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load_facts(path, part="bme280")
    message = str(caught.value)
    assert message.startswith(f"{path}, field {field}: "), message
    assert fix in message


def test_a_registry_line_without_its_folder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that a registered part whose package does not exist is refused with the fix."""
    monkeypatch.setitem(PARTS, "bme680", "edge.parts.bme680")
    with pytest.raises(
        ConfigError, match=r"'bme680' is registered as 'edge.parts.bme680'.*create the folder"
    ):
        facts_of("bme680")
