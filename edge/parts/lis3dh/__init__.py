"""The lis3dh part: driver.py, emulator.py and facts.yaml (see edge.parts)."""
