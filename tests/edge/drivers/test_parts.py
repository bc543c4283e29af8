"""Every kit part through its real Adafruit driver, on its register-level emulator.

The emulators stand in for the Raspberry Pi's I2C hardware only (STYLE.md, "Tests"); the
drivers, their protocol handling and their CRC checks are the real ones.
"""

from __future__ import annotations

import math

import pytest

from edge.drivers import NotReady, ReadContext, Reading, load_driver
from edge.emulated import EMULATORS, build_bus, get_scenario
from edge.emulated.bus import EmulatedI2C
from edge.parts import PARTS as REGISTERED
from edge.parts import facts_of
from edge.parts.scd4x.emulator import Scd4xEmulator
from edge.parts.sgp40.emulator import Sgp40Emulator
from edge.scan import scan
from kits.errors import ConfigError, SensorError
from kits.models import DeviceSensor
from tests.edge.conftest import FakeClock, Targets

# Every registered part at its default address: a new part's folder and registry line put it here.
PARTS = {part: facts_of(part).default_address for part in REGISTERED}
# How close a part's reading comes to the scenario: its resolution, as the datasheets give it.
TOLERANCE = {
    "temperature": 0.02,
    "humidity": 0.05,
    "pressure": 0.02,
    "co2": 1.0,
    "pm1_0": 1.0,
    "pm2_5": 1.0,
    "pm10": 1.0,
    "illuminance": 0.6,
    "distance": 1.0,
    "acceleration_x": 0.05,
    "acceleration_y": 0.05,
    "acceleration_z": 0.05,
    "voltage_a0": 0.001,
    "voltage_a1": 0.001,
    "voltage_a2": 0.001,
    "voltage_a3": 0.001,
}


def _bus(part: str, scenario: str, clock: FakeClock) -> EmulatedI2C:
    return build_bus([DeviceSensor(name=part, part=part, address=PARTS[part])], scenario, clock=clock, seed=7)


def _read_ready(driver: object, clock: FakeClock, tries: int = 3) -> Reading:
    for _ in range(tries):
        result = driver.read(ReadContext(time=clock.now))  # type: ignore[attr-defined]
        if isinstance(result, Reading):
            return result
        clock.advance(5.0)
    raise AssertionError(f"no reading after {tries} tries: {result}")


def test_every_part_has_a_driver_and_an_emulator() -> None:
    """Test that the driver registry and the emulator registry list the same parts."""
    from edge.drivers import DRIVERS

    assert set(DRIVERS) == set(EMULATORS) == set(PARTS)


@pytest.mark.parametrize("scenario", ["office-day", "street-air", "bin-filling", "vibration-bursts"])
@pytest.mark.parametrize("part", sorted(set(PARTS) - {"sgp40"}))
def test_the_real_driver_reads_the_scenario(part: str, scenario: str, clock: FakeClock) -> None:
    """Test that each part read through its Adafruit driver returns the scenario's values."""
    bus = _bus(part, scenario, clock)
    module = load_driver(part)
    driver = module.create(bus, PARTS[part], {})
    clock.advance(5.0)
    reading = _read_ready(driver, clock)
    want = get_scenario(scenario, seed=7)(clock.now)
    assert set(reading.values) <= set(module.info.quantity_names)
    for qty, value in reading.values.items():
        if qty == "vibration_rms" or qty.startswith("particles_") or qty not in want:
            continue  # derived values, or a part whose emulator models the quantity itself
        if scenario == "vibration-bursts" and (qty.startswith("acceleration") or qty == "voltage_a3"):
            continue  # waveforms: tested by their RMS below
        assert value == pytest.approx(want[qty], abs=TOLERANCE[qty]), qty


def test_scan_identifies_every_part(clock: FakeClock) -> None:
    """Test that a scan names each part by its chip id, serial or frame, never by address alone."""
    sensors = [DeviceSensor(name=p, part=p, address=a) for p, a in PARTS.items()]
    found = {f.address: f.part for f in scan(build_bus(sensors, "office-day", clock=clock, seed=1))}
    assert found == {a: p for p, a in PARTS.items()}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_part_that_does_not_answer_is_a_sensor_error(part: str, clock: FakeClock) -> None:
    """Test that an OSError on the bus becomes a SensorError that says what to check."""
    bus = _bus(part, "office-day", clock)
    driver = load_driver(part).create(bus, PARTS[part], {})
    clock.advance(5.0)
    bus.detach(PARTS[part])
    with pytest.raises(SensorError, match=rf"{part} at {PARTS[part]:#04x}.*(wiring|answer)"):
        driver.read(ReadContext(time=clock.now))


