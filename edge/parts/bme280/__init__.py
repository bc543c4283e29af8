"""The bme280 part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
