"""Pure PKI: keys, a private CA, host certificates, PKCS#12, thumbprints and requirement checks.

No Pulumi imports and no clock of its own: every time-dependent function takes `now`, so the
resource providers (and the tests) decide what "now" is. Errors are `ValueError`s whose text
names what is wrong and never contains key material or passwords.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hvreplica_provider.inputs import PfxEncryption, RsaBits

RSA_KEY_SIZES: tuple[int, ...] = get_args(RsaBits)
PFX_ENCRYPTIONS: tuple[str, ...] = get_args(PfxEncryption)

# Backdating absorbs clock skew between the workstation that issues and the hosts that verify.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
# Iterations: 2048 is what OpenSSL and Windows use for the legacy 3DES profile (old importers
# expect it); the modern profile can afford a much stronger KDF.
_LEGACY_KDF_ROUNDS = 2048
_AES256_KDF_ROUNDS = 100_000
# 24 random bytes -> 32 URL-safe characters, 192 bits of entropy.
_GENERATED_PASSWORD_BYTES = 24

# Matched with fullmatch only: `$` also matches before a trailing newline, which smuggled line breaks
# into certificates and the hosts file.
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
# RFC 5280 ub-common-name: a longer CN makes certificate creation fail.
MAX_COMMON_NAME = 64

SigningKey = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
)


@dataclass(frozen=True)
class Subject:
    """Distinguished-name fields of a certificate subject (only common_name is required)."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    state: str | None = None
    locality: str | None = None

    def to_name(self) -> x509.Name:
        fields = [
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.COMMON_NAME, self.common_name),
        ]
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in fields if value])


@dataclass(frozen=True)
class CertificateInfo:
    """The facts about a certificate that the resources expose as outputs."""

    thumbprint: str
    serial_number: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class IssuedCertificate:
    """A freshly issued certificate and its private key, both PEM."""

    cert_pem: str
    private_key_pem: str

    @property
    def info(self) -> CertificateInfo:
        return describe(self.cert_pem)


@dataclass(frozen=True)
class PfxContents:
    """What a PKCS#12 file holds, after it was opened with its password."""

    certificate: x509.Certificate
    private_key: SigningKey | None
    additional_certificates: list[x509.Certificate]
    friendly_name: str | None


# ---------------------------------------------------------------------------------------------
# Keys and certificates


def generate_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """A new RSA key of one of the supported sizes."""
    if bits not in RSA_KEY_SIZES:
        sizes = ", ".join(map(str, RSA_KEY_SIZES))
        raise ValueError(f"RSA key size {bits} is not supported; use one of {sizes}")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_to_pem(key: SigningKey) -> str:
    """PKCS#8 PEM, unencrypted (the provider stores it as a Pulumi secret)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def certificate_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def create_ca(subject: Subject, rsa_bits: int, validity_days: int, now: datetime) -> IssuedCertificate:
    """A self-signed root CA: CA:TRUE (critical), keyCertSign + cRLSign (critical), SKI = AKI."""
    key = generate_rsa_key(rsa_bits)
    name = subject.to_name()
    not_before, not_after = _validity(now, validity_days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(certificate_to_pem(cert), private_key_to_pem(key))


def issue_host_certificate(
    ca_cert: x509.Certificate,
    ca_key: SigningKey,
    fqdn: str,
    additional_dns_names: Sequence[str],
    rsa_bits: int,
    validity_days: int,
    now: datetime,
) -> IssuedCertificate:
    """A Hyper-V Replica host certificate signed by the CA.

    Profile: CN = fqdn, SAN DNS = fqdn + additional names, KeyUsage digitalSignature +
    keyEncipherment (critical), EKU serverAuth + clientAuth, CA:FALSE (critical), SKI, AKI from
    the CA's SKI, SHA-256. Callers check the validity against the CA first (see
    `outlives`): this function does not clamp silently.
    """
    key = generate_rsa_key(rsa_bits)
    not_before, not_after = _validity(now, validity_days)
    names = _unique_names([fqdn, *additional_dns_names])
    cert = (
        x509.CertificateBuilder()
        .subject_name(Subject(common_name=fqdn).to_name())
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
        .sign(ca_key, _signature_hash(ca_key))
    )
    return IssuedCertificate(certificate_to_pem(cert), private_key_to_pem(key))


def _validity(now: datetime, validity_days: int) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(microsecond=0)
    return start - CLOCK_SKEW_ALLOWANCE, start + timedelta(days=validity_days)


def _key_usage(*, key_cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not key_cert_sign,
        content_commitment=False,
        key_encipherment=not key_cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _signature_hash(key: SigningKey) -> hashes.SHA256 | None:
    # EdDSA keys hash internally and reject an explicit digest.
    return None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for name in names:
        if name.lower() not in seen:
            seen.add(name.lower())
            unique.append(name)
    return unique


def validity_end(now: datetime, validity_days: int) -> datetime:
    """The not_after a certificate issued at `now` would get."""
    return _validity(now, validity_days)[1]


def outlives(now: datetime, validity_days: int, ca_cert: x509.Certificate) -> bool:
    """Whether a certificate issued now for `validity_days` would expire after its CA."""
    return validity_end(now, validity_days) > ca_cert.not_valid_after_utc


# ---------------------------------------------------------------------------------------------
# Parsing and facts


def load_certificate(pem: str, what: str = "certificate") -> x509.Certificate:
    """The first certificate of a PEM text; `what` names the input in the error."""
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"{what} is not a PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)")
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"{what} does not parse as a PEM certificate: {exc}") from None


def load_certificates(pem: str, what: str = "certificate bundle") -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one)."""
    load_certificate(pem, what)  # uniform error for a text without any certificate
    try:
        return x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError as exc:
        raise ValueError(f"{what} does not parse as PEM certificates: {exc}") from None


