"""Conformance of the registry cmdlets on HKLM:\\ with the real pypsrp client, including the gotchas of
hyperv-replica.md §7 (New-Item -Force empties an existing key; an existing key without -Force is a
non-terminating error)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, props, sessions

FQDN = "reg1.contoso.com"
REPLICATION = "HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\Replication"
PS_REGISTRY = "Microsoft.PowerShell.Core\\Registry::HKEY_LOCAL_MACHINE"
_counter = itertools.count()


@pytest.fixture(scope="module")
def hv() -> Iterator[HostSession]:
    with running_lab(lab_config(host(FQDN, "127.65.0.1"))) as emulator, sessions(emulator, FQDN) as opened:
        yield opened[FQDN]


@pytest.fixture
def key(hv: HostSession) -> str:
    """A fresh key under HKLM:\\SOFTWARE\\HvsimTest for one test."""
    path = f"HKLM:\\SOFTWARE\\HvsimTest\\Key{next(_counter)}"
    hv.ok("New-Item", Path=path, Force=True)
    return path


def test_fresh_host_has_no_replication_key_and_new_item_creates_it(hv: HostSession) -> None:
    assert hv.ok("Test-Path", Path=REPLICATION.rsplit("\\", 1)[0]) == [True]  # ...\Virtualization
    assert hv.ok("Test-Path", Path=REPLICATION) == [False]
    hv.ok("New-Item", Path=REPLICATION)
    assert hv.ok("Test-Path", Path=REPLICATION, PathType="Container") == [True]
    assert hv.ok("Test-Path", Path=REPLICATION, PathType="Leaf") == [False]


def test_new_item_returns_a_registry_key(hv: HostSession) -> None:
    path = "HKLM:\\SOFTWARE\\HvsimTest\\Shape"
    out = hv.ok("New-Item", Path=path, Force=True)
    assert len(out) == 1
    created = out[0]
    assert created.types == ["Microsoft.Win32.RegistryKey", "System.MarshalByRefObject", "System.Object"]
    p = props(created)
    assert p["Name"] == "HKEY_LOCAL_MACHINE\\SOFTWARE\\HvsimTest\\Shape"
    assert p["SubKeyCount"] == 0 and p["ValueCount"] == 0
    assert str(p["View"]) == "Default"
    assert created.extended_properties["PSPath"] == f"{PS_REGISTRY}\\SOFTWARE\\HvsimTest\\Shape"
    assert created.extended_properties["PSChildName"] == "Shape"
    assert created.extended_properties["PSIsContainer"] is True


def test_new_item_on_an_existing_key(hv: HostSession, key: str) -> None:
    hv.ok("New-ItemProperty", Path=key, Name="MaximumActiveTransfers", PropertyType="DWord", Value=5)
    again = hv.run("New-Item", Path=key)
    assert not again.had_errors  # non-terminating
    assert str(again.error) == "A key at this path already exists."
    assert again.error.fq_error == "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemCommand"
    assert again.error.category == 20  # ResourceExists
    assert props_of(hv, key)["MaximumActiveTransfers"] == 5  # untouched
    # -Force deletes the key and creates it again, empty: the value is gone.
    hv.ok("New-Item", Path=key, Force=True)
    assert "MaximumActiveTransfers" not in props_of(hv, key)


def test_new_item_needs_force_for_missing_parents(hv: HostSession) -> None:
    deep = "HKLM:\\SOFTWARE\\HvsimTest\\Missing\\Child"
    outcome = hv.run("New-Item", Path=deep)
    assert outcome.error.fq_error == "PathNotFound,Microsoft.PowerShell.Commands.NewItemCommand"
    hv.ok("New-Item", Path=deep, Force=True)
    assert hv.ok("Test-Path", Path=deep) == [True]


def props_of(hv: HostSession, key: str) -> dict[str, object]:
    out = hv.ok("Get-ItemProperty", Path=key)
    assert len(out) == 1
    return dict(out[0].extended_properties)


def test_item_property_values_come_back_with_their_types(hv: HostSession, key: str) -> None:
    hv.ok("New-ItemProperty", Path=key, Name="DisableCertRevocationCheck", PropertyType="DWord", Value=1)
    hv.ok("New-ItemProperty", Path=key, Name="Big", PropertyType="QWord", Value="0x100000000")
    hv.ok("New-ItemProperty", Path=key, Name="Text", Value="hello")
    hv.ok("New-ItemProperty", Path=key, Name="Expanded", PropertyType="ExpandString", Value="%SystemRoot%\\x")
    hv.ok("New-ItemProperty", Path=key, Name="Many", PropertyType="MultiString", Value=["a", "b"])
    hv.ok("New-ItemProperty", Path=key, Name="Blob", PropertyType="Binary", Value=b"\x01\x02")
    out = hv.ok("Get-ItemProperty", Path=key)[0]
    assert out.types == ["System.Management.Automation.PSCustomObject", "System.Object"]
    assert not out.adapted_properties  # everything is a note property
    values = out.extended_properties
    assert values["DisableCertRevocationCheck"] == 1
    assert values["Big"] == 2**32
    assert values["Text"] == "hello"
    assert values["Expanded"] == "C:\\Windows\\x"
    assert values["Many"] == ["a", "b"]
    assert values["Blob"] == b"\x01\x02"
    assert values["PSPath"] == f"{PS_REGISTRY}\\{key[6:]}"
    assert values["PSDrive"] == "HKLM" and values["PSProvider"] == "Microsoft.PowerShell.Core\\Registry"
    selected = hv.ok("Get-ItemProperty", Path=key, Name="Text")[0].extended_properties
    assert "Text" in selected and "Big" not in selected


def test_new_item_property_on_an_existing_value(hv: HostSession, key: str) -> None:
    hv.ok("New-ItemProperty", Path=key, Name="Flag", PropertyType="DWord", Value=0)
    again = hv.run("New-ItemProperty", Path=key, Name="Flag", PropertyType="DWord", Value=1)
    assert str(again.error) == "The property already exists."
    assert (
        again.error.fq_error == "System.IO.IOException,Microsoft.PowerShell.Commands.NewItemPropertyCommand"
    )
    assert props_of(hv, key)["Flag"] == 0
    hv.ok("New-ItemProperty", Path=key, Name="Flag", PropertyType="DWord", Value=1, Force=True)
    assert props_of(hv, key)["Flag"] == 1


def test_set_item_property_keeps_or_sets_the_kind(hv: HostSession, key: str) -> None:
    hv.ok("New-ItemProperty", Path=key, Name="Flag", PropertyType="DWord", Value=0)
    assert hv.ok("Set-ItemProperty", Path=key, Name="Flag", Value="1") == []  # no output without -PassThru
    assert props_of(hv, key)["Flag"] == 1  # still a DWord: the string was converted
    passed = hv.ok("Set-ItemProperty", Path=key, Name="Other", Value=7, Type="QWord", PassThru=True)
    assert passed[0].extended_properties["Other"] == 7


def test_item_property_cmdlets_on_a_missing_key(hv: HostSession) -> None:
    missing = "HKLM:\\SOFTWARE\\HvsimTest\\Nope"
    for outcome, command in (
        (hv.run("Get-ItemProperty", Path=missing), "GetItemPropertyCommand"),
        (hv.run("Set-ItemProperty", Path=missing, Name="x", Value=1), "SetItemPropertyCommand"),
        (hv.run("New-ItemProperty", Path=missing, Name="x", Value=1), "NewItemPropertyCommand"),
    ):
        assert not outcome.had_errors
        assert outcome.error.fq_error == f"PathNotFound,Microsoft.PowerShell.Commands.{command}"
        assert str(outcome.error) == f"Cannot find path '{missing}' because it does not exist."
    stopped = hv.run("Get-ItemProperty", Path=missing, ErrorAction="Stop")
    assert stopped.had_errors


def test_missing_value_and_remove_item_property(hv: HostSession, key: str) -> None:
    hv.ok("New-ItemProperty", Path=key, Name="Gone", Value="x")
    hv.ok("Remove-ItemProperty", Path=key, Name="Gone")
    inner = key.replace("HKLM:\\", "HKEY_LOCAL_MACHINE\\")
    for outcome, command in (
        (hv.run("Get-ItemProperty", Path=key, Name="Gone"), "GetItemPropertyCommand"),
        (hv.run("Remove-ItemProperty", Path=key, Name="Gone"), "RemoveItemPropertyCommand"),
    ):
        assert str(outcome.error) == f"Property Gone does not exist at path {inner}."
        assert outcome.error.fq_error == (
            f"System.Management.Automation.PSArgumentException,Microsoft.PowerShell.Commands.{command}"
        )


def test_remove_item_on_a_key_with_children_needs_recurse(hv: HostSession, key: str) -> None:
    hv.ok("New-Item", Path=f"{key}\\Child")
    prompt = hv.run("Remove-Item", Path=key)
    assert prompt.had_errors and "has children and the Recurse parameter was not specified" in str(
        prompt.error
    )
    assert hv.ok("Test-Path", Path=key) == [True]
    hv.ok("Remove-Item", Path=key, Recurse=True)
    assert hv.ok("Test-Path", Path=key) == [False]


def test_get_childitem_lists_subkeys_and_provider_qualified_paths(hv: HostSession, key: str) -> None:
    hv.ok("New-Item", Path=f"{key}\\B")
    hv.ok("New-Item", Path=f"{key}\\A")
    names = [props(k)["Name"].rsplit("\\", 1)[-1] for k in hv.ok("Get-ChildItem", Path=key)]
    assert names == ["A", "B"]
    assert hv.ok("Test-Path", Path="Registry::HKEY_LOCAL_MACHINE\\SOFTWARE") == [True]
