"""Object fidelity against what Windows PowerShell 5.1 sends, read with the real pypsrp client and on the
wire: Get-Content lines (a string carrying notes), X509Certificate2 from Cert:\\, the stock LocalMachine\\Root
of a fresh install, CIM type chains of firewall rules and Win32_* instances, PSVersionTable at open."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from psrpcore.types import PSRPMessageType
from pypsrp.complex_objects import ObjectMeta
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvsim.server import Emulator
from hvsim.stock_roots import STOCK_ROOTS, stock_root_certificates
from tests.support.certs import make_ca, make_host_cert
from tests.support.hvsim_env import host, lab_config, running_lab, wsman_kwargs
from tests.support.wsman_wire import Recorder, psrp_messages

HV1, HV2 = "fid1.contoso.com", "fid2.fabrikam.com"
HOSTS = r"C:\Windows\System32\drivers\etc\hosts"
ROOT = "Cert:\\LocalMachine\\Root"
CIM = "Microsoft.Management.Infrastructure.CimInstance"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    config = lab_config(
        host(HV1, "127.38.0.11", os="Windows Server 2022"), host(HV2, "127.38.0.12", os="Windows Server 2019")
    )
    with running_lab(config) as emulator:
        yield emulator


@pytest.fixture
def wire(emu: Emulator) -> Iterator[tuple[RunspacePool, Recorder]]:
    with WSMan(**wsman_kwargs(emu, HV1)) as wsman, RunspacePool(wsman) as pool:
        yield pool, Recorder(wsman)


def run(pool: RunspacePool, cmdlet: str, **params: Any) -> list[Any]:
    ps = PowerShell(pool)
    ps.add_cmdlet(cmdlet)
    for name, value in params.items():
        ps.add_parameter(name, value)
    out = ps.invoke()
    assert not ps.had_errors and not ps.streams.error, [str(e) for e in ps.streams.error]
    return out


def output_clixml(rec: Recorder) -> list[ET.Element]:
    """Every PipelineOutput object the client received, as CLIXML elements."""
    return [
        ET.fromstring(body)
        for r in rec.of("Receive")
        for kind, body in psrp_messages(r)
        if kind == PSRPMessageType.PipelineOutput
    ]


def test_get_content_line_is_a_string_with_notes_as_windows_serialises_it(
    wire: tuple[RunspacePool, Recorder],
) -> None:
    # PowerShell's serializer writes a string with instance notes as <Obj><S>text</S><MS>notes</MS></Obj>:
    # no <TN> (the type names are unmodified) and no <ToString> (the string has no token text).
    pool, rec = wire
    lines = run(pool, "Get-Content", Path=HOSTS, TotalCount=2)
    first = output_clixml(rec)[0]
    assert [child.tag for child in first] == ["S", "MS"]
    assert first.findtext("S") == "# Copyright (c) 1993-2009 Microsoft Corp."
    notes = {m.get("N"): (m.tag, m.text) for m in first.find("MS") or []}
    assert notes == {
        "PSPath": ("S", "Microsoft.PowerShell.Core\\FileSystem::" + HOSTS),
        "PSParentPath": ("S", "Microsoft.PowerShell.Core\\FileSystem::C:\\Windows\\System32\\drivers\\etc"),
        "PSChildName": ("S", "hosts"),
        "PSDrive": ("S", "C"),  # PSDriveInfo / ProviderInfo beyond the serialization depth: their ToString
        "PSProvider": ("S", "Microsoft.PowerShell.Core\\FileSystem"),
        "ReadCount": ("I64", "1"),  # GetContentCommand's readCount is a long
    }
    # So pypsrp 0.9.1 hands over what it hands over for real Windows: the text in property_sets, no ToString.
    assert lines[0].property_sets == ["# Copyright (c) 1993-2009 Microsoft Corp."]
    assert lines[0].to_string is None and lines[0].types == []
    assert lines[1].extended_properties["ReadCount"] == 2


def test_certificate_object_shape(wire: tuple[RunspacePool, Recorder]) -> None:
    pool, rec = wire
    root = STOCK_ROOTS[3]  # Microsoft Root Certificate Authority 2011
    cert = next(
        c
        for c in run(pool, "Get-ChildItem", Path=ROOT)
        if c.adapted_properties["FriendlyName"] == root.friendly_name
    )
    assert cert.types == [
        "System.Security.Cryptography.X509Certificates.X509Certificate2",
        "System.Security.Cryptography.X509Certificates.X509Certificate",
        "System.Object",
    ]
    adapted, ext = cert.adapted_properties, cert.extended_properties
    thumbprint = adapted["Thumbprint"]
    assert re.fullmatch(r"[0-9A-F]{40}", thumbprint)
    assert adapted["Subject"] == (
        "CN=Microsoft Root Certificate Authority 2011, O=Microsoft Corporation, L=Redmond, S=Washington, C=US"
    )
    assert adapted["Issuer"] == adapted["Subject"] and adapted["HasPrivateKey"] is False
    assert adapted["NotAfter"].startswith("2036-03-22T22:13:04")  # pypsrp keeps <DT> as its text
    assert ext["PSPath"] == f"Microsoft.PowerShell.Security\\Certificate::LocalMachine\\Root\\{thumbprint}"
    assert ext["PSParentPath"] == "Microsoft.PowerShell.Security\\Certificate::LocalMachine\\Root"
    assert ext["PSChildName"] == thumbprint and ext["PSIsContainer"] is False
    # No SAN: DnsNameList falls back to the subject CN. (pypsrp keeps the generic list's <LST> as text.)
    assert ext["DnsNameList"].property_sets == ["<LST><S>Microsoft Root Certificate Authority 2011</S></LST>"]
    assert ext["EnhancedKeyUsageList"].property_sets == ["<LST />"]
    assert str(cert).startswith("[Subject]\r\n  CN=Microsoft Root Certificate Authority 2011, ")
    (clixml,) = [o for o in output_clixml(rec) if o.findtext("Props/S[@N='Thumbprint']") == thumbprint]
    # Adapted .NET properties in <Props>, the certificate provider's notes and type data in <MS>.
    assert {m.get("N") for m in clixml.find("MS") or []} >= {"PSPath", "DnsNameList", "EnhancedKeyUsageList"}
    lists = {
        m.get("N"): [t.text for t in m.iterfind("TN/T")] for m in clixml.find("MS") or [] if m.tag == "Obj"
    }
    assert lists["DnsNameList"][0].startswith(
        "System.Collections.Generic.List`1[[Microsoft.PowerShell.Commands.DnsNameRepresentation"
    )


def test_fresh_root_store_holds_the_stock_roots_identical_on_every_host(emu: Emulator) -> None:
    stores = {}
    for fqdn in (HV1, HV2):
        with WSMan(**wsman_kwargs(emu, fqdn)) as wsman, RunspacePool(wsman) as pool:
            stores[fqdn] = {
                c.adapted_properties["Thumbprint"]: c for c in run(pool, "Get-ChildItem", Path=ROOT)
            }
    assert len(stores[HV1]) >= len(STOCK_ROOTS)
    assert set(stores[HV1]) == set(stores[HV2])  # same roots, same thumbprints, as with the real ones
    subjects = {c.adapted_properties["Subject"] for c in stores[HV1].values()}
    assert {
        "CN=DigiCert Global Root G2, OU=www.digicert.com, O=DigiCert Inc, C=US",
        "CN=Baltimore CyberTrust Root, OU=CyberTrust, O=Baltimore, C=IE",
        "CN=Microsoft Root Certificate Authority, DC=microsoft, DC=com",
    } <= subjects
    # Windows keeps expired legacy roots; client code filtering on validity must cope with them.
    expired = [c for c in stores[HV1].values() if c.adapted_properties["NotAfter"][:4] < "2005"]
    assert len(expired) >= 3


def test_stock_root_removal_persists_only_on_that_host(emu: Emulator) -> None:
    with WSMan(**wsman_kwargs(emu, HV2)) as wsman, RunspacePool(wsman) as pool:
        roots = run(pool, "Get-ChildItem", Path=ROOT)
        thawte = next(c for c in roots if c.adapted_properties["FriendlyName"] == "Thawte Timestamping CA")
        path = f"{ROOT}\\{thawte.adapted_properties['Thumbprint']}"
        assert run(pool, "Remove-Item", Path=path) == []
        assert run(pool, "Test-Path", Path=path) == [False]
    with WSMan(**wsman_kwargs(emu, HV1)) as wsman, RunspacePool(wsman) as pool:
        assert run(pool, "Test-Path", Path=path) == [True]
    assert thawte.adapted_properties["Thumbprint"] not in {
        c["thumbprint"] for c in emu.dump_host(HV2)["certificates"]["Root"]
    }


def test_firewall_rule_cim_type_chain(wire: tuple[RunspacePool, Recorder]) -> None:
    pool, _ = wire
    (rule,) = run(pool, "Get-NetFirewallRule", Name="VIRT-HVRHTTPSL-In-TCP-NoScope")
    chain = [
        f"{CIM}#{ns}{cls}"
        for cls in (
            "MSFT_NetFirewallRule",
            "CIM_PolicyRule",
            "CIM_PolicySet",
            "CIM_Policy",
            "CIM_ManagedElement",
        )
        for ns in ("root/standardcimv2/", "")
    ]
    assert rule.types == [*chain, CIM, "System.Object"]
    assert str(rule.extended_properties["Enabled"]) == "False"


@pytest.mark.parametrize(
    ("class_name", "bases"),
    [
        ("Win32_OperatingSystem", ("CIM_OperatingSystem", "CIM_LogicalElement", "CIM_ManagedSystemElement")),
        (
            "Win32_ComputerSystem",
            (
                "CIM_UnitaryComputerSystem",
                "CIM_ComputerSystem",
                "CIM_System",
                "CIM_LogicalElement",
                "CIM_ManagedSystemElement",
            ),
        ),
    ],
)
def test_win32_cim_type_chains(
    wire: tuple[RunspacePool, Recorder], class_name: str, bases: tuple[str, ...]
) -> None:
    pool, _ = wire
    (instance,) = run(pool, "Get-CimInstance", ClassName=class_name)
    chain = [f"{CIM}#{ns}{cls}" for cls in (class_name, *bases) for ns in ("root/cimv2/", "")]
    assert instance.types == [*chain, CIM, "System.Object"]


@pytest.mark.parametrize(("fqdn", "build"), [(HV1, "20348"), (HV2, "17763")])
def test_ps_version_table_follows_the_host_os(emu: Emulator, fqdn: str, build: str) -> None:
    with WSMan(**wsman_kwargs(emu, fqdn)) as wsman, RunspacePool(wsman) as pool:
        table = pool.application_private_data.data["PSVersionTable"]
    assert table["PSVersion"] == f"5.1.{build}.1" and table["BuildVersion"] == f"10.0.{build}.1"
    assert table["PSEdition"] == "Desktop" and table["PSCompatibleVersions"][-1] == table["PSVersion"]
    assert table["CLRVersion"] == "4.0.30319.42000" and table["WSManStackVersion"] == "3.0"


def test_stock_roots_are_well_formed_ca_certificates() -> None:
    for der, friendly_name in stock_root_certificates():
        cert = x509.load_der_x509_certificate(der)
        assert cert.subject == cert.issuer and friendly_name
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        cert.verify_directly_issued_by(cert)  # a genuine self-signature


def test_cmdlet_errors_carry_invocation_info(wire: tuple[RunspacePool, Recorder]) -> None:
    pool, _ = wire
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-ChildItem").add_parameter("Path", "C:\\Windows")
    ps.add_cmdlet("Get-Content")  # directories piped in: one error per item
    ps.invoke()
    record = ps.streams.error[0]
    info = record.invocation_info
    assert info.types == ["System.Management.Automation.InvocationInfo", "System.Object"]
    props = info.adapted_properties
    assert props["MyCommand"] == props["InvocationName"] == "Get-Content"
    assert (props["PipelinePosition"], props["PipelineLength"], props["ExpectingInput"]) == (2, 2, True)
    assert props["BoundParameters"] == {"LiteralPath": "System.String[]"}  # bound from the piped item
    assert props["Line"] == "" and props["ScriptLineNumber"] == 0 and record.extended_info_present is False


def test_secure_string_arguments_never_leave_the_host_in_error_records(
    wire: tuple[RunspacePool, Recorder],
) -> None:
    pool, rec = wire
    password = "Wrong-Pfx-Secret-42"
    leaf = make_host_cert(make_ca("Fidelity Root"), "fid1.contoso.com")
    path = "C:\\Windows\\Temp\\fidelity.pfx"
    run(pool, "Set-Content", Path=path, Value=leaf.pfx("the-real-one"), Encoding="Byte")
    pool.exchange_keys()
    ps = PowerShell(pool)
    ps.add_cmdlet("Import-PfxCertificate").add_parameter("FilePath", path)
    ps.add_parameter("CertStoreLocation", "Cert:\\LocalMachine\\My")
    ps.add_parameter("Password", pool.serialize(password, ObjectMeta("SS")))
    ps.invoke()
    (record,) = ps.streams.error
    bound = record.invocation_info.adapted_properties["BoundParameters"]
    assert bound["Password"] == "System.Security.SecureString" and bound["FilePath"] == path
    replies = b"".join(ET.tostring(e.reply) for e in rec.exchanges)
    payloads = b"".join(data for e in rec.exchanges for _, data in e.streams())
    assert password.encode() not in replies and password.encode("utf-16-le") not in payloads
    assert password.encode() not in payloads