def load_private_key(pem: str, what: str = "private key") -> SigningKey:
    """An unencrypted PEM private key. The error never echoes the key or the library's detail."""
    if not isinstance(pem, str) or "PRIVATE KEY-----" not in pem:
        raise ValueError(f"{what} is not a PEM private key (expected a '... PRIVATE KEY-----' block)")
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except TypeError:
        raise ValueError(f"{what} is encrypted; supply it unencrypted (it is stored as a secret)") from None
    except (ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} does not parse as a PEM private key") from None
    if not isinstance(key, SigningKey):
        raise ValueError(f"{what} is a {type(key).__name__}; use an RSA, EC or EdDSA key")
    return key


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER encoding, upper-case hex: what Windows shows as Thumbprint."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def normalise_thumbprint(value: str) -> str:
    """Upper-case hex without the spaces and invisible characters copied from the certificate MMC."""
    return "".join(ch for ch in value if ch in "0123456789abcdefABCDEF").upper()


def serial_hex(cert: x509.Certificate) -> str:
    """Serial number as upper-case hex without leading zeros, as Windows shows SerialNumber."""
    return format(cert.serial_number, "X")


def describe(cert_pem: str) -> CertificateInfo:
    cert = load_certificate(cert_pem)
    return CertificateInfo(
        thumbprint=thumbprint(cert),
        serial_number=serial_hex(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix, to the second: 2026-11-28T01:15:00Z."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str) -> datetime:
    """Inverse of `iso_utc`; also accepts offsets. A naive time is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        raise ValueError(f"{text!r} is not an ISO-8601 time such as 2026-11-28T01:15:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def renewal_due(not_after: datetime, early_renewal_days: int, now: datetime) -> bool:
    """True once `now` is inside the renewal window before expiry (or past expiry)."""
    return now >= not_after - timedelta(days=early_renewal_days)


def is_ca(cert: x509.Certificate) -> bool:
    """BasicConstraints says CA:TRUE."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def may_sign_certificates(cert: x509.Certificate) -> bool:
    """KeyUsage, when present, allows keyCertSign."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True


def key_matches_certificate(key: SigningKey, cert: x509.Certificate) -> bool:
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


def dns_names(cert: x509.Certificate) -> list[str]:
    """The DNS names of the SubjectAlternativeName extension (empty when absent)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def common_name(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def covers_dns_name(cert: x509.Certificate, name: str) -> bool:
    """Whether the certificate is valid for `name`, the way Hyper-V Replica (and RFC 6125) match it.

    With a SubjectAlternativeName, only its DNS names count; the subject CN is used only when there is no
    SAN at all. A wildcard matches exactly one left-most label. Comparison is case-insensitive.
    """
    wanted = name.rstrip(".").lower()
    cn = common_name(cert)
    candidates = dns_names(cert) if _has_san(cert) else ([cn] if cn else [])
    return any(_name_matches(str(pattern).lower(), wanted) for pattern in candidates)


def _has_san(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return True


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def missing_ekus(cert: x509.Certificate) -> list[str]:
    """Which of Server Authentication / Client Authentication the certificate lacks."""
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    wanted = {"Server Authentication": ExtendedKeyUsageOID.SERVER_AUTH,
              "Client Authentication": ExtendedKeyUsageOID.CLIENT_AUTH}
    return [label for label, oid in wanted.items() if oid not in usages]


def validity_problem(cert: x509.Certificate, now: datetime) -> str | None:
    """Why the certificate is not valid at `now`, or None when it is."""
    if now < cert.not_valid_before_utc:
        return f"is not valid before {iso_utc(cert.not_valid_before_utc)}"
    if now > cert.not_valid_after_utc:
        return f"expired at {iso_utc(cert.not_valid_after_utc)}"
    return None


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """The certificate names the CA as issuer and carries a valid signature by its key."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issued_by_any(cert: x509.Certificate, ca_pems: Iterable[str]) -> bool:
    """Signed by one of the CA certificates in `ca_pems` (each PEM may be a bundle)."""
    cas = [ca for pem in ca_pems for ca in load_certificates(pem, "trusted CA certificate")]
    return any(issued_by(cert, ca) for ca in cas)


def crl_distribution_points(cert: x509.Certificate) -> list[str]:
    """URIs of the CRLDistributionPoints extension (empty when absent)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [
        str(general_name.value)
        for point in points
        for general_name in (point.full_name or [])
        if isinstance(general_name, x509.UniformResourceIdentifier)
    ]


def has_crl_distribution_point(cert: x509.Certificate) -> bool:
    return bool(crl_distribution_points(cert))


# ---------------------------------------------------------------------------------------------
# Names


def dns_name_problem(name: object) -> str | None:
    """Why `name` is not a usable host DNS name, or None when it is.

    Rejected: IP addresses, single labels, wildcards, empty or bad labels (letters, digits and
    inner hyphens, at most 63 characters each), an all-numeric top-level label, and names over
    253 characters.
    """
    if not isinstance(name, str) or not name:
        return "it must be a non-empty string"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "it is an IP address; certificates and Hyper-V Replica need the host's DNS name"
    if "*" in name:
        return "wildcards are not allowed; give the exact host name"
    if len(name) > 253:
        return f"it is {len(name)} characters long; a DNS name has at most 253"
    if name.endswith("."):
        return "drop the trailing dot"
    labels = name.split(".")
    if len(labels) < 2:
        return "it is a single label; give the fully qualified name (host.domain.tld)"
    for label in labels:
        if not is_dns_label(label):
            return (f"label {label!r} is invalid; use 1-63 letters, digits or hyphens, "
                    "not starting or ending with a hyphen")
    if labels[-1].isdigit():
        return "the last label is all digits; give a DNS name, not an address"
    return None


def is_dns_label(label: str) -> bool:
    """1-63 ASCII letters, digits or inner hyphens, and nothing else (no trailing newline)."""
    return _DNS_LABEL.fullmatch(label) is not None


def country_problem(country: object) -> str | None:
    if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
        return "it must be a two-letter ISO 3166 country code such as 'DE' or 'US'"
    return None


# ---------------------------------------------------------------------------------------------
# PKCS#12


def generate_pfx_password() -> str:
    """A random PFX password with 192 bits of entropy (URL-safe, so it survives any shell)."""
    return secrets.token_urlsafe(_GENERATED_PASSWORD_BYTES)


def export_pfx(
    cert_pem: str,
    private_key_pem: str,
    password: str,
    encryption: PfxEncryption,
    friendly_name: str | None,
) -> bytes:
    """PKCS#12 with the certificate, its key and the friendly name, and WITHOUT the CA certificate:
    Import-PfxCertificate would put a CA it finds inside into a store of its own choosing, outside the
    ledger; the CA is imported into LocalMachine\\Root explicitly (and ledgered) instead.

    `legacy`: PBE-SHA1-3DES for keys and certificates with a SHA-1 MAC (Windows Server 2012 R2 and
    2016 import only this); `aes256`: PBES2 (PBKDF2-SHA256) AES-256-CBC with a SHA-256 MAC.
    """
    if not password:
        raise ValueError("a PFX password must not be empty")
    problem = pfx_password_problem(password)
    if problem:
        raise ValueError(problem)
    if encryption == "legacy":
        builder = (serialization.PrivateFormat.PKCS12.encryption_builder()
                   .kdf_rounds(_LEGACY_KDF_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                   .hmac_hash(hashes.SHA1()))
    elif encryption == "aes256":
        builder = (serialization.PrivateFormat.PKCS12.encryption_builder()
                   .kdf_rounds(_AES256_KDF_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                   .hmac_hash(hashes.SHA256()))
    else:
        raise ValueError(f"unknown PFX encryption {encryption!r}; use one of {', '.join(PFX_ENCRYPTIONS)}")
    return pkcs12.serialize_key_and_certificates(
        name=friendly_name.encode("utf-8") if friendly_name else None,
        key=load_private_key(private_key_pem),
        cert=load_certificate(cert_pem),
        cas=None,
        encryption_algorithm=builder.build(password.encode("utf-8")),
    )


def pfx_password_problem(password: str) -> str | None:
    """Why `password` cannot protect a PFX, or None: the PKCS#12 code takes it as a C string, and a NUL
    character in it makes the library abort (a Rust panic, not an exception)."""
    if "\x00" in password:
        return "the PFX password contains a NUL character, which PKCS#12 passwords cannot hold"
    return None


def load_pfx(data: bytes, password: str) -> PfxContents:
    """Open a PKCS#12 blob. The error says what to check and never repeats the password."""
    problem = pfx_password_problem(password)
    if problem:
        raise ValueError(problem)
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode("utf-8"))
    except ValueError:
        raise ValueError("the PFX does not open: either it is not PKCS#12 or the password is wrong") from None
    if bundle.cert is None:
        raise ValueError("the PFX holds no certificate with a key")
    friendly = bundle.cert.friendly_name
    key = bundle.key
    return PfxContents(
        certificate=bundle.cert.certificate,
        private_key=key if isinstance(key, SigningKey) else None,
        additional_certificates=[extra.certificate for extra in bundle.additional_certs],
        friendly_name=friendly.decode("utf-8") if friendly else None,
    )
