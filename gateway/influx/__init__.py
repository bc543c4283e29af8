"""What the InfluxDB sinks and the InfluxDB store readers share: the HTTP client, the line protocol
and schema (database per org), InfluxQL quoting, InfluxQL over HTTP (``query``: one request, one
result per statement), and the URL parser of ``influxdb1://`` / ``influxdb://`` URLs.

It sits below both ``gateway.sinks`` and ``gateway.store`` and imports neither, so the store
(which the server imports) never pulls in the sinks.
"""
