"""The ads1x15 part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
