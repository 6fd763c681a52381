"""Stand-ins for the root CAs a fresh Windows Server has in LocalMachine\\Root.

The real certificates cannot be shipped (and their keys are not ours), so each stand-in is a self-signed
certificate with the real root's subject, friendly name and validity window - expired ones included, as
Windows keeps them - so client code that lists, filters or removes roots meets a realistic, non-empty
store. Keys are Ed25519 derived from the subject and signatures are deterministic, so every host and every
run gets byte-identical certificates (the same thumbprints on all hosts, as with the real roots); the
thumbprints differ from the real ones.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class StockRoot:
    """One stock root: its subject as (attribute, value) pairs, most general first, validity and the
    FriendlyName Windows shows for it."""

    subject: tuple[tuple[str, str], ...]
    not_before: dt.datetime
    not_after: dt.datetime
    friendly_name: str


_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "DC": NameOID.DOMAIN_COMPONENT,
}
_MS_REDMOND = (("C", "US"), ("S", "Washington"), ("L", "Redmond"), ("O", "Microsoft Corporation"))
_DIGICERT = (("C", "US"), ("O", "DigiCert Inc"), ("OU", "www.digicert.com"))


def _utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


# A representative subset of a fresh Windows Server 2016-2022 LocalMachine\Root: the Microsoft, Thawte and
# VeriSign legacy roots ship with the OS; the DigiCert, Baltimore and VeriSign G5 roots are fetched by the
# automatic root update on first use and are usually present on a patched image.
STOCK_ROOTS: tuple[StockRoot, ...] = (
    StockRoot(
        (
            ("OU", "Copyright (c) 1997 Microsoft Corp."),
            ("OU", "Microsoft Corporation"),
            ("CN", "Microsoft Root Authority"),
        ),
        _utc(1997, 1, 10, 7),
        _utc(2020, 12, 31, 7),
        "Microsoft Root Authority",
    ),
    StockRoot(
        (("DC", "com"), ("DC", "microsoft"), ("CN", "Microsoft Root Certificate Authority")),
        _utc(2001, 5, 9, 23, 19, 22),
        _utc(2021, 5, 9, 23, 28, 13),
        "Microsoft Root Certificate Authority",
    ),
    StockRoot(
        (*_MS_REDMOND, ("CN", "Microsoft Root Certificate Authority 2010")),
        _utc(2010, 6, 23, 21, 57, 24),
        _utc(2035, 6, 23, 22, 4, 1),
        "Microsoft Root Certificate Authority 2010",
    ),
    StockRoot(
        (*_MS_REDMOND, ("CN", "Microsoft Root Certificate Authority 2011")),
        _utc(2011, 3, 22, 22, 5, 28),
        _utc(2036, 3, 22, 22, 13, 4),
        "Microsoft Root Certificate Authority 2011",
    ),
    StockRoot(
        (
            ("O", "MSFT"),
            ("OU", "Copyright (c) 1997 Microsoft Corp."),
            ("CN", "Microsoft Authenticode(tm) Root Authority"),
        ),
        _utc(1995, 1, 1),
        _utc(1999, 12, 31, 23, 59, 59),
        "Microsoft Authenticode(tm) Root",
    ),
    StockRoot(
        (
            ("O", "Copyright (c) 1997 Microsoft Corp."),
            ("OU", "Microsoft Corporation"),
            ("OU", "Microsoft Time Stamping Service Root"),
        ),
        _utc(1997, 5, 13, 16, 46, 40),
        _utc(1999, 12, 30, 7),
        "Microsoft Timestamp Root",
    ),
    StockRoot(
        (
            ("C", "ZA"),
            ("S", "Western Cape"),
            ("L", "Durbanville"),
            ("O", "Thawte"),
            ("OU", "Thawte Certification"),
            ("CN", "Thawte Timestamping CA"),
        ),
        _utc(1997, 1, 1),
        _utc(2020, 12, 31, 23, 59, 59),
        "Thawte Timestamping CA",
    ),
    StockRoot(
        (
            ("OU", "NO LIABILITY ACCEPTED, (c)97 VeriSign, Inc."),
            ("OU", "VeriSign Time Stamping Service Root"),
            ("OU", "VeriSign, Inc."),
            ("O", "VeriSign Trust Network"),
        ),
        _utc(1997, 5, 12),
        _utc(2004, 1, 7, 23, 59, 59),
        "VeriSign Time Stamping CA",
    ),
    StockRoot(
        (
            ("C", "US"),
            ("O", "VeriSign, Inc."),
            ("OU", "VeriSign Trust Network"),
            ("OU", "(c) 2006 VeriSign, Inc. - For authorized use only"),
            ("CN", "VeriSign Class 3 Public Primary Certification Authority - G5"),
        ),
        _utc(2006, 11, 8),
        _utc(2036, 7, 16, 23, 59, 59),
        "VeriSign",
    ),
    StockRoot(
        (("C", "IE"), ("O", "Baltimore"), ("OU", "CyberTrust"), ("CN", "Baltimore CyberTrust Root")),
        _utc(2000, 5, 12, 18, 46),
        _utc(2025, 5, 12, 23, 59),
        "Baltimore CyberTrust Root",
    ),
    StockRoot(
        (*_DIGICERT, ("CN", "DigiCert Global Root CA")), _utc(2006, 11, 10), _utc(2031, 11, 10), "DigiCert"
    ),
    StockRoot(
        (*_DIGICERT, ("CN", "DigiCert Global Root G2")),
        _utc(2013, 8, 1, 12),
        _utc(2038, 1, 15, 12),
        "DigiCert Global Root G2",
    ),
    StockRoot(
        (*_DIGICERT, ("CN", "DigiCert Assured ID Root CA")),
        _utc(2006, 11, 10),
        _utc(2031, 11, 10),
        "DigiCert",
    ),
)


def _name(root: StockRoot) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[label], value) for label, value in root.subject])


def _certificate_der(root: StockRoot) -> bytes:
    name = _name(root)
    seed = hashlib.sha256(name.public_bytes()).digest()
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(seed[:16], "big") >> 1)  # positive, stable
        .not_valid_before(root.not_before)
        .not_valid_after(root.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None)  # Ed25519 signatures are deterministic: identical DER on every run
    )
    return cert.public_bytes(serialization.Encoding.DER)


@functools.cache
def stock_root_certificates() -> tuple[tuple[bytes, str], ...]:
    """(DER, FriendlyName) of every stand-in, built once per process."""
    return tuple((_certificate_der(root), root.friendly_name) for root in STOCK_ROOTS)
