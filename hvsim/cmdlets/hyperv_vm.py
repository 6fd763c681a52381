"""Hyper-V VM cmdlets: Get-VM, New-VM, Start-VM, Stop-VM, Remove-VM and Get-VMSnapshot (recovery points)."""

from __future__ import annotations

import dataclasses

from psrpcore.types import ErrorRecord

from hvsim.cmdlets.base import (
    FORCE,
    INT32,
    INT64,
    PASSTHRU,
    STRING,
    STRINGS,
    SWITCH,
    UINT64,
    BoundArguments,
    CmdletContext,
    Param,
    cmdlet,
    enum_type,
)
from hvsim.cmdlets.errors import WrittenError
from hvsim.cmdlets.hyperv_common import (
    COMMANDS,
    COMPUTER_NAME,
    GUID,
    INVALID_PARAMETER,
    OBJECT_NOT_FOUND,
    check_computer_name,
    confirm,
    fail,
    find_vms,
    invalid_parameter,
    is_wildcard,
    select_vms,
    vm_failure,
    vm_params,
    wildcard_match,
)
from hvsim.cmdlets.hyperv_objects import (
    ControllerType,
    SnapshotType,
    hard_disk_drive_object,
    snapshot_object,
    vm_object,
)
from hvsim.hyperv import DEFAULT_VHD_DIR, DEFAULT_VM_PATH, GIB, HardDisk, VirtualMachine

VM_SETS = ("Name", "VMObject")


