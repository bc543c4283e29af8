"""Tests of the broker's TLS files: made by openssl, and given ones checked before use."""

from __future__ import annotations

from pathlib import Path

import pytest

from kits.errors import ConfigError
from suitcase.services.tls import TlsFiles, check_server_cert, make_ca, make_server_cert


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[TlsFiles, Path]:
    root = tmp_path_factory.mktemp("tls")
    ca = make_ca(root / "ca")
    return make_server_cert(ca, root / "server", ["broker.city.example", "127.0.0.1"]), root


def test_made_certificate_passes_its_own_checks(made: tuple[TlsFiles, Path]) -> None:
    """Test that a made certificate names its hosts (name and address) and its key is private."""
    files, _root = made
    check_server_cert(files, "broker.city.example")
    check_server_cert(files, "127.0.0.1")
    assert files.key.stat().st_mode & 0o077 == 0


def test_certificate_for_another_host_is_refused(made: tuple[TlsFiles, Path]) -> None:
    """Test that a certificate not naming the host is refused with the host and the fix."""
    files, _root = made
    with pytest.raises(ConfigError, match=r"does not name the host 'other.example'.*--hostname"):
        check_server_cert(files, "other.example")


def test_key_of_another_certificate_is_refused(made: tuple[TlsFiles, Path], tmp_path: Path) -> None:
    """Test that a key that does not belong to the certificate is refused."""
    files, root = made
    other = make_server_cert(make_ca(tmp_path / "ca2"), tmp_path / "s2", ["broker.city.example"])
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        check_server_cert(TlsFiles(ca=files.ca, cert=files.cert, key=other.key), "broker.city.example")
    with pytest.raises(ConfigError, match="is not signed by the CA"):
        check_server_cert(TlsFiles(ca=files.ca, cert=other.cert, key=other.key), "broker.city.example")
    with pytest.raises(ConfigError, match="does not exist"):
        check_server_cert(TlsFiles(ca=root / "nope.crt", cert=files.cert, key=files.key), "x")
