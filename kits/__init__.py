"""The shared contract of IoT Suitcase: models, the wire format, errors and the catalogue.

Imports nothing else of ours; every other part imports it.
"""

__version__ = "0.1.0"
