"""The scd4x part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
