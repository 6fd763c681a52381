"""The certificates and PFX files the providers produce, judged by the `openssl` CLI."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hvreplica_provider import CertificateAuthorityProvider, HostCertificateProvider, pki
from tests.support import openssl

SITES = {"a": ("Site A Replica CA", "hv1.site-a.example"), "b": ("Site B Replica CA", "hv2.site-b.example")}


def create_ca(name: str, rsa_bits: float = 2048.0) -> dict[str, Any]:
    provider = CertificateAuthorityProvider()
    checked = provider.check({}, {"common_name": name, "rsa_bits": rsa_bits, "validity_days": 3650.0})
    assert checked.failures == []
    return provider.create(checked.inputs).outs


def create_host(ca: dict[str, Any], fqdn: str, **extra: Any) -> dict[str, Any]:
    provider = HostCertificateProvider()
    news = {"ca_cert_pem": ca["cert_pem"], "ca_private_key_pem": ca["private_key_pem"], "fqdn": fqdn,
            "rsa_bits": 2048.0, **extra}
    checked = provider.check({}, news)
    assert checked.failures == []
    return provider.create(checked.inputs).outs


@pytest.fixture(scope="module")
def pki_set() -> dict[str, dict[str, Any]]:
    """One CA per site and one host certificate per site, made by the providers."""
    made: dict[str, dict[str, Any]] = {}
    for site, (ca_name, fqdn) in SITES.items():
        made[f"ca-{site}"] = create_ca(ca_name)
        made[f"host-{site}"] = create_host(made[f"ca-{site}"], fqdn,
                                           additional_dns_names=[f"broker.site-{site}.example"])
    return made


@pytest.mark.parametrize("site", sorted(SITES))
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_openssl_verifies_host_against_its_ca(
    pki_set: dict[str, dict[str, Any]], tmp_path: Path, site: str, purpose: str
) -> None:
    ca, host = pki_set[f"ca-{site}"], pki_set[f"host-{site}"]
    for name in (host["fqdn"], f"broker.site-{site}.example"):
        result = openssl.verify(tmp_path, ca["cert_pem"], host["cert_pem"], purpose=purpose, hostname=name)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(": OK")


def test_openssl_rejects_wrong_ca_and_wrong_name(pki_set: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    host_a = pki_set["host-a"]["cert_pem"]
    wrong_ca = openssl.verify(tmp_path, pki_set["ca-b"]["cert_pem"], host_a, purpose="sslserver")
    assert wrong_ca.returncode != 0
    assert "unable to get local issuer certificate" in wrong_ca.stdout + wrong_ca.stderr
    wrong_name = openssl.verify(tmp_path, pki_set["ca-a"]["cert_pem"], host_a, purpose="sslserver",
                                hostname="hv2.site-b.example")
    assert wrong_name.returncode != 0 and "hostname mismatch" in wrong_name.stdout + wrong_name.stderr


def test_openssl_rejects_host_certificate_after_expiry(
    pki_set: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    host = pki_set["host-a"]
    after = pki.parse_iso_utc(host["not_after"]) + timedelta(days=1)
    result = openssl.verify(tmp_path, pki_set["ca-a"]["cert_pem"], host["cert_pem"], purpose="sslserver",
                            attime=after)
    assert result.returncode != 0 and "certificate has expired" in result.stdout + result.stderr


def test_openssl_text_of_host_certificate(pki_set: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    text = openssl.x509_text(tmp_path, pki_set["host-a"]["cert_pem"])
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:FALSE", text)
    assert re.search(r"X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment\n", text)
    assert re.search(r"X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication, TLS Web Client "
                     r"Authentication", text)
    assert "DNS:hv1.site-a.example, DNS:broker.site-a.example" in text
    assert "Subject: CN = hv1.site-a.example" in text and "Issuer: CN = Site A Replica CA" in text
    assert "X509v3 Subject Key Identifier" in text and "X509v3 Authority Key Identifier" in text
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    assert "Public-Key: (2048 bit)" in text


def test_openssl_text_of_ca_certificate(pki_set: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    text = openssl.x509_text(tmp_path, pki_set["ca-a"]["cert_pem"])
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:TRUE", text)
    assert re.search(r"X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n", text)
    assert "X509v3 Subject Key Identifier" in text


def test_default_key_size_is_4096(tmp_path: Path) -> None:
    ca = create_ca("Default size CA")
    provider = HostCertificateProvider()
    checked = provider.check({}, {"ca_cert_pem": ca["cert_pem"], "ca_private_key_pem": ca["private_key_pem"],
                                  "fqdn": "hv9.site-a.example"})
    host = provider.create(checked.inputs).outs
    assert "Public-Key: (4096 bit)" in openssl.x509_text(tmp_path, host["cert_pem"])


@pytest.mark.parametrize(
    ("encryption", "expected"),
    [
        ("legacy", ["MAC: sha1", "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC",
                    "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC"]),
        ("aes256", ["MAC: sha256", "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC",
                    "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"]),
    ],
)
def test_openssl_reads_pfx_profiles(
    pki_set: dict[str, dict[str, Any]], tmp_path: Path, encryption: str, expected: list[str]
) -> None:
    host = create_host(pki_set["ca-a"], "hv3.site-a.example", pfx_encryption=encryption,
                       friendly_name="HV3 Replica")
    pfx = base64.b64decode(host["pfx_base64"])
    info = openssl.pkcs12_info(tmp_path, pfx, host["pfx_password"])
    assert info.returncode == 0, info.stderr
    report = info.stdout + info.stderr
    for fragment in expected:
        assert fragment in report
    if encryption == "aes256":
        assert "PRF hmacWithSHA256" in report
    assert "friendlyName: HV3 Replica" in report
    assert "subject=CN = hv3.site-a.example" in report and "issuer=CN = Site A Replica CA" in report
    assert "subject=CN = Site A Replica CA" not in report  # the CA is not inside (imported into Root itself)
    assert openssl.pkcs12_key_matches(tmp_path, pfx, host["pfx_password"], host["cert_pem"])
    wrong = openssl.pkcs12_info(tmp_path, pfx, host["pfx_password"] + "x")
    assert wrong.returncode != 0 and "mac verify error" in (wrong.stdout + wrong.stderr).lower()
