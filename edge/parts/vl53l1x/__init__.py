"""The vl53l1x part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
