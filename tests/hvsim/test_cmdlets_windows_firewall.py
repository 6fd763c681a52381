"""Conformance of the NetSecurity firewall cmdlets and the Get-CimInstance host facts with the real pypsrp
client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, props, sessions

FQDN = "fw1.fabrikam.com"
HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"
HTTP_RULE = "VIRT-HVRHTTPL-In-TCP-NoScope"
HTTPS_DISPLAY = "Hyper-V Replica HTTPS Listener (TCP-In)"


@pytest.fixture(scope="module")
def hv() -> Iterator[HostSession]:
    config = lab_config(host(FQDN, "127.67.0.1", os="Windows Server 2019"))
    with running_lab(config) as emulator, sessions(emulator, FQDN) as opened:
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
