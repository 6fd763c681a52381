"""Conformance of the certificate cmdlets with the real pypsrp client: PFX upload with Set-Content -Encoding
Byte, Import-PfxCertificate / Import-Certificate, the Cert: provider (Get-ChildItem, Get-Item, Test-Path,
Remove-Item) and the X509Certificate2 object shape, checked against the openssl CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import openssl
from tests.support.certs import Issued, make_ca, make_host_cert
from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, props, sessions

FQDN = "certs1.contoso.com"
PASSWORD = "Pfx-Test-Pw1"
MY = "Cert:\\LocalMachine\\My"
ROOT = "Cert:\\LocalMachine\\Root"
X509_TYPES = [
    "System.Security.Cryptography.X509Certificates.X509Certificate2",
    "System.Security.Cryptography.X509Certificates.X509Certificate",
    "System.Object",
]


@pytest.fixture(scope="module")
def hv() -> Iterator[HostSession]:
    with running_lab(lab_config(host(FQDN, "127.64.0.1"))) as emulator, sessions(emulator, FQDN) as opened:
        yield opened[FQDN]


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Windows Model Test Root")


def upload(hv: HostSession, path: str, data: bytes) -> None:
    hv.ok("Set-Content", Path=path, Value=data, Encoding="Byte")


def import_pfx(hv: HostSession, leaf: Issued, ca: Issued, name: str, **extra: object) -> list[object]:
    path = f"C:\\Windows\\Temp\\{name}.pfx"
    upload(hv, path, leaf.pfx(PASSWORD, chain=(ca.cert,)))
    return hv.ok(
        "Import-PfxCertificate", FilePath=path, CertStoreLocation=MY, Password=hv.secure(PASSWORD), **extra
    )


def test_import_pfx_puts_leaf_with_key_in_my_and_ca_in_root(hv: HostSession, ca: Issued) -> None:
    leaf = make_host_cert(ca, "certs1.contoso.com")
    out = import_pfx(hv, leaf, ca, "leaf1", Exportable=True)
    assert len(out) == 1
    cert = out[0]
    assert cert.types == X509_TYPES
    p = props(cert)
    assert p["Thumbprint"] == leaf.thumbprint
    assert p["HasPrivateKey"] is True
    assert p["Subject"] == "CN=certs1.contoso.com"
    assert p["Issuer"] == "CN=Windows Model Test Root"
    assert cert.extended_properties["PSPath"] == (
        f"Microsoft.PowerShell.Security\\Certificate::LocalMachine\\My\\{leaf.thumbprint}"
    )
    assert hv.ok("Test-Path", Path=f"{MY}\\{leaf.thumbprint}") == [True]
    assert hv.ok("Test-Path", Path=f"{ROOT}\\{ca.thumbprint}") == [True]
    root = hv.ok("Get-Item", Path=f"{ROOT}\\{ca.thumbprint}")[0]
    assert props(root)["HasPrivateKey"] is False


def test_certificate_object_shape_matches_openssl(hv: HostSession, ca: Issued, tmp_path: Path) -> None:
    leaf = make_host_cert(ca, "certs1.contoso.com", dns_names=("certs1.contoso.com", "replica.contoso.com"))
    import_pfx(hv, leaf, ca, "shape")
    cert = hv.ok("Get-Item", Path=f"{MY}\\{leaf.thumbprint.lower()}")[0]
    p = props(cert)
    # The adapted .NET properties in the order X509Certificate2 declares them.
    assert list(p) == [
        "Archived",
        "Extensions",
        "FriendlyName",
        "IssuerName",
        "NotAfter",
        "NotBefore",
        "HasPrivateKey",
        "PrivateKey",
        "PublicKey",
        "RawData",
        "SerialNumber",
        "SubjectName",
        "SignatureAlgorithm",
        "Thumbprint",
        "Version",
        "Handle",
        "Issuer",
        "Subject",
    ]
    ext = cert.extended_properties
    # Generic lists of representation objects: pypsrp has no class for them and keeps the <LST> of their
    # ToString forms as it would for Windows' reply.
    dns, ekus = ext["DnsNameList"], ext["EnhancedKeyUsageList"]
    assert dns.types[0].startswith("System.Collections.Generic.List`1[[Microsoft.PowerShell.Commands.DnsName")
    assert dns.property_sets == ["<LST><S>certs1.contoso.com</S><S>replica.contoso.com</S></LST>"]
    assert ekus.property_sets == [
        "<LST><S>Server Authentication (1.3.6.1.5.5.7.3.1)</S>"
        "<S>Client Authentication (1.3.6.1.5.5.7.3.2)</S></LST>"
    ]
    assert ext["PSChildName"] == leaf.thumbprint
    assert ext["PSParentPath"] == "Microsoft.PowerShell.Security\\Certificate::LocalMachine\\My"
    assert ext["PSIsContainer"] is False
    assert p["Version"] == 3
    # RawData is the certificate itself: openssl reads it and agrees on thumbprint, serial and dates.
    pem = serialization.Encoding.PEM
    served = x509.load_der_x509_certificate(p["RawData"])
    assert served == leaf.cert
    fingerprint = openssl.run(
        "x509",
        "-noout",
        "-fingerprint",
        "-sha1",
        "-serial",
        "-in",
        str(openssl.write(tmp_path, "served.pem", served.public_bytes(pem))),
    )
    assert fingerprint.returncode == 0, fingerprint.stderr
    fields = dict(line.split("=", 1) for line in fingerprint.stdout.splitlines())
    assert fields["sha1 Fingerprint"].replace(":", "") == p["Thumbprint"]
    assert int(fields["serial"], 16) == int(p["SerialNumber"], 16)
    assert len(p["SerialNumber"]) % 2 == 0  # whole bytes, as .NET prints them


def test_get_childitem_lists_the_store_and_the_location(hv: HostSession, ca: Issued) -> None:
    leaf = make_host_cert(ca, "list.contoso.com")
    import_pfx(hv, leaf, ca, "list")
    thumbprints = {props(c)["Thumbprint"] for c in hv.ok("Get-ChildItem", Path=MY)}
    assert leaf.thumbprint in thumbprints
    stores = hv.ok("Get-ChildItem", Path="Cert:\\LocalMachine")
    assert {props(s)["Name"] for s in stores} >= {"My", "Root"}
    assert stores[0].types[0] == "System.Security.Cryptography.X509Certificates.X509Store"


def test_wrong_pfx_password_fails_like_windows(hv: HostSession, ca: Issued) -> None:
    leaf = make_host_cert(ca, "wrong.contoso.com")
    path = "C:\\Windows\\Temp\\wrong.pfx"
    upload(hv, path, leaf.pfx(PASSWORD))
    outcome = hv.run(
        "Import-PfxCertificate", FilePath=path, CertStoreLocation=MY, Password=hv.secure("not-the-password")
    )
    assert outcome.had_errors  # terminating
    error = outcome.error
    assert str(error) == (
        "The PFX file you are trying to import requires either a different password or membership in an "
        "Active Directory principal to which it is protected."
    )
    assert error.fq_error == (
        "System.ComponentModel.Win32Exception,Microsoft.CertificateServices.Commands.ImportPfxCertificate"
    )
    assert hv.ok("Test-Path", Path=f"{MY}\\{leaf.thumbprint}") == [False]


def test_import_pfx_needs_a_store_location_and_an_existing_file(hv: HostSession, ca: Issued) -> None:
    leaf = make_host_cert(ca, "nostore.contoso.com")
    path = "C:\\Windows\\Temp\\nostore.pfx"
    upload(hv, path, leaf.pfx(PASSWORD))
    no_store = hv.run("Import-PfxCertificate", FilePath=path, Password=hv.secure(PASSWORD))
    assert no_store.had_errors and "Cert:\\LocalMachine\\My" in str(no_store.error)
    missing = hv.run(
        "Import-PfxCertificate", FilePath="C:\\nope.pfx", CertStoreLocation=MY, Password=hv.secure(PASSWORD)
    )
    assert missing.had_errors
    assert (
        missing.error.fq_error == "PathNotFound,Microsoft.CertificateServices.Commands.ImportPfxCertificate"
    )


def test_import_certificate_trusts_a_root_from_der_and_pem(hv: HostSession) -> None:
    other = make_ca("Second Test Root", key_slot=1)
    third = make_ca("Third Test Root", key_slot=2)
    upload(hv, "C:\\Windows\\Temp\\root.cer", other.cert.public_bytes(serialization.Encoding.DER))
    upload(hv, "C:\\Windows\\Temp\\root.pem", third.cert_pem)
    der = hv.ok("Import-Certificate", FilePath="C:\\Windows\\Temp\\root.cer", CertStoreLocation=ROOT)
    pem = hv.ok("Import-Certificate", FilePath="C:\\Windows\\Temp\\root.pem", CertStoreLocation=ROOT)
    assert [props(c)["Thumbprint"] for c in der + pem] == [other.thumbprint, third.thumbprint]
    assert props(der[0])["HasPrivateKey"] is False


def test_remove_item_deletes_a_certificate_and_missing_paths_are_not_found(
    hv: HostSession, ca: Issued
) -> None:
    leaf = make_host_cert(ca, "remove.contoso.com")
    import_pfx(hv, leaf, ca, "remove")
    hv.ok("Remove-Item", Path=f"{MY}\\{leaf.thumbprint}", DeleteKey=None)
    assert hv.ok("Test-Path", Path=f"{MY}\\{leaf.thumbprint}") == [False]
    outcome = hv.run("Get-Item", Path=f"{MY}\\{leaf.thumbprint}")
    assert not outcome.had_errors  # non-terminating
    assert outcome.error.fq_error == "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
    assert str(outcome.error) == f"Cannot find path '{MY}\\{leaf.thumbprint}' because it does not exist."
