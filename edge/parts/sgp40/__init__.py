"""The sgp40 part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
