"""Unit tests of hvreplica_provider.pki (pure functions) and hvreplica_provider.clock."""

from __future__ import annotations

import math
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hvreplica_provider import clock, pki

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
SITE_A = pki.Subject("Site A Replica CA", organization="Contoso", organizational_unit="IT", country="DE",
                     state="Berlin", locality="Berlin")


@pytest.fixture(scope="module")
def ca() -> pki.IssuedCertificate:
    return pki.create_ca(SITE_A, 2048, 3650, NOW)


@pytest.fixture(scope="module")
def host(ca: pki.IssuedCertificate) -> pki.IssuedCertificate:
    return pki.issue_host_certificate(
        pki.load_certificate(ca.cert_pem), pki.load_private_key(ca.private_key_pem),
        "hv1.site-a.example", ["broker.site-a.example"], 2048, 730, NOW,
    )


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def test_ca_profile(ca: pki.IssuedCertificate) -> None:
    cert = pki.load_certificate(ca.cert_pem)
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.key_encipherment
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "DE"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "IT"
    assert pki.issued_by(cert, cert)  # self-signed
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    assert pki.is_ca(cert) and pki.may_sign_certificates(cert)


def test_host_profile(ca: pki.IssuedCertificate, host: pki.IssuedCertificate) -> None:
    ca_cert, cert = pki.load_certificate(ca.cert_pem), pki.load_certificate(host.cert_pem)
    assert pki.common_name(cert) == "hv1.site-a.example"
    assert pki.dns_names(cert) == ["hv1.site-a.example", "broker.site-a.example"]
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca_cert, x509.SubjectKeyIdentifier).value.digest
    expected_ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert ext(cert, x509.SubjectKeyIdentifier).value == expected_ski
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.issuer == ca_cert.subject
    assert pki.issued_by(cert, ca_cert)
    assert cert.serial_number > 0
    assert cert.not_valid_before_utc == NOW - pki.CLOCK_SKEW_ALLOWANCE
    assert cert.not_valid_after_utc == NOW + timedelta(days=730)
    assert pki.key_matches_certificate(pki.load_private_key(host.private_key_pem), cert)


def test_serials_are_random_and_positive(ca: pki.IssuedCertificate) -> None:
    ca_cert, ca_key = pki.load_certificate(ca.cert_pem), pki.load_private_key(ca.private_key_pem)
    serials = {
        pki.load_certificate(
            pki.issue_host_certificate(ca_cert, ca_key, "h.example.org", [], 2048, 1, NOW).cert_pem
        ).serial_number
        for _ in range(2)
    }
    assert len(serials) == 2 and all(serial > 2**64 for serial in serials)


def test_duplicate_names_appear_once_in_san(ca: pki.IssuedCertificate) -> None:
    issued = pki.issue_host_certificate(
        pki.load_certificate(ca.cert_pem), pki.load_private_key(ca.private_key_pem),
        "h.example.org", ["H.EXAMPLE.ORG", "b.example.org"], 2048, 10, NOW,
    )
    assert pki.dns_names(pki.load_certificate(issued.cert_pem)) == ["h.example.org", "b.example.org"]


def test_describe_thumbprint_serial_and_times(host: pki.IssuedCertificate) -> None:
    cert = pki.load_certificate(host.cert_pem)
    info = host.info
    assert info.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert len(info.thumbprint) == 40 and info.thumbprint.isupper()
    assert int(info.serial_number, 16) == cert.serial_number
    assert pki.iso_utc(info.not_after) == "2028-05-31T12:00:00Z"
    assert pki.parse_iso_utc("2028-05-31T12:00:00Z") == info.not_after
    assert pki.parse_iso_utc("2028-05-31T14:00:00+02:00") == info.not_after
    assert pki.parse_iso_utc("2028-05-31T12:00:00") == info.not_after


def test_generate_rsa_key_sizes() -> None:
    assert pki.generate_rsa_key(3072).key_size == 3072
    with pytest.raises(ValueError, match="1024 is not supported"):
        pki.generate_rsa_key(1024)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("192.0.2.10", "IP address"),
        ("2001:db8::1", "IP address"),
        ("hv1", "single label"),
        ("*.site-a.example", "wildcard"),
        ("hv_1.site-a.example", "label 'hv_1'"),
        ("-hv1.site-a.example", "label '-hv1'"),
        ("hv1-.site-a.example", "label 'hv1-'"),
        ("hv1..example", "label ''"),
        ("a" * 64 + ".example", "label"),
        (".".join(["abcdefghi"] * 25) + ".example", "at most 253"),
        ("hv1.example.", "trailing dot"),
        ("10.0.0", "all digits"),
        ("", "non-empty"),
        (42, "non-empty string"),
    ],
)
def test_dns_name_problem_rejects(name: object, fragment: str) -> None:
    problem = pki.dns_name_problem(name)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize("name", ["hv1.site-a.example", "HV-01.Corp.Contoso.com", "a.b", "x1.y2.z3.example"])
