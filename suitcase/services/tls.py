"""The broker's TLS files: a CA and a server certificate made with ``openssl``, or checks of given ones.

``openssl`` (Debian package ``openssl``, a dependency of Mosquitto) does the cryptography, so the
install adds no Python library. Keys are EC P-256; certificates name the broker's host in their
subjectAltName, which is what clients check.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kits.errors import ConfigError

__all__ = ["TlsFiles", "check_server_cert", "client_cert", "find_openssl", "make_ca", "make_server_cert"]

_DAYS_CA = 3650
_DAYS_CERT = 825  # the longest life clients such as browsers still accept


@dataclass(frozen=True)
class TlsFiles:
    """The CA certificate clients trust, and the broker's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def find_openssl() -> str:
    """Return the ``openssl`` binary.

    Raises:
        ConfigError: it is not installed.
    """
    found = shutil.which("openssl")
    if found is None:
        raise ConfigError("openssl is not installed: `apt-get install openssl`")
    return found


def _run(args: list[str], what: str) -> str:
    result = subprocess.run([find_openssl(), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"openssl could not {what}: {result.stderr.strip()[-400:]}")
    return result.stdout


def _private(path: Path) -> None:
    path.chmod(0o600)


def make_ca(directory: Path, name: str = "IoT Suitcase CA") -> tuple[Path, Path]:
    """Make a self-signed CA in ``directory``; return (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.crt", directory / "ca.key"
    _run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], "make the CA key")
    _private(key)
    _run(
        [
            "req", "-x509", "-new", "-key", str(key), "-sha256", "-days", str(_DAYS_CA),
            "-subj", f"/CN={name}", "-out", str(cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        "make the CA certificate",
    )  # fmt: skip
    return cert, key


def _san(names: list[str]) -> str:
    entries = []
    for name in names:
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return "subjectAltName=" + ",".join(entries)


def _issue(ca: tuple[Path, Path], cert: Path, key: Path, subject: str, extensions: list[str]) -> None:
    csr = cert.with_suffix(".csr")
    ext = cert.with_suffix(".ext")
    _run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], f"make {key.name}")
    _private(key)
    _run(["req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)], f"make {csr.name}")
    ext.write_text("\n".join(extensions) + "\n")
    try:
        _run(
            [
                "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                "-CAcreateserial", "-days", str(_DAYS_CERT), "-sha256", "-extfile", str(ext),
                "-out", str(cert),
            ],
            f"sign {cert.name}",
        )  # fmt: skip
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
        ca[0].with_suffix(".srl").unlink(missing_ok=True)


def make_server_cert(ca: tuple[Path, Path], directory: Path, hosts: list[str]) -> TlsFiles:
    """Issue the broker's certificate for ``hosts`` (names and addresses) from ``ca``."""
    if not hosts:
        raise ConfigError("the broker's certificate needs at least one host name or address")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "server.crt", directory / "server.key"
    _issue(
        ca,
        cert,
        key,
        f"/CN={hosts[0]}",
        [_san(hosts), "extendedKeyUsage=serverAuth", "keyUsage=critical,digitalSignature,keyAgreement"],
    )
    return TlsFiles(ca=ca[0], cert=cert, key=key)


def client_cert(ca: tuple[Path, Path], directory: Path, name: str) -> tuple[Path, Path]:
    """Issue a client certificate with common name ``name``; return (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _issue(
        ca, cert, key, f"/CN={name}", ["extendedKeyUsage=clientAuth", "keyUsage=critical,digitalSignature"]
    )
    return cert, key


def _public_key(args: list[str], what: str) -> str:
    return _run(args, what).strip()


def check_server_cert(files: TlsFiles, host: str) -> None:
    """Check given TLS files before they are used: the CA signs the cert, the key fits, it names ``host``.

    Raises:
        ConfigError: naming the file, what is wrong and what to do.
    """
    for label, path in (("CA certificate", files.ca), ("certificate", files.cert), ("key", files.key)):
        if not path.is_file():
            raise ConfigError(f"the broker's {label} {path} does not exist: check the path")
    verify = subprocess.run(
        [find_openssl(), "verify", "-CAfile", str(files.ca), str(files.cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    if verify.returncode != 0:
        raise ConfigError(
            f"the certificate {files.cert} is not signed by the CA {files.ca} (or has expired): "
            f"{verify.stdout.strip()} {verify.stderr.strip()[-300:]}: give the CA that issued it"
        )
    cert_key = _public_key(["x509", "-in", str(files.cert), "-noout", "-pubkey"], f"read {files.cert}")
    key_key = _public_key(["pkey", "-in", str(files.key), "-pubout"], f"read the key {files.key}")
    if cert_key != key_key:
        raise ConfigError(
            f"the key {files.key} does not belong to the certificate {files.cert}: "
            "give the key it was made with"
        )
    flag = "-checkip" if _is_ip(host) else "-checkhost"
    out = _run(["x509", "-in", str(files.cert), "-noout", flag, host], f"read {files.cert}")
    if "does NOT match" in out:
        raise ConfigError(
            f"the certificate {files.cert} does not name the host {host!r}, which clients will connect to "
            f"(subjectAltName): issue one for {host!r}, or pass --hostname with a name it has"
        )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def chown_for(path: Path, user: str | None) -> None:
    """Give ``path`` to ``user`` when running as root (a service reads its key after dropping root)."""
    if user is not None and os.geteuid() == 0:
        shutil.chown(path, user, user)
