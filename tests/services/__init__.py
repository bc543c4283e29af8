"""One fixture module per service the tests use (Mosquitto, Chromium, ...).

Each starts its service on a free loopback port once per session and stops it at the end. When
the service is not installed, the test is skipped on a developer's machine and FAILS when
``SUITCASE_REQUIRE_SERVICES=1`` (set by ``.ci/run``): in CI a missing service is an error.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["require_service"]


def require_service(name: str, how_to_install: str) -> None:
    """Skip, or fail under SUITCASE_REQUIRE_SERVICES=1, because ``name`` is missing."""
    message = f"{name} is not installed: {how_to_install} (or run `make test`, which installs it)"
    if os.environ.get("SUITCASE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " [SUITCASE_REQUIRE_SERVICES=1]", pytrace=False)
    pytest.skip(message)  # allowed only outside CI: see SUITCASE_REQUIRE_SERVICES above