def test_dns_name_problem_accepts(name: str) -> None:
    assert pki.dns_name_problem(name) is None


def test_country_problem() -> None:
    assert pki.country_problem("DE") is None
    for bad in ("DEU", "D", "1A", "", None):
        assert "two-letter" in (pki.country_problem(bad) or "")


def test_covers_dns_name(host: pki.IssuedCertificate) -> None:
    cert = pki.load_certificate(host.cert_pem)
    assert pki.covers_dns_name(cert, "HV1.site-a.example")
    assert pki.covers_dns_name(cert, "broker.site-a.example")
    assert pki.covers_dns_name(cert, "hv1.site-a.example.")
    assert not pki.covers_dns_name(cert, "hv2.site-a.example")
    assert not pki.covers_dns_name(cert, "site-a.example")


def _self_signed(names: list[str], cn: str, *, ekus: list[x509.ObjectIdentifier] | None = None,
                 crl: str | None = None) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (x509.CertificateBuilder()
               .subject_name(pki.Subject(cn).to_name()).issuer_name(pki.Subject(cn).to_name())
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), False)
    if crl:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), False)
    return builder.sign(key, hashes.SHA256())


def test_covers_wildcard_and_common_name() -> None:
    wildcard = _self_signed(["*.site-b.example"], "Replica")
    assert pki.covers_dns_name(wildcard, "hv9.site-b.example")
    assert not pki.covers_dns_name(wildcard, "a.hv9.site-b.example")
    assert not pki.covers_dns_name(wildcard, "site-b.example")
    cn_only = _self_signed([], "hv5.site-b.example")
    assert pki.covers_dns_name(cn_only, "hv5.site-b.example")


def test_missing_ekus_and_crl_points(host: pki.IssuedCertificate) -> None:
    assert pki.missing_ekus(pki.load_certificate(host.cert_pem)) == []
    assert pki.missing_ekus(_self_signed([], "x", ekus=[ExtendedKeyUsageOID.SERVER_AUTH])) == [
        "Client Authentication"]
    assert pki.missing_ekus(_self_signed([], "x")) == ["Server Authentication", "Client Authentication"]
    assert not pki.has_crl_distribution_point(pki.load_certificate(host.cert_pem))
    with_crl = _self_signed([], "x", crl="http://pki.site-a.example/ca.crl")
    assert pki.crl_distribution_points(with_crl) == ["http://pki.site-a.example/ca.crl"]
    assert pki.has_crl_distribution_point(with_crl)


def test_validity_problem(host: pki.IssuedCertificate) -> None:
    cert = pki.load_certificate(host.cert_pem)
    assert pki.validity_problem(cert, NOW) is None
    assert "not valid before" in (pki.validity_problem(cert, NOW - timedelta(hours=1)) or "")
    assert pki.validity_problem(cert, NOW + timedelta(days=731)) == "expired at 2028-05-31T12:00:00Z"


def test_renewal_due() -> None:
    end = NOW + timedelta(days=100)
    assert not pki.renewal_due(end, 30, NOW)
    assert not pki.renewal_due(end, 30, end - timedelta(days=30, seconds=1))
    assert pki.renewal_due(end, 30, end - timedelta(days=30))
    assert pki.renewal_due(end, 0, end + timedelta(days=1))


def test_outlives(ca: pki.IssuedCertificate) -> None:
    ca_cert = pki.load_certificate(ca.cert_pem)
    assert not pki.outlives(NOW, 3650, ca_cert)
    assert pki.outlives(NOW, 3651, ca_cert)
    assert pki.outlives(NOW + timedelta(days=3000), 730, ca_cert)


def test_issued_by_any(ca: pki.IssuedCertificate, host: pki.IssuedCertificate) -> None:
    other = pki.create_ca(pki.Subject("Site B CA"), 2048, 100, NOW)
    cert = pki.load_certificate(host.cert_pem)
    assert pki.issued_by_any(cert, [other.cert_pem, ca.cert_pem])
    assert pki.issued_by_any(cert, [other.cert_pem + ca.cert_pem])  # a bundle
    assert not pki.issued_by_any(cert, [other.cert_pem])
    # Same subject name, different key: the name alone must not pass.
    impostor = pki.create_ca(SITE_A, 2048, 100, NOW)
    assert not pki.issued_by_any(cert, [impostor.cert_pem])


