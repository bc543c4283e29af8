"""The gateway: writes every reading from MQTT to the time-series store, acking only after the write.

``gateway.store`` is the store's read/write interface (the server reads through it);
``gateway.consumer`` is the MQTT consumer; ``gateway.cli`` its command line.
"""