@pytest.mark.parametrize("part", sorted(PARTS))
def test_create_fails_clearly_when_nothing_is_there(part: str) -> None:
    """Test that creating a driver at an empty address is a SensorError naming part and address."""
    with pytest.raises(SensorError, match=rf"{part} at {PARTS[part]:#04x}"):
        load_driver(part).create(EmulatedI2C(), PARTS[part], {})


@pytest.mark.parametrize("part", sorted(PARTS))
def test_an_unknown_option_is_a_config_error(part: str, clock: FakeClock) -> None:
    """Test that a misspelt driver option is refused, naming what the part takes."""
    with pytest.raises(ConfigError, match="option"):
        load_driver(part).create(_bus(part, "office-day", clock), PARTS[part], {"sampels": 3})


@pytest.mark.parametrize("part", ["sht4x", "scd4x", "sgp40", "pmsa003i"])
def test_a_crc_or_checksum_mismatch_is_a_sensor_error(part: str, clock: FakeClock) -> None:
    """Test that a corrupted word (Sensirion CRC-8) or frame (Plantower checksum) is refused."""
    bus = _bus(part, "office-day", clock)
    driver = load_driver(part).create(bus, PARTS[part], {})
    clock.advance(5.0)
    bus.corrupt(PARTS[part], reads=1)
    with pytest.raises(SensorError, match="corrupt"):
        driver.read(ReadContext(time=clock.now))
    clock.advance(5.0)
    assert not isinstance(driver.read(ReadContext(time=clock.now)), SensorError)


def test_scd4x_is_not_ready_until_its_5_s_measurement(clock: FakeClock) -> None:
    """Test that the SCD4x reports NotReady before its first measurement and between measurements."""
    targets = Targets(co2=812.0, temperature=22.0, humidity=41.0)
    chip = Scd4xEmulator(targets, clock=clock)
    bus = EmulatedI2C({0x62: chip})
    driver = load_driver("scd4x").create(bus, 0x62, {})
    assert isinstance(driver.read(ReadContext(time=clock.now)), NotReady)
    clock.advance(4.9)
    assert isinstance(driver.read(ReadContext(time=clock.now)), NotReady)
    clock.advance(0.2)
    reading = driver.read(ReadContext(time=clock.now))
    assert isinstance(reading, Reading)
    assert reading.values["co2"] == 812.0
    assert reading.values["temperature"] == pytest.approx(22.0, abs=0.01)
    assert isinstance(driver.read(ReadContext(time=clock.now)), NotReady)


def test_scd4x_gets_the_pressure_a_neighbour_read(clock: FakeClock) -> None:
    """Test that the SCD4x is told the air pressure a neighbour (a BME280) just read."""
    chip = Scd4xEmulator(Targets(co2=600.0), clock=clock)
    driver = load_driver("scd4x").create(EmulatedI2C({0x62: chip}), 0x62, {})
    clock.advance(5.0)
    driver.read(ReadContext(time=clock.now, neighbours={"bme280": {"pressure": 987.4}}))
    assert chip.ambient_pressure == 987


def test_sgp40_learns_then_reports_a_voc_index_compensated_by_a_neighbour(clock: FakeClock) -> None:
    """Test that the SGP40 is NotReady while its algorithm learns, then follows VOC peaks."""
    targets = Targets(voc_index=100.0)
    chip = Sgp40Emulator(targets, clock=clock)
    driver = load_driver("sgp40").create(EmulatedI2C({0x59: chip}), 0x59, {})
    neighbours = {"sht4x": {"temperature": 23.5, "humidity": 38.0}}
    results = []
    for _ in range(60):
        clock.advance(1.0)
        results.append(driver.read(ReadContext(time=clock.now, neighbours=neighbours)))
    assert isinstance(results[0], NotReady)
    assert isinstance(results[-1], Reading)
    baseline = results[-1].values["voc_index"]
    assert chip.compensation == pytest.approx((38.0, 23.5), abs=0.01)
    targets["voc_index"] = 300.0
    for _ in range(10):
        clock.advance(1.0)
        peak = driver.read(ReadContext(time=clock.now, neighbours=neighbours))
    assert isinstance(peak, Reading)
    assert peak.values["voc_index"] > baseline + 50


