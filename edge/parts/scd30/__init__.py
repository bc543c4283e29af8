"""The scd30 part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
