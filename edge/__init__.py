"""The edge agent: reads a Raspberry Pi's I2C sensors and publishes them over MQTT.

Each sensor part is one folder in :mod:`edge.parts` (driver, register-level emulator, facts),
found through one line of ``edge.parts.PARTS``; the driver contract is :mod:`edge.drivers`, the
emulated bus :mod:`edge.emulated`, the sampling and MQTT session :mod:`edge.agent`.
"""

__all__: list[str] = []
