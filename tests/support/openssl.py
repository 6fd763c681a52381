"""Checks with the `openssl` CLI (3.x): a tool nobody on this project wrote judges our certificates.

Every helper writes its inputs to files under a caller-given directory and returns the completed
process (or its text), so tests can assert on exit status and output. Passwords go through the
environment (`-passin env:...`), never the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

_PASSWORD_ENV = "HVREPLICA_TEST_PFX_PASSWORD"


def openssl_binary() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise RuntimeError("the openssl CLI is required by these tests: apt-get install openssl")
    return found


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `openssl <args>`; never raises on a non-zero exit (tests assert on it)."""
    return subprocess.run(
        [openssl_binary(), *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def verify(
    directory: Path,
    ca_pem: str,
    cert_pem: str,
    *,
    purpose: str,
    hostname: str | None = None,
    attime: datetime | None = None,
) -> subprocess.CompletedProcess[str]:
    """`openssl verify -CAfile ca -purpose <purpose> [-verify_hostname h] [-attime t] cert`."""
    args = ["verify", "-CAfile", str(write(directory, "verify-ca.pem", ca_pem)), "-purpose", purpose]
    if hostname is not None:
        args += ["-verify_hostname", hostname]
    if attime is not None:
        args += ["-attime", str(int(attime.timestamp()))]
    return run(*args, str(write(directory, "verify-cert.pem", cert_pem)))


def x509_text(directory: Path, cert_pem: str) -> str:
    """`openssl x509 -text -noout` of a certificate; raises when openssl cannot read it."""
    result = run("x509", "-in", str(write(directory, "text-cert.pem", cert_pem)), "-text", "-noout")
    if result.returncode != 0:
        raise AssertionError(f"openssl x509 failed: {result.stderr}")
    return result.stdout


def pkcs12_info(directory: Path, pfx: bytes, password: str) -> subprocess.CompletedProcess[str]:
    """`openssl pkcs12 -info -nokeys` (algorithms, MAC, bag attributes, certificates)."""
    path = write(directory, "info.pfx", pfx)
    return run("pkcs12", "-info", "-nokeys", "-in", str(path), "-passin", f"env:{_PASSWORD_ENV}",
               env={_PASSWORD_ENV: password})


def pkcs12_key_matches(directory: Path, pfx: bytes, password: str, cert_pem: str) -> bool:
    """Whether the key openssl extracts from the PFX has the certificate's public key."""
    path = write(directory, "keycheck.pfx", pfx)
    key = run("pkcs12", "-in", str(path), "-nocerts", "-nodes", "-passin", f"env:{_PASSWORD_ENV}",
              env={_PASSWORD_ENV: password})
    if key.returncode != 0:
        return False
    key_pub = run("pkey", "-in", str(write(directory, "keycheck.key", key.stdout)), "-pubout")
    cert_pub = run("x509", "-in", str(write(directory, "keycheck.pem", cert_pem)), "-pubkey", "-noout")
    return key_pub.returncode == 0 and key_pub.stdout.strip() == cert_pub.stdout.strip()
