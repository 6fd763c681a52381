"""Conformance of the NetSecurity firewall cmdlets and the Get-CimInstance host facts with the real pypsrp
client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hvsim.server import Emulator
from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, props, sessions

FQDN = "fw1.fabrikam.com"
HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"
HTTP_RULE = "VIRT-HVRHTTPL-In-TCP-NoScope"
HTTPS_DISPLAY = "Hyper-V Replica HTTPS Listener (TCP-In)"


@pytest.fixture(scope="module")
def lab() -> Iterator[Emulator]:
    with running_lab(lab_config(host(FQDN, "127.67.0.1", os="Windows Server 2019"))) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def hv(lab: Emulator) -> Iterator[HostSession]:
    with sessions(lab, FQDN) as opened:
        yield opened[FQDN]


def enabled(hv: HostSession, name: str) -> str:
    return str(hv.ok("Get-NetFirewallRule", Name=name)[0].extended_properties["Enabled"])


def test_stock_replica_rules_are_present_and_disabled(hv: HostSession) -> None:
    for name, group in ((HTTPS_RULE, "Hyper-V Replica HTTPS"), (HTTP_RULE, "Hyper-V Replica HTTP")):
        rule = hv.ok("Get-NetFirewallRule", Name=name)[0]
        assert rule.types[:2] == [
            "Microsoft.Management.Infrastructure.CimInstance#root/standardcimv2/MSFT_NetFirewallRule",
            "Microsoft.Management.Infrastructure.CimInstance#MSFT_NetFirewallRule",
        ]
        ext = rule.extended_properties
        # The type data re-types the raw CIM value into the enum named 'True' / 'False'.
        assert str(ext["Enabled"]) == "False"
        assert (
            ext["Enabled"].types[0] == "Microsoft.PowerShell.Cmdletization.GeneratedTypes.NetSecurity.Enabled"
        )
        assert props(rule)["Enabled"] == 2
        assert str(ext["Direction"]) == "Inbound" and str(ext["Action"]) == "Allow"
        assert ext["Name"] == name
        assert props(rule)["DisplayGroup"] == group


def test_all_rules_include_winrm(hv: HostSession) -> None:
    names = {r.extended_properties["Name"] for r in hv.ok("Get-NetFirewallRule")}
    assert {HTTPS_RULE, HTTP_RULE, "WINRM-HTTP-In-TCP"} <= names


def test_enable_and_disable_by_name_and_display_name(hv: HostSession) -> None:
    assert hv.ok("Enable-NetFirewallRule", Name=HTTPS_RULE) == []  # no output without -PassThru
    assert enabled(hv, HTTPS_RULE) == "True"
    again = hv.ok("Enable-NetFirewallRule", Name=HTTPS_RULE, PassThru=True)  # re-enabling is harmless
    assert str(again[0].extended_properties["Enabled"]) == "True"
    off = hv.ok("Disable-NetFirewallRule", DisplayName=HTTPS_DISPLAY, PassThru=True)
    assert [r.extended_properties["Name"] for r in off] == [HTTPS_RULE]
    assert enabled(hv, HTTPS_RULE) == "False"


def test_missing_rule_is_object_not_found(hv: HostSession) -> None:
    for cmdlet in ("Get-NetFirewallRule", "Enable-NetFirewallRule", "Disable-NetFirewallRule"):
        outcome = hv.run(cmdlet, Name="No-Such-Rule")
        assert not outcome.had_errors
        error = outcome.error
        assert str(error) == (
            "No MSFT_NetFirewallRule objects found with property 'Name' equal to 'No-Such-Rule'.  Verify the "
            "value of the property and retry."
        )
        assert error.fq_error == f"CmdletizationQuery_NotFound_Name,{cmdlet}"
        assert error.category == 13  # ObjectNotFound
    by_display = hv.run("Get-NetFirewallRule", DisplayName="Nothing")
    assert by_display.error.fq_error == "CmdletizationQuery_NotFound_DisplayName,Get-NetFirewallRule"
    assert hv.run("Enable-NetFirewallRule", Name="No-Such-Rule", ErrorAction="Stop").had_errors
    assert hv.ok("Get-NetFirewallRule", Name="VIRT-*-Nothing*") == []  # a wildcard matching nothing is quiet


def test_new_rule_is_written_like_get_and_opens_its_port(hv: HostSession, lab: Emulator) -> None:
    name, display = "HVR-HTTPS-8443", "Hyper-V Replica HTTPS Listener (TCP-In, port 8443)"
    firewall = lab.lab.host(FQDN).firewall
    assert not firewall.port_open(8443)
    created = hv.ok(
        "New-NetFirewallRule",
        Name=name,
        DisplayName=display,
        Direction="Inbound",
        Action="Allow",
        Protocol="TCP",
        LocalPort=["8443"],
    )
    try:
        assert len(created) == 1
        rule = created[0]
        assert rule.types[0] == (
            "Microsoft.Management.Infrastructure.CimInstance#root/standardcimv2/MSFT_NetFirewallRule"
        )
        ext = rule.extended_properties
        assert ext["Name"] == name and str(ext["Enabled"]) == "True"  # enabled unless told otherwise
        assert str(ext["Direction"]) == "Inbound" and str(ext["Action"]) == "Allow"
        assert props(rule)["DisplayName"] == display
        read = hv.ok("Get-NetFirewallRule", DisplayName=display)
        assert [r.extended_properties["Name"] for r in read] == [name]
        # The port filter is what the replication connection check consults, like the stock rules'.
        assert firewall.port_open(8443) and not firewall.port_open(8444)
        assert not firewall.port_open(8443, "UDP")
        hv.ok("Disable-NetFirewallRule", Name=name)
        assert not firewall.port_open(8443)
    finally:
        hv.ok("Remove-NetFirewallRule", Name=name)
    assert hv.run("Get-NetFirewallRule", Name=name).error.category == 13
    assert not firewall.port_open(8443)


def test_new_rule_options(hv: HostSession, lab: Emulator) -> None:
    rule = hv.ok(
        "New-NetFirewallRule",
        Name="Block-UDP-Range",
        DisplayName="Blocked range",
        Direction="Outbound",
        Action="Block",
        Protocol="UDP",
        LocalPort=["7000-7010", "7020"],
        Enabled="False",
        Profile="Any",
        Group="Test group",
    )[0]
    try:
        ext = rule.extended_properties
        assert str(ext["Enabled"]) == "False" and props(rule)["Enabled"] == 2
        assert str(ext["Direction"]) == "Outbound" and str(ext["Action"]) == "Block"
        assert props(rule)["Group"] == "Test group"
        model = lab.lab.host(FQDN).firewall.rule("Block-UDP-Range")
        assert model is not None and model.protocol == "UDP" and model.local_port == "7000-7010, 7020"
    finally:
        hv.ok("Remove-NetFirewallRule", Name="Block-UDP-Range")


def test_new_rule_errors(hv: HostSession) -> None:
    before = len(hv.ok("Get-NetFirewallRule"))
    duplicate = hv.run("New-NetFirewallRule", Name=HTTPS_RULE, DisplayName="Again", LocalPort=["443"])
    assert str(duplicate.error) == "Cannot create a file when that file already exists."
    assert duplicate.error.fq_error == "Windows System Error 183,New-NetFirewallRule"
    assert duplicate.error.category == 20  # ResourceExists
    missing_display = hv.run("New-NetFirewallRule", Name="No-Display", LocalPort=["1"])
    assert missing_display.had_errors
    bad_protocol = hv.run("New-NetFirewallRule", Name="Bad", DisplayName="Bad", Protocol="SCTP")
    assert bad_protocol.had_errors
    # Ports exist only for TCP and UDP; the default protocol is Any.
    portless = hv.run("New-NetFirewallRule", Name="Bad", DisplayName="Bad", LocalPort=["8443"])
    assert portless.error.fq_error == "Windows System Error 87,New-NetFirewallRule"
    assert portless.error.category == 5  # InvalidArgument
    assert len(hv.ok("Get-NetFirewallRule")) == before  # nothing half-created


def test_any_protocol_rule_without_ports_opens_every_port(hv: HostSession, lab: Emulator) -> None:
    firewall = lab.lab.host(FQDN).firewall
    assert not firewall.port_open(9999)
    hv.ok("New-NetFirewallRule", Name="Allow-All-In", DisplayName="Allow all inbound")
    try:
        assert firewall.port_open(9999) and firewall.port_open(53, "UDP")
    finally:
        hv.ok("Remove-NetFirewallRule", DisplayName="Allow all inbound")
    assert not firewall.port_open(9999)


def test_remove_missing_rule_is_object_not_found(hv: HostSession) -> None:
    outcome = hv.run("Remove-NetFirewallRule", Name="No-Such-Rule")
    assert outcome.error.fq_error == "CmdletizationQuery_NotFound_Name,Remove-NetFirewallRule"
    assert outcome.error.category == 13
    assert hv.ok("Get-NetFirewallRule", Name=HTTPS_RULE)  # a stock rule is untouched


def test_computer_system_facts(hv: HostSession) -> None:
    cs = hv.ok("Get-CimInstance", ClassName="Win32_ComputerSystem")[0]
    assert cs.types[:2] == [
        "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_ComputerSystem",
        "Microsoft.Management.Infrastructure.CimInstance#Win32_ComputerSystem",
    ]
    p = props(cs)
    assert p["Name"] == "FW1"
    assert p["Domain"] == "fabrikam.com"
    assert p["DNSHostName"] == "fw1"
    assert p["PartOfDomain"] is True
    assert p["TotalPhysicalMemory"] > 0
    assert "PSComputerName" in cs.extended_properties


def test_operating_system_facts(hv: HostSession) -> None:
    os_info = props(hv.ok("Get-CimInstance", Class="Win32_OperatingSystem")[0])
    assert os_info["Caption"] == "Microsoft Windows Server 2019 Datacenter"
    assert os_info["Version"] == "10.0.17763" and os_info["BuildNumber"] == "17763"
    assert os_info["CSName"] == "FW1"
    assert os_info["OSArchitecture"] == "64-bit"


def test_unknown_cim_class(hv: HostSession) -> None:
    outcome = hv.run("Get-CimInstance", ClassName="Win32_Nothing")
    assert outcome.error.fq_error == (
        "HRESULT 0x80041010,Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand"
    )
    assert outcome.error.category == 10  # MetadataError