def test_parse_errors_are_clear_and_secret_free(ca: pki.IssuedCertificate) -> None:
    with pytest.raises(ValueError, match="ca_cert_pem is not a PEM certificate"):
        pki.load_certificate("hello", "ca_cert_pem")
    with pytest.raises(ValueError, match="ca_cert_pem does not parse"):
        pki.load_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ca_cert_pem")
    broken_key = ca.private_key_pem[:200] + ca.private_key_pem[260:]
    with pytest.raises(ValueError) as caught:
        pki.load_private_key(broken_key, "ca_private_key_pem")
    text = str(caught.value)
    assert "ca_private_key_pem does not parse" in text
    assert broken_key[40:100] not in text and caught.value.__cause__ is None
    with pytest.raises(ValueError, match="not a PEM private key"):
        pki.load_private_key(ca.cert_pem, "ca_private_key_pem")
    with pytest.raises(ValueError, match="is not an ISO-8601 time"):
        pki.parse_iso_utc("yesterday")


def test_encrypted_private_key_is_refused(ca: pki.IssuedCertificate) -> None:
    from cryptography.hazmat.primitives import serialization

    key = pki.load_private_key(ca.private_key_pem)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"pw")).decode()
    with pytest.raises(ValueError, match="is encrypted"):
        pki.load_private_key(encrypted, "ca_private_key_pem")


@pytest.mark.parametrize("encryption", ["legacy", "aes256"])
def test_pfx_round_trip(ca: pki.IssuedCertificate, host: pki.IssuedCertificate, encryption: str) -> None:
    password = "pässword"
    pfx = pki.export_pfx(host.cert_pem, host.private_key_pem, password, encryption, "HV1")
    opened = pki.load_pfx(pfx, password)
    assert pki.thumbprint(opened.certificate) == host.info.thumbprint
    assert opened.private_key is not None
    assert pki.key_matches_certificate(opened.private_key, opened.certificate)
    # No CA inside: Import-PfxCertificate would put it into a store on its own, unledgered (issue 9).
    assert opened.additional_certificates == []
    assert opened.friendly_name == "HV1"
    with pytest.raises(ValueError, match="password is wrong") as caught:
        pki.load_pfx(pfx, "wrong-password")
    assert "wrong-password" not in str(caught.value)


def test_pfx_rejects_unknown_encryption_and_empty_password(
    ca: pki.IssuedCertificate, host: pki.IssuedCertificate
) -> None:
    with pytest.raises(ValueError, match="unknown PFX encryption 'rc2'"):
        pki.export_pfx(host.cert_pem, host.private_key_pem, "x", "rc2", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        pki.export_pfx(host.cert_pem, host.private_key_pem, "", "legacy", None)


def test_generated_pfx_password_entropy() -> None:
    passwords = {pki.generate_pfx_password() for _ in range(50)}
    assert len(passwords) == 50
    # token_urlsafe: 64-symbol alphabet; 32 symbols carry 192 bits, well above the 128 required.
    assert all(len(p) * math.log2(64) >= 128 and len(p) >= 32 for p in passwords)
    alphabet = set(string.ascii_letters + string.digits + "-_")
    assert all(set(p) <= alphabet for p in passwords)


def test_clock_uses_fake_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.FAKE_NOW_ENV, raising=False)
    real = clock.now()
    assert real.tzinfo is not None and abs(real - datetime.now(UTC)) < timedelta(seconds=5)
    monkeypatch.setenv(clock.FAKE_NOW_ENV, "2031-02-03T04:05:06Z")
    assert clock.now() == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    monkeypatch.setenv(clock.FAKE_NOW_ENV, "2031-02-03T06:05:06+02:00")
    assert clock.now() == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    monkeypatch.setenv(clock.FAKE_NOW_ENV, "soon")
    with pytest.raises(ValueError, match="HVREPLICA_FAKE_NOW='soon' is not an ISO-8601 time"):
        clock.now()


def _external_ca(key: pki.SigningKey, *, with_ski: bool) -> x509.Certificate:
    """A CA made elsewhere (not by create_ca): other key types, maybe without a SubjectKeyIdentifier."""
    name = pki.Subject("External CA").to_name()
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(NOW - timedelta(days=1))
               .not_valid_after(NOW + timedelta(days=900))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    if with_ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    return builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())


@pytest.mark.parametrize(
    ("make_key", "with_ski"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), False),
        (lambda: ec.generate_private_key(ec.SECP256R1()), True),
        (ed25519.Ed25519PrivateKey.generate, True),
    ],
)
def test_host_certificate_from_an_external_ca(make_key: Any, with_ski: bool) -> None:
    key = make_key()
    ca_cert = _external_ca(key, with_ski=with_ski)
    reloaded = pki.load_private_key(pki.private_key_to_pem(key))
    issued = pki.issue_host_certificate(ca_cert, reloaded, "hv1.site-c.example", [], 2048, 30, NOW)
    cert = pki.load_certificate(issued.cert_pem)
    assert pki.issued_by(cert, ca_cert)
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