def test_vl53l1x_reports_no_target_and_not_ready(clock: FakeClock) -> None:
    """Test that the ranger is NotReady with no target in range and until a new range is ready."""
    targets = Targets(distance=640.0)
    bus = build_bus(
        [DeviceSensor(name="bin", part="vl53l1x", address=0x29)], "bin-filling", clock=clock, seed=0
    )
    from edge.parts.vl53l1x.emulator import Vl53l1xEmulator

    bus.attach(0x29, Vl53l1xEmulator(targets, clock=clock))
    driver = load_driver("vl53l1x").create(bus, 0x29, {})
    clock.advance(1.0)
    first = driver.read(ReadContext(time=clock.now))
    assert isinstance(first, Reading) and first.values["distance"] == 640.0
    assert isinstance(driver.read(ReadContext(time=clock.now)), NotReady)
    targets["distance"] = 5000.0
    clock.advance(1.0)
    assert isinstance(driver.read(ReadContext(time=clock.now)), NotReady)


def test_lis3dh_burst_measures_vibration_rms(clock: FakeClock) -> None:
    """Test that the burst's RMS is near the 12 Hz burst's amplitude / sqrt 2, and quiet between."""
    bus = _bus("lis3dh", "vibration-bursts", clock)
    driver = load_driver("lis3dh").create(bus, 0x18, {"samples": 400, "rate_hz": 400})
    driver.sleep = lambda seconds: None  # type: ignore[attr-defined]
    clock.now -= clock.now % 600.0  # a burst starts every 10 minutes
    clock.advance(10.0)
    burst = driver.read(ReadContext(time=clock.now))
    clock.advance(200.0)
    quiet = driver.read(ReadContext(time=clock.now))
    assert isinstance(burst, Reading) and isinstance(quiet, Reading)
    expected = math.sqrt(2.0**2 / 2 + 2 * (2.0 / 3) ** 2 / 2)
    assert burst.values["vibration_rms"] == pytest.approx(expected, rel=0.1)
    assert quiet.values["vibration_rms"] < 0.05
    assert burst.values["acceleration_z"] == pytest.approx(9.806, abs=0.1)


def test_ads1x15_rms_channel_measures_a_current_clamp(clock: FakeClock) -> None:
    """Test that a channel listed in rms reports the RMS of its 50 Hz signal, others their DC level."""
    bus = _bus("ads1x15", "vibration-bursts", clock)
    driver = load_driver("ads1x15").create(
        bus, 0x48, {"channels": ["a0", "a3"], "rms": ["a3"], "rms_samples": 860}
    )
    clock.now -= clock.now % 600.0
    clock.advance(10.0)
    reading = driver.read(ReadContext(time=clock.now))
    assert isinstance(reading, Reading)
    assert set(reading.values) == {"voltage_a0", "voltage_a3"}
    assert reading.values["voltage_a3"] == pytest.approx(0.3 / math.sqrt(2), rel=0.05)
    assert reading.values["voltage_a0"] == pytest.approx(1.8, abs=0.02)


def test_veml7700_saturation_says_what_to_do(clock: FakeClock) -> None:
    """Test that a saturated count is an error that names the outdoor range option."""
    from edge.parts.veml7700.emulator import Veml7700Emulator

    targets = Targets(illuminance=1e6)
    bus = EmulatedI2C({0x10: Veml7700Emulator(targets, clock=clock)})
    with pytest.raises(SensorError, match="range: outdoor"):
        load_driver("veml7700").create(bus, 0x10, {}).read(ReadContext(time=clock.now))
    targets["illuminance"] = 80000.0
    outdoor = (
        load_driver("veml7700").create(bus, 0x10, {"range": "outdoor"}).read(ReadContext(time=clock.now))
    )
    assert isinstance(outdoor, Reading)
    assert outdoor.values["illuminance"] == pytest.approx(80000.0, rel=0.01)
