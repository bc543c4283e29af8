"""The pmsa003i part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
