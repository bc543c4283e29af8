"""The services of a production stack: Mosquitto, InfluxDB 1.x and PostgreSQL, configured one way.

``suitcase services up`` and the tests' fixtures (``tests/services/``) use the same modules, so the
tests run the configuration a city runs; only how the processes are supervised differs.

- :mod:`suitcase.services.layout`: where each file goes, which ports.
- :mod:`suitcase.services.tls`: the broker's CA and certificate (made or checked).
- :mod:`suitcase.services.mosquitto`, :mod:`~suitcase.services.influxdb`,
  :mod:`~suitcase.services.postgres`: each service's config and accounts.
- :mod:`suitcase.services.settings_files`: the settings the gateway and the server read.
"""
