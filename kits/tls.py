"""TLS for every MQTT client we ship, and the checks a production setting must pass.

One way to build the client's TLS context (the gateway's own client, the server's listener and
broker admin, the edge agent all use :func:`client_context`): the broker's certificate must chain
to the given CA (or the system's CAs when none is given) and name the host connected to; TLS 1.2
at least; an optional client certificate and key. Every problem names the setting and the fix.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Protocol

from kits.errors import ConfigError

__all__ = [
    "KNOWN_DEFAULT_SECRETS",
    "MIN_SECRET_LENGTH",
    "TlsFileSettings",
    "check_tls_files",
    "client_context",
    "refuse_insecure_production",
    "secret_problem",
]

# Secrets that ship in examples or documentation, and therefore are no secrets at all.
KNOWN_DEFAULT_SECRETS = frozenset({"changethis", "changeme", "secret", "password", "suitcase", "admin"})
MIN_SECRET_LENGTH = 16


def secret_problem(value: str | None) -> str | None:
    """Return why ``value`` is not fit to be a production secret, or None when it is."""
    if not value:
        return "it is not set"
    if value.lower() in KNOWN_DEFAULT_SECRETS:
        return "it is a well-known default"
    if len(value) < MIN_SECRET_LENGTH:
        return f"it is shorter than {MIN_SECRET_LENGTH} characters"
    return None


class TlsFileSettings(Protocol):
    """The MQTT TLS settings the gateway and the server share."""

    @property
    def mqtt_tls(self) -> bool: ...
    @property
    def mqtt_ca_file(self) -> Path | None: ...
    @property
    def mqtt_cert_file(self) -> Path | None: ...
    @property
    def mqtt_key_file(self) -> Path | None: ...


def check_tls_files(env_prefix: str, settings: TlsFileSettings) -> None:
    """Refuse TLS files given with TLS off, and a client certificate without its key (or the
    reverse), for the settings whose variables start with ``env_prefix``.

    Raises:
        ValueError: naming the variables to set.
    """
    files = {
        "mqtt_ca_file": settings.mqtt_ca_file,
        "mqtt_cert_file": settings.mqtt_cert_file,
        "mqtt_key_file": settings.mqtt_key_file,
    }
    given = [name for name, value in files.items() if value]
    if given and not settings.mqtt_tls:
        raise ValueError(
            f"{', '.join(given)} is set but mqtt_tls is off: set {env_prefix}MQTT_TLS=true and "
            f"{env_prefix}MQTT_PORT to the broker's TLS listener (usually 8883)"
        )
    if (settings.mqtt_cert_file is None) != (settings.mqtt_key_file is None):
        raise ValueError(
            f"{env_prefix}MQTT_CERT_FILE and {env_prefix}MQTT_KEY_FILE go together: set both or neither"
        )


def refuse_insecure_production(env_prefix: str, problems: list[str]) -> None:
    """Refuse to start in production while ``problems`` (each with its fix) remain.

    Raises:
        ValueError: listing every problem at once.
    """
    if problems:
        raise ValueError(
            "production refuses to start:\n- "
            + "\n- ".join(problems)
            + f"\n(or set {env_prefix}ENVIRONMENT=development for a trial that is not secure)"
        )


def client_context(
    *,
    ca_file: Path | str | None = None,
    ca_pem: str | None = None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
    setting: str = "mqtt",
) -> ssl.SSLContext:
    """Return a client TLS context that checks the server's certificate and host name.

    Args:
        ca_file: PEM file of the CA that signed the broker's certificate; with neither this nor
            ``ca_pem``, the system's CAs.
        ca_pem: the same CA as PEM text (a device gets it in its config from the server).
        cert_file: the client's certificate (PEM), for a broker that asks for one.
        key_file: its private key (PEM, unencrypted).
        setting: the prefix of the settings named in errors: an environment prefix such as
            ``SUITCASE_GATEWAY_MQTT`` (names ``SUITCASE_GATEWAY_MQTT_CA_FILE``) or a config
            section such as ``mqtt`` (names ``mqtt.ca_file``).

    Raises:
        ConfigError: a file is missing or not what it should be; the message names the setting.
    """
    ca_name, cert_name, key_name = (_name(setting, field) for field in ("ca_file", "cert_file", "key_file"))
    if (cert_file is None) != (key_file is None):
        raise ConfigError(
            f"{cert_name} and {key_name} go together: set both (the client "
            "certificate and its key) or neither"
        )
    # PROTOCOL_TLS_CLIENT checks the certificate chain and the host name by default.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is None and ca_pem is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:  # only the CA given is trusted, not the system's
        try:
            if ca_file is not None:
                context.load_verify_locations(cafile=str(ca_file))
            if ca_pem is not None:
                context.load_verify_locations(cadata=ca_pem)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{ca_name} {str(ca_file)!r} does not exist: give the path of the PEM file of "
                "the CA that signed the broker's certificate (`suitcase services up` writes it)"
            ) from exc
        except (ssl.SSLError, OSError, ValueError) as exc:
            which = f"{ca_name} {str(ca_file)!r}" if ca_file else f"the CA in {_name(setting, 'ca_pem')}"
            raise ConfigError(
                f"{which} is not a CA certificate in PEM form ({exc}): give the CA's "
                "certificate (-----BEGIN CERTIFICATE-----), not a key or a server certificate bundle"
            ) from exc
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{cert_name} {str(cert_file)!r} or {key_name} {str(key_file)!r} does "
                "not exist: give the paths of the client certificate and its key (PEM)"
            ) from exc
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{cert_name} {str(cert_file)!r} and {key_name} {str(key_file)!r} are "
                f"not a certificate and its matching unencrypted key in PEM form ({exc}): check that the "
                "key belongs to the certificate"
            ) from exc
    return context


def _name(setting: str, field: str) -> str:
    return f"{setting}_{field.upper()}" if setting.isupper() else f"{setting}.{field}"
