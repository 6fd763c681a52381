"""Virtual switches and VM network adapters: Get-/New-VMSwitch, Get-VMNetworkAdapter and
Connect-VMNetworkAdapter, as much as a test failover on an isolated network needs (§2.8 of the Hyper-V
reference)."""

from __future__ import annotations

import uuid

from hvsim.cmdlets.base import (
    PASSTHRU,
    STRING,
    STRINGS,
    BoundArguments,
    CmdletContext,
    Param,
    array_of,
    cmdlet,
    enum_type,
    object_type,
)
from hvsim.cmdlets.hyperv_common import (
    COMMANDS,
    COMPUTER_NAME,
    OBJECT_NOT_FOUND,
    check_computer_name,
    fail,
    hyperv_error,
    is_wildcard,
    property_value,
    select_vms,
    vm_params,
    wildcard_match,
)
from hvsim.cmdlets.hyperv_objects import (
    VM_NETWORK_ADAPTER_TN,
    VMSwitchType,
    network_adapter_object,
    switch_object,
)
from hvsim.hyperv import NetworkAdapter, VirtualMachine, VirtualSwitch


def _switch_missing(name: str) -> str:
    return f'Hyper-V was unable to find a virtual switch with name "{name}".'


@cmdlet(
    "Get-VMSwitch",
    f"{COMMANDS}.GetVMSwitch",
    [
        Param("Name", STRINGS, aliases=("SwitchName",), position=0),
        Param("SwitchType", enum_type(VMSwitchType)),
        COMPUTER_NAME,
    ],
)
def get_vm_switch(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    hyperv = ctx.host.hyperv
    wanted_type = args.get("SwitchType")
    for name in args.get("Name") or ["*"]:
        matches = [s for s in hyperv.switches if wildcard_match(name, s.name)]
        if not matches and not is_wildcard(name):
            ctx.write_error(hyperv_error(ctx, OBJECT_NOT_FOUND, _switch_missing(name)))
        for switch in matches:
            if wanted_type is None or wanted_type.name == switch.switch_type:
                ctx.write_output(switch_object(hyperv, switch))


@cmdlet(
    "New-VMSwitch",
    f"{COMMANDS}.NewVMSwitch",
    [
        Param("Name", STRING, aliases=("SwitchName",), position=0, mandatory=True),
        # The NetAdapterName sets of an External switch are not emulated: hvsim hosts have no physical NICs.
        Param("SwitchType", enum_type(VMSwitchType), sets=("SwitchType",), mandatory=("SwitchType",)),
        COMPUTER_NAME,
    ],
    default_set="SwitchType",
    supports_should_process=True,
)
def new_vm_switch(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    switch_type = args["SwitchType"].name
    if switch_type == "External":
        fail(ctx, OBJECT_NOT_FOUND, "hvsim hosts have no physical network adapter for an External switch.")
    if not ctx.should_process(args["Name"], "New-VMSwitch"):
        return
    switch = VirtualSwitch(name=args["Name"], id=str(uuid.uuid4()), switch_type=switch_type)
    ctx.host.hyperv.switches.append(switch)
    ctx.write_output(switch_object(ctx.host.hyperv, switch))


@cmdlet(
    "Get-VMNetworkAdapter",
    f"{COMMANDS}.GetVMNetworkAdapter",
    [
        *vm_params(name_sets=("VMName",), object_sets=("VMObject",)),
        Param("Name", STRING),
    ],
    default_set="VMName",
)
def get_vm_network_adapter(ctx: CmdletContext, args: BoundArguments) -> None:
    name = args.get("Name")
    for vm in select_vms(ctx, args):
        for adapter in vm.network_adapters:
            if name is None or wildcard_match(name, adapter.name):
                ctx.write_output(network_adapter_object(ctx.host.hyperv, vm, adapter))


@cmdlet(
    "Connect-VMNetworkAdapter",
    f"{COMMANDS}.ConnectVMNetworkAdapter",
    [
        Param("VMName", STRINGS, position=0, sets=("Name_SwitchName",), mandatory=("Name_SwitchName",)),
        Param("Name", STRINGS, aliases=("VMNetworkAdapterName",), position=1, sets=("Name_SwitchName",)),
        Param(
            "VMNetworkAdapter",
            array_of(object_type(VM_NETWORK_ADAPTER_TN[0])),
            position=0,
            sets=("Obj_SwitchName",),
            from_pipeline=True,
            mandatory=("Obj_SwitchName",),
        ),
        Param("SwitchName", STRING, position=2, mandatory=True),
        PASSTHRU,
        COMPUTER_NAME,
    ],
    default_set="Name_SwitchName",
    supports_should_process=True,
)
def connect_vm_network_adapter(ctx: CmdletContext, args: BoundArguments) -> None:
    """Adapters chosen by VM name (and adapter name) or piped from Get-VMNetworkAdapter, connected to an
    existing switch of this host."""
    check_computer_name(ctx, args)
    hyperv = ctx.host.hyperv
    switch_name = args["SwitchName"]
    if not any(s.name.lower() == switch_name.lower() for s in hyperv.switches):
        fail(ctx, OBJECT_NOT_FOUND, _switch_missing(switch_name))
    for vm, adapter in _adapters(ctx, args):
        if not ctx.should_process(adapter.name, "Connect-VMNetworkAdapter"):
            continue
        adapter.switch_name = switch_name
        if args.get("PassThru"):
            ctx.write_output(network_adapter_object(hyperv, vm, adapter))


def _adapters(ctx: CmdletContext, args: BoundArguments) -> list[tuple[VirtualMachine, NetworkAdapter]]:
    hyperv = ctx.host.hyperv
    chosen: list[tuple[VirtualMachine, NetworkAdapter]] = []
    for obj in args.get("VMNetworkAdapter") or []:
        vm = hyperv.vm_by_id(str(property_value(obj, "VMId") or ""))
        name = str(property_value(obj, "Name") or "")
        adapter = next((a for a in vm.network_adapters if a.name == name), None) if vm else None
        if vm is None or adapter is None:
            message = f'Hyper-V was unable to find a network adapter with name "{name}".'
            ctx.write_error(hyperv_error(ctx, OBJECT_NOT_FOUND, message))
            continue
        chosen.append((vm, adapter))
    names = args.get("Name")
    for vm in select_vms(ctx, args) if "VMName" in args else []:
        chosen += [
            (vm, a) for a in vm.network_adapters if not names or any(wildcard_match(n, a.name) for n in names)
        ]
    return chosen
