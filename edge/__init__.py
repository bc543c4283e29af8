"""The edge agent: reads a Raspberry Pi's I2C sensors and publishes them over MQTT.

Drivers live in :mod:`edge.drivers`, register-level emulators of each part in
:mod:`edge.emulated`, the sampling and MQTT session in :mod:`edge.agent`.
"""

__all__: list[str] = []
