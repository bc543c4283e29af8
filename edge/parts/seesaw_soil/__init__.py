"""The seesaw_soil part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
