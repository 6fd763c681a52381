"""A small certificate builder for replication tests, with knobs for every broken case the checks must catch.

Keys are RSA 2048 and shared through a small pool: tests pay for key generation once per process.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


@functools.lru_cache(maxsize=8)
def pooled_key(slot: int) -> rsa.RSAPrivateKey:
    """The RSA 2048 key in pool slot `slot` (CAs and leaves use different slots)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @classmethod
    def from_pem(cls, cert_pem: str | bytes, key_pem: str | bytes) -> Issued:
        """Wrap a certificate and key made elsewhere (e.g. hvreplica_provider.pki) to issue from it here."""
        as_bytes = [v.encode() if isinstance(v, str) else v for v in (cert_pem, key_pem)]
        key = serialization.load_pem_private_key(as_bytes[1], password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(x509.load_pem_x509_certificate(as_bytes[0]), key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER, upper-case hex: how Windows names a certificate in its stores."""
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()

    def pfx(self, password: str, chain: tuple[x509.Certificate, ...] = ()) -> bytes:
        return pkcs12.serialize_key_and_certificates(
            b"hvsim-test",
            self.key,
            self.cert,
            list(chain) or None,
            serialization.BestAvailableEncryption(password.encode()),
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(
    common_name: str = "Lab Root CA", *, key_slot: int = 0, days: int = 3650, issuer: Issued | None = None
) -> Issued:
    """A root CA, or an intermediate CA when `issuer` is given."""
    key = pooled_key(key_slot)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_host_cert(
    issuer: Issued | None,
    common_name: str,
    *,
    dns_names: tuple[str, ...] | None = None,
    ekus: tuple[x509.ObjectIdentifier, ...] = (SERVER_AUTH, CLIENT_AUTH),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key_slot: int = 4,
) -> Issued:
    """A host certificate issued by `issuer` (self-signed when None). `dns_names` defaults to the CN; pass ()
    for none. The defaults follow HostCertificate's profile (README.md): both EKUs, digitalSignature +
    keyEncipherment."""
    key = pooled_key(key_slot)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or _now() - dt.timedelta(minutes=5))
        .not_valid_after(not_after or _now() + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
    )
    names = (common_name,) if dns_names is None else dns_names
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)
