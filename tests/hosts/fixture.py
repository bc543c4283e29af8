"""The ``lab`` fixture: a fresh :class:`~tests.hosts.lab.Lab` per test, removed after it.

Needs root (network namespaces) and iproute2 (``ip``). Without them the test is skipped
on a developer's machine and FAILS under ``SUITCASE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.hosts.lab import Lab
from tests.services import require_service

__all__ = ["lab", "require_lab"]


def require_lab() -> None:
    """Skip (fail under SUITCASE_REQUIRE_SERVICES=1) unless this process can build a lab."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        require_service(
            "network namespaces (root, iproute2)", "run the tests as root; apt-get install iproute2"
        )


@pytest.fixture()
def lab() -> Iterator[Lab]:
    """Hosts on a private network of namespaces; every process, namespace and link is removed after.

    Its processes' log tails are printed at teardown (pytest shows them when the test failed).
    """
    require_lab()
    built = Lab()
    try:
        yield built
    finally:
        print(built.describe())
        built.close()
