"""TLS material of the emulated WinRM HTTPS listeners.

A per-state-directory CA (`<state-dir>/winrm-ca.pem`, kept across restarts) issues one server certificate per
host naming its FQDN and its address (SAN DNS + IP), reused across restarts. The same CA issues client
certificates for WinRM certificate authentication: `issue_client_certificate()` (or
`python -m hvsim client-cert`) writes a certificate whose UPN SAN (and CN) name a local user of the host.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

CA_FILE = "winrm-ca.pem"
_CA_KEY_FILE = "winrm-ca.key"
_TLS_DIR = "winrm-tls"
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # szOID_NT_PRINCIPAL_NAME
_KEY_BITS = 2048
_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ensure_ca(state_dir: Path) -> CertPaths:
    """The state directory's WinRM CA, created on first use."""
    paths = CertPaths(state_dir / CA_FILE, state_dir / _CA_KEY_FILE)
    if paths.cert.exists() and paths.key.exists():
        return paths
    state_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "hvsim WinRM CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hvsim"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(paths.key, _key_pem(key))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _load_ca(state_dir: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    paths = ensure_ca(state_dir)
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return cert, key


def _issue(
    state_dir: Path, subject_cn: str, san: list[x509.GeneralName], eku: ExtendedKeyUsageOID, out: CertPaths
) -> CertPaths:
    ca_cert, ca_key = _load_ca(state_dir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out.cert.parent.mkdir(parents=True, exist_ok=True)
    _write_private(out.key, _key_pem(key))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def ensure_server_certificate(state_dir: Path, fqdn: str, address: str) -> CertPaths:
    """The host's listener certificate (SAN DNS=fqdn, IP=address), reused while it still names both."""
    out = CertPaths(state_dir / _TLS_DIR / f"{fqdn}.pem", state_dir / _TLS_DIR / f"{fqdn}.key")
    if out.cert.exists() and out.key.exists():
        cert = x509.load_pem_x509_certificate(out.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if fqdn in san.get_values_for_type(x509.DNSName) and ipaddress.ip_address(
            address
        ) in san.get_values_for_type(x509.IPAddress):
            return out
    san: list[x509.GeneralName] = [x509.DNSName(fqdn), x509.IPAddress(ipaddress.ip_address(address))]
    return _issue(state_dir, fqdn, san, ExtendedKeyUsageOID.SERVER_AUTH, out)


def issue_client_certificate(
    state_dir: str | Path,
    user: str,
    cert_path: str | Path,
    key_path: str | Path,
    upn_suffix: str = "localhost",
) -> CertPaths:
    """A client-authentication certificate from the state directory's CA for local user `user`.

    Its UPN SAN is `user@<upn_suffix>` and its CN is `user`, which is how the emulated listener maps it to
    the local account (as a WinRM ClientCertificate mapping on Windows does). Pass the paths to pypsrp as
    `certificate_pem` / `certificate_key_pem` with `auth="certificate"`.
    """
    upn = x509.OtherName(UPN_OID, _der_utf8_string(f"{user}@{upn_suffix}"))
    return _issue(
        Path(state_dir),
        user,
        [upn],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        CertPaths(Path(cert_path), Path(key_path)),
    )


def _der_utf8_string(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) >= 128:
        raise ValueError("UPN too long")
    return bytes([0x0C, len(data)]) + data


def client_certificate_user(der: bytes) -> str | None:
    """The account a client certificate names: the user part of its UPN SAN, else its subject CN."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == UPN_OID and other.value[:1] == b"\x0c":
                return other.value[2:].decode("utf-8", "replace").split("@", 1)[0]
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None


def server_context(state_dir: Path, paths: CertPaths) -> ssl.SSLContext:
    """TLS context of a listener: its certificate, and client certificates checked against the state CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths.cert, paths.key)
    ctx.load_verify_locations(cafile=str(ensure_ca(state_dir).cert))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # Basic clients present no certificate
    return ctx