@cmdlet(
    "Get-VM",
    f"{COMMANDS}.GetVM",
    [
        Param("Name", STRINGS, aliases=("VMName",), position=0, sets=("Name",)),
        # Guid? in the "Id" set, position 0 there (GetVM.cs); -Name, declared first, keeps positional ones.
        Param("Id", GUID, position=0, sets=("Id",)),
        COMPUTER_NAME,
    ],
    default_set="Name",
)
def get_vm(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    hyperv, now = ctx.host.hyperv, ctx.lab.now()
    if "Id" in args:
        vm = hyperv.vm_by_id(args["Id"])
        if vm is None:
            # GetVM.cs: VirtualizationObjectLocator.GetVirtualMachineById throws ObjectNotFound (no target).
            message = f'Hyper-V was unable to find a virtual machine with id "{args["Id"]}".'
            fail(ctx, OBJECT_NOT_FOUND, message)
        ctx.write_output(vm_object(hyperv, vm, now))
        return
    # GetVM.cs resolves names in ErrorDisplayMode.WriteWarning: a missing name is InvalidParameter.
    for vm in find_vms(ctx, args.get("Name"), None, default_all=True, missing=INVALID_PARAMETER):
        ctx.write_output(vm_object(hyperv, vm, now))


@cmdlet(
    "New-VM",
    f"{COMMANDS}.NewVM",
    [
        Param("Name", STRING, aliases=("VMName",), position=0),
        Param("MemoryStartupBytes", INT64, position=1, value_range=(32 * 1024**2, 12 * 1024**4)),
        Param("Generation", INT32, aliases=("Gen",), choices=("1", "2")),
        Param("NewVHDPath", STRING, sets=("NewVHD",), mandatory=("NewVHD",)),
        Param("NewVHDSizeBytes", UINT64, sets=("NewVHD",), mandatory=("NewVHD",)),
        Param("VHDPath", STRING, sets=("ExistingVHD",), mandatory=("ExistingVHD",)),
        Param("NoVHD", SWITCH, sets=("No VHD",)),
        Param("Path", STRING),
        Param("SwitchName", STRING),
        Param("Force", SWITCH),
        COMPUTER_NAME,
    ],
    default_set="No VHD",
    supports_should_process=True,
)
def new_vm(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    name = args.get("Name") or "New Virtual Machine"
    disks: list[HardDisk] = []
    for key, size in (("NewVHDPath", args.get("NewVHDSizeBytes")), ("VHDPath", None)):
        path = args.get(key)
        if path:
            full = path if ":" in path or path.startswith("\\\\") else f"{DEFAULT_VHD_DIR}\\{path}"
            disk = HardDisk(path=full)
            if size:
                disk.size_bytes, disk.data_bytes = size, min(disk.data_bytes, size // 8)
            disks.append(disk)
    if not ctx.should_process(name, "New-VM"):
        return
    vm = ctx.host.hyperv.add_vm(
        name,
        generation=args.get("Generation") or 1,
        memory_startup_bytes=args.get("MemoryStartupBytes") or GIB,
        path=args.get("Path") or DEFAULT_VM_PATH,
        hard_disks=disks,
        now=ctx.lab.now(),
    )
    ctx.write_output(vm_object(ctx.host.hyperv, vm, ctx.lab.now()))


def _change_power(ctx: CmdletContext, args: BoundArguments, running: bool) -> None:
    now = ctx.lab.now()
    for vm in select_vms(ctx, args):
        if running and _cannot_start(vm):
            ctx.write_error(_replica_cannot_start(ctx, vm))
            continue
        target = "Running" if running else "Off"
        if vm.state == target:
            ctx.write_warning(f"The virtual machine '{vm.name}' is already in the specified state.")
        elif ctx.should_process(vm.name, ctx.spec.name):
            vm.state = target
            vm.uptime_started = now if running else None
        if args.get("Passthru"):
            ctx.write_output(vm_object(ctx.host.hyperv, vm, now))


def _cannot_start(vm: VirtualMachine) -> bool:
    """A replica VM starts only once failed over; a primary prepared for planned failover stays off."""
    if vm.replication_mode == "Replica":
        return vm.replication_state not in ("FailedOverWaitingCompletion", "FailedOver")
    return vm.replication_state == "PreparedForFailover"


def _replica_cannot_start(ctx: CmdletContext, vm: VirtualMachine) -> ErrorRecord:
    return vm_failure(
        ctx,
        vm,
        f"'{vm.name}' failed to start: the virtual machine is a Replica that has not failed over, or a "
        "primary prepared for failover; start (or stop) the failover first.",
    )


@cmdlet(
    "Start-VM",
    f"{COMMANDS}.StartVM",
    [
        *vm_params(name_sets=("Name",), object_sets=("VMObject",)),
        PASSTHRU,
        Param("AsJob", SWITCH),
    ],
    default_set="Name",
    supports_should_process=True,
)
def start_vm(ctx: CmdletContext, args: BoundArguments) -> None:
    _change_power(ctx, args, running=True)


@cmdlet(
    "Stop-VM",
    f"{COMMANDS}.StopVM",
    [
        *vm_params(name_sets=("Name",), object_sets=("VMObject",)),
        PASSTHRU,
        FORCE,
        Param("TurnOff", SWITCH),
        Param("Save", SWITCH),
        Param("AsJob", SWITCH),
    ],
    default_set="Name",
    supports_should_process=True,
)
def stop_vm(ctx: CmdletContext, args: BoundArguments) -> None:
    if args.get("Save") and args.get("TurnOff"):  # StopVM.cs ValidateParameters
        invalid_parameter(ctx, "The Save and TurnOff parameters are mutually exclusive.")
    _change_power(ctx, args, running=False)


@cmdlet(
    "Remove-VM",
    f"{COMMANDS}.RemoveVM",
    [
        *vm_params(name_sets=("Name",), object_sets=("VMObject",)),
        PASSTHRU,
        FORCE,
        Param("AsJob", SWITCH),
    ],
    default_set="Name",
    supports_should_process=True,
)
def remove_vm(ctx: CmdletContext, args: BoundArguments) -> None:
    """RemoveVM.cs: ShouldProcess (ConfirmImpact Medium), then ShouldContinue, which only -Force skips, per
    VM; VMMS then refuses a VM that is not off."""
    now = ctx.lab.now()
    for vm in select_vms(ctx, args):
        if not ctx.should_process(vm.name, "Remove-VM"):
            continue
        try:
            query = f'Are you sure you want to remove virtual machine "{vm.name}"?'
            confirm(ctx, query, bool(args.get("Force")))
        except WrittenError as refused:
            ctx.write_error(refused.record)
            continue
        if vm.state != "Off":
            message = f"'{vm.name}' failed to delete: the virtual machine must be turned off first."
            ctx.write_error(vm_failure(ctx, vm, message))
            continue
        if args.get("Passthru"):
            ctx.write_output(vm_object(ctx.host.hyperv, vm, now))
        ctx.host.hyperv.remove_vm(vm)


@cmdlet(
    "Get-VMSnapshot",
    f"{COMMANDS}.GetVMSnapshot",
    [
        # GetVMSnapshot.cs: -VMName has no "Name" alias here; -Name is the snapshot's name (a wildcard).
        dataclasses.replace(vm_params(name_sets=("VMName",))[0], aliases=()),
        *vm_params(object_sets=("VMObject",))[1:],
        Param("Name", STRING, position=1, sets=("VMName", "VMObject")),
        Param("SnapshotType", enum_type(SnapshotType), sets=("VMName", "VMObject")),
        Param("Id", STRING, sets=("Id",), mandatory=("Id",)),
    ],
    default_set="VMName",
)
def get_vm_snapshot(ctx: CmdletContext, args: BoundArguments) -> None:
    hyperv = ctx.host.hyperv
    wanted_type = args.get("SnapshotType")
    name = args.get("Name")
    vms = select_vms(ctx, args, default_all="Id" in args)
    found = 0
    for vm in vms:
        for point in sorted(vm.recovery_points, key=lambda p: p.creation_time):
            if wanted_type is not None and point.snapshot_type != wanted_type.name:
                continue
            if name and not _name_matches(name, point.name):
                continue
            if "Id" in args and point.id != args["Id"].lower():
                continue
            found += 1
            ctx.write_output(snapshot_object(hyperv, vm, point))
    # GetVMSnapshot.ValidateOperandList: nothing found by id, type or name is an error; none at all is not.
    if not found and ("Id" in args or wanted_type is not None or name):
        fail(ctx, OBJECT_NOT_FOUND, "Unable to find a snapshot matching the given criteria.")


def _name_matches(pattern: str, value: str) -> bool:
    return wildcard_match(pattern, value) if is_wildcard(pattern) else pattern.lower() == value.lower()


@cmdlet(
    "Get-VMHardDiskDrive",
    f"{COMMANDS}.GetVMHardDiskDrive",
    [
        *vm_params(name_sets=("VMName",), object_sets=("VMObject",)),
        Param("ControllerType", enum_type(ControllerType)),
        Param("ControllerNumber", INT32),
        Param("ControllerLocation", INT32),
    ],
    default_set="VMName",
)
def get_vm_hard_disk_drive(ctx: CmdletContext, args: BoundArguments) -> None:
    """The VMs' virtual hard disks (GetVMHardDiskDrive.cs; the VMSnapshot and VMDriveController sets are not
    emulated), filtered by controller as given."""
    filters = {
        "controller_type": args["ControllerType"].name if "ControllerType" in args else None,
        "controller_number": args.get("ControllerNumber"),
        "controller_location": args.get("ControllerLocation"),
    }
    for vm in select_vms(ctx, args):
        for index, disk in enumerate(vm.hard_disks):
            if all(value is None or getattr(disk, key) == value for key, value in filters.items()):
                ctx.write_output(hard_disk_drive_object(ctx.host.hyperv, vm, index))
