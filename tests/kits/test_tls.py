"""Tests of kits/tls.py: the one TLS context builder of every MQTT client, and its bad input."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from kits.errors import ConfigError
from kits.tls import client_context
from tests.services.tls import Pki


def test_a_context_checks_the_chain_and_the_host_name(pki: Pki) -> None:
    """Test that the context trusts only the CA given, checks host names and speaks TLS 1.2 or later."""
    context = client_context(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "Test CA"),),)]


def test_the_ca_can_come_as_text(pki: Pki) -> None:
    """Test that a device's CA sent by the server as PEM text works like a file."""
    context = client_context(ca_pem=pki.ca.read_text(), setting="mqtt")
    assert len(context.get_ca_certs()) == 1


def test_bad_files_name_the_setting(pki: Pki, tmp_path: Path) -> None:
    """Test that a missing CA, a CA that is not PEM, a key that is not the certificate's and a
    certificate without its key are refused, naming the setting to fix."""
    with pytest.raises(ConfigError, match=r"SUITCASE_GATEWAY_MQTT_CA_FILE '.*missing.pem' does not exist"):
        client_context(ca_file=tmp_path / "missing.pem", setting="SUITCASE_GATEWAY_MQTT")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"mqtt\.ca_file .* is not a CA certificate in PEM form"):
        client_context(ca_file=junk, setting="mqtt")
    with pytest.raises(ConfigError, match=r"mqtt\.ca_pem is not a CA certificate"):
        client_context(
            ca_pem="-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n", setting="mqtt"
        )
    with pytest.raises(ConfigError, match=r"SUITCASE_SERVER_MQTT_KEY_FILE .* matching"):
        client_context(
            ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.server.key, setting="SUITCASE_SERVER_MQTT"
        )
    with pytest.raises(ConfigError, match="go together"):
        client_context(ca_file=pki.ca, cert_file=pki.client_cert, setting="SUITCASE_SERVER_MQTT")
