"""Conformance of the VM cmdlets (Get-VM, New-VM, Start-VM, Stop-VM, Remove-VM, Get-VMSnapshot) with the real
pypsrp client: object shapes, enums with their string form, errors, warnings, -Passthru."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psrpcore.types import ErrorCategory
from pypsrp.powershell import PowerShell

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, props, sessions

FQDN = "hv1.contoso.com"
VM_TYPES = [
    "Microsoft.HyperV.PowerShell.VirtualMachine",
    "Microsoft.HyperV.PowerShell.VirtualMachineBase",
    "Microsoft.HyperV.PowerShell.VirtualizationObject",
    "System.Object",
]


@pytest.fixture(scope="module")
def hv() -> Iterator[HostSession]:
    config = lab_config(host(FQDN, "127.61.0.1", vms=["web01", "sql01"]))
    with running_lab(config) as emulator, sessions(emulator, FQDN) as opened:
        yield opened[FQDN]


def test_get_vm_object_shape(hv: HostSession) -> None:
    out = hv.ok("Get-VM", Name="web01")
    assert len(out) == 1
    vm = out[0]
    assert vm.types == VM_TYPES
    p = props(vm)
    assert not vm.extended_properties  # real .NET properties are adapted, not note properties
    assert p["Name"] == p["VMName"] == "web01"
    assert uuid.UUID(str(p["VMId"])) == uuid.UUID(str(p["Id"]))
    assert str(p["State"]) == "Running"
    assert p["State"].types[:2] == ["Microsoft.HyperV.PowerShell.VMState", "System.Enum"]
    assert str(p["ReplicationState"]) == "Disabled"
    assert str(p["ReplicationHealth"]) == "NotApplicable"
    assert str(p["ReplicationMode"]) == "None"
    assert p["MemoryStartup"] == 1024**3
    assert p["Generation"] == 2
    assert p["ComputerName"] == "HV1"
    assert len(p["HardDrives"]) == 1 and "web01" in p["HardDrives"][0]


def test_get_vm_lists_all_and_filters_by_wildcard(hv: HostSession) -> None:
    names = {props(v)["Name"] for v in hv.ok("Get-VM")}
    assert {"web01", "sql01"} <= names
    assert [props(v)["Name"] for v in hv.ok("Get-VM", Name="sq*")] == ["sql01"]
    assert hv.ok("Get-VM", Name="zz*") == []


def test_get_vm_missing_name_is_a_non_terminating_error(hv: HostSession) -> None:
    outcome = hv.run("Get-VM", Name=["WEB01", "ghost"])  # names match ignoring case (OrdinalIgnoreCase)
    assert [props(v)["Name"] for v in outcome.output] == ["web01"]
    assert not outcome.had_errors  # non-terminating: the pipeline completes
    error = outcome.error
    assert str(error) == 'Hyper-V was unable to find a virtual machine with name "ghost".'
    # GetVM.cs resolves names in ErrorDisplayMode.WriteWarning: InvalidParameter with the name as target.
    assert error.fq_error == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
    assert ErrorCategory(error.category) == ErrorCategory.InvalidArgument
    assert error.reason == "VirtualizationException" and error.target_object == "ghost"
    # Other cmdlets resolve names in WriteError mode: ObjectNotFound, no target.
    stop = hv.run("Stop-VM", Name="ghost")
    assert stop.error.fq_error == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.StopVM"
    assert (
        ErrorCategory(stop.error.category) == ErrorCategory.ObjectNotFound
        and stop.error.target_object is None
    )


def test_get_vm_error_action_stop_terminates(hv: HostSession) -> None:
    outcome = hv.run("Get-VM", Name="ghost", ErrorAction="Stop")
    assert outcome.had_errors
    assert "ghost" in str(outcome.error)


def test_new_vm_defaults_and_disk(hv: HostSession) -> None:
    # pypsrp sends every Python int as I32: larger sizes go as text, converted by the binder like PowerShell.
    out = hv.ok(
        "New-VM",
        Name="app01",
        MemoryStartupBytes=str(2 * 1024**3),
        Generation=2,
        NewVHDPath="D:\\VMs\\app01.vhdx",
        NewVHDSizeBytes=str(60 * 1024**3),
    )
    p = props(out[0])
    assert (p["Name"], str(p["State"]), p["Generation"], p["MemoryStartup"]) == (
        "app01",
        "Off",
        2,
        2 * 1024**3,
    )
    assert "app01" in p["HardDrives"][0]
    bare = props(hv.ok("New-VM", Name="bare01", NoVHD=None)[0])
    assert (bare["Generation"], bare["HardDrives"]) == (1, [])


def test_new_vm_validation(hv: HostSession) -> None:
    outcome = hv.run("New-VM", Name="bad", Generation=3)
    assert outcome.had_errors
    assert "ParameterArgumentValidationError" in outcome.error.fq_error


def test_start_stop_vm_with_passthru_and_warning(hv: HostSession) -> None:
    hv.ok("New-VM", Name="power01")
    started = hv.ok("Start-VM", Name="power01", Passthru=None)
    assert str(props(started[0])["State"]) == "Running"
    again = hv.run("Start-VM", Name="power01")
    assert not again.errors and again.output == []
    assert again.warnings == ["The virtual machine 'power01' is already in the specified state."]
    hv.ok("Stop-VM", "Force", Name="power01")
    assert str(props(hv.ok("Get-VM", Name="power01")[0])["State"]) == "Off"


def test_stop_vm_missing_vm(hv: HostSession) -> None:
    outcome = hv.run("Stop-VM", Name="ghost", Force=None)
    assert outcome.error.fq_error == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.StopVM"


def test_remove_vm_requires_off_and_confirmation(hv: HostSession) -> None:
    hv.ok("New-VM", Name="gone01")
    hv.ok("Start-VM", Name="gone01")
    running = hv.run("Remove-VM", "Force", Name="gone01")
    assert "turned off" in str(running.error)
    hv.ok("Stop-VM", "Force", Name="gone01")
    prompt = hv.run("Remove-VM", Name="gone01")  # ConfirmImpact High without -Force or -Confirm:$false
    assert prompt.had_errors and "HostException" in prompt.error.fq_error
    hv.ok("Remove-VM", Name="gone01", Confirm=False)
    assert hv.run("Get-VM", Name="gone01").error.fq_error.startswith("InvalidParameter,")


def test_get_vm_snapshot_without_recovery_points(hv: HostSession) -> None:
    assert hv.ok("Get-VMSnapshot", VMName="web01") == []
    # GetVMSnapshot.ValidateOperandList: a -SnapshotType or -Name filter matching nothing is ObjectNotFound.
    none = hv.run("Get-VMSnapshot", VMName="web01", SnapshotType="Replica")
    assert none.error.fq_error == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMSnapshot"
    missing = hv.run("Get-VMSnapshot", VMName="ghost")
    assert missing.error.fq_error == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMSnapshot"
    bad = hv.run("Get-VMSnapshot", VMName="web01", SnapshotType="Sideways")
    assert bad.had_errors and "SnapshotType" in str(bad.error)


def pipeline(hv: HostSession, *commands: tuple[str, dict[str, object]]) -> tuple[list[object], list[object]]:
    """Cmdlets piped into each other (named parameters only), as the provider sends them."""
    ps = PowerShell(hv.pool)
    for name, params in commands:
        ps.add_cmdlet(name)
        for key, value in params.items():
            ps.add_parameter(key, value)
    return ps.invoke(), list(ps.streams.error)


def test_get_vm_by_id_piped_into_the_vm_object_parameter_sets(hv: HostSession) -> None:
    """GetVM.cs: -Id is a System.Guid in the "Id" set; VM objects bind to -VM ("VMObject" sets) of the cmdlets
    after it, so a name shared by several VMs never widens the selection."""
    hv.ok("New-VM", Name="twin01")
    hv.ok("New-VM", Name="twin01")
    first, second = (str(props(v)["Id"]) for v in hv.ok("Get-VM", Name="twin01"))
    assert [str(props(v)["Id"]) for v in hv.ok("Get-VM", Id=first.upper())] == [first]
    out, errors = pipeline(hv, ("Get-VM", {"Id": first}), ("Remove-VM", {"Force": True}))
    assert errors == [] and [str(props(v)["Id"]) for v in hv.ok("Get-VM", Name="twin01")] == [second]
    bad = hv.run("Get-VM", Id="not-a-guid")
    assert bad.had_errors and 'to type "System.Guid"' in str(bad.errors[0])
    gone = hv.run("Get-VM", Id=str(uuid.uuid4()))
    assert gone.output == [] and gone.error.fq_error.startswith("ObjectNotFound")
    out, errors = pipeline(hv, ("Get-VM", {"Id": str(uuid.uuid4())}), ("Remove-VM", {"Force": True}))
    assert out == [] and len(errors) == 1  # Get-VM's not-found; Remove-VM gets no input and does nothing


def test_get_vmreplication_filters_exist_only_with_vmname(hv: HostSession) -> None:
    """GetVMReplication.cs declares -ReplicationMode and the other filters in the "VMName" set only: with
    them, a piped VM object has no parameter to bind to (the engine's InputObjectNotBound)."""
    web = str(props(hv.ok("Get-VM", Name="web01")[0])["Id"])
    out, errors = pipeline(hv, ("Get-VM", {"Id": web}), ("Get-VMReplication", {"ReplicationMode": "Primary"}))
    assert out == [] and str(errors[0].fq_error).startswith("InputObjectNotBound,")


def test_get_vm_hard_disk_drive(hv: HostSession) -> None:
    """GetVMHardDiskDrive.cs: the VM's disks as HardDiskDrive objects (Path as stored), -VM piped."""
    disks = hv.ok("Get-VMHardDiskDrive", VMName="web01")
    assert disks[0].types[:2] == [
        "Microsoft.HyperV.PowerShell.HardDiskDrive",
        "Microsoft.HyperV.PowerShell.Drive",
    ]
    p = props(disks[0])
    assert p["Path"] == "C:\\ProgramData\\Microsoft\\Windows\\Virtual Hard Disks\\web01.vhdx"
    assert (str(p["ControllerType"]), p["ControllerNumber"], p["ControllerLocation"]) == ("SCSI", 0, 0)
    assert hv.ok("Get-VMHardDiskDrive", VMName="web01", ControllerLocation=1) == []
    ps = PowerShell(hv.pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web01").add_cmdlet("Get-VMHardDiskDrive")
    assert [props(d)["Path"] for d in ps.invoke()] == [p["Path"]]
    missing = hv.run("Get-VMHardDiskDrive", VMName="ghost")
    assert missing.error.fq_error == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMHardDiskDrive"
