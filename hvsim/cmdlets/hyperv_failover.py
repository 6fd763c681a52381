"""Failover cmdlets: Start-VMFailover (-Prepare on the primary, -AsTest or plain on the replica),
Stop-VMFailover and Complete-VMFailover (§2.8, §3.2 #11-#17 and §3.3 of the Hyper-V reference).

Parameter sets, the order of the checks and the error kinds follow StartVMFailover.cs, StopVMFailover.cs and
CompleteVMFailover.cs of the in-box module (docs/hvsim.md); the message texts of VMMS are hvsim's.
"""

from __future__ import annotations

import dataclasses
import uuid

from psrpcore.types import ErrorRecord

from hvsim.cmdlets.base import PASSTHRU, SWITCH, BoundArguments, CmdletContext, Param, cmdlet, object_type
from hvsim.cmdlets.hyperv_common import (
    COMMANDS,
    INVALID_PARAMETER,
    INVALID_STATE,
    hyperv_error,
    invalid_state,
    not_applicable,
    property_value,
    select_vms,
    vm_failure,
    vm_params,
)
from hvsim.cmdlets.hyperv_objects import VM_SNAPSHOT_TN, vm_object
from hvsim.cmdlets.hyperv_replication import connection_error
from hvsim.hyperv import NetworkAdapter, Replication, VirtualMachine
from hvsim.network import ReplicationCheckError
from hvsim.scheduler import refresh_health, replica_leg

NAME_SETS = ("VMName", "VMName_Test")
OBJECT_SETS = ("VMObject", "VMObject_Test")
SNAPSHOT_SETS = ("VMSnapshot", "VMSnapshot_Test")
TEST_SETS = ("VMName_Test", "VMObject_Test", "VMSnapshot_Test")
# StartVMFailover.ValidateReplicationForFailover: the states a replica may fail over from.
FAILOVER_STATES = ("Replicating", "Resynchronizing", "Suspended", "WaitingForUpdateCompletion")
RECOVERY_SNAPSHOT_TYPES = ("Replica", "AppConsistentReplica", "SyncedReplica")


def _object_state_error(ctx: CmdletContext) -> ErrorRecord:
    """OperationFailed_InvalidState: the VM is not off (the VM's power state, not its replication state)."""
    return hyperv_error(
        ctx, INVALID_STATE, "The operation cannot be performed while the object is in its current state."
    )


@cmdlet(
    "Start-VMFailover",
    f"{COMMANDS}.StartVMFailover",
    [
        *vm_params(name_sets=NAME_SETS, object_sets=OBJECT_SETS),
        Param(
            "VMRecoverySnapshot",
            object_type(VM_SNAPSHOT_TN[0]),
            aliases=("VMRecoveryCheckpoint",),
            position=0,
            sets=SNAPSHOT_SETS,
            from_pipeline=True,
            mandatory=SNAPSHOT_SETS,
        ),
        Param("AsTest", SWITCH, sets=TEST_SETS, mandatory=TEST_SETS),
        Param("Prepare", SWITCH, sets=("VMName", "VMObject")),
        Param("AsJob", SWITCH),
        PASSTHRU,
    ],
    default_set="VMName",
    supports_should_process=True,
    confirm_impact="High",
)
def start_vm_failover(ctx: CmdletContext, args: BoundArguments) -> None:
    snapshot = args.get("VMRecoverySnapshot")
    if snapshot is not None:
        vm = ctx.host.hyperv.vm_by_id(str(property_value(snapshot, "VMId") or ""))
        vms = [vm] if vm is not None else []
    else:
        vms = select_vms(ctx, args)
    for vm in vms:
        refusal = _refusal(ctx, args, vm)
        if refusal is not None:
            ctx.write_error(refusal)
            continue
        if not ctx.should_process(vm.name, "Start-VMFailover"):
            continue
        rep = vm.replication
        assert rep is not None  # _refusal refused VMs without replication
        if args.get("Prepare"):
            if not _prepare(ctx, vm, rep):
                continue
            written = vm
        elif args.get("AsTest"):
            test_vm = _test_failover(ctx, vm, rep)
            if test_vm is None:
                continue
            written = test_vm
        else:
            # Suspended and Resynchronizing legs are first forced back to Replicating (StartVMFailover.cs);
            # the VM is not started.
            rep.state = "FailedOverWaitingCompletion"
            refresh_health(rep, ctx.lab.now())
            written = vm
        if args.get("AsTest") or args.get("PassThru"):
            ctx.write_output(vm_object(ctx.host.hyperv, written, ctx.lab.now()))


def _refusal(ctx: CmdletContext, args: BoundArguments, vm: VirtualMachine) -> ErrorRecord | None:
    """StartVMFailover.ValidateVirtualMachineAndReplicationState, in its order."""
    rep, mode = vm.replication, vm.replication_mode
    if rep is None or mode not in ("Primary", "Replica", "ExtendedReplica"):
        return not_applicable(ctx, vm)
    if mode == "Primary":
        if args.get("AsTest") or "VMRecoverySnapshot" in args:
            message = "'Prepare' is the only valid parameter for a failover on the primary virtual machine."
            return hyperv_error(ctx, INVALID_PARAMETER, message)
        if not args.get("Prepare"):
            return hyperv_error(ctx, INVALID_PARAMETER, "'Prepare' is not provided.")
        if rep.state != "Replicating":
            return invalid_state(ctx, vm)
        return _object_state_error(ctx) if vm.state != "Off" else None
    if args.get("Prepare"):
        # On a replica, -Prepare targets its extended leg (not emulated); an extended replica has none.
        return invalid_state(ctx, vm) if mode == "Replica" else not_applicable(ctx, vm)
    if vm.state != "Off":
        return _object_state_error(ctx)
    if rep.state not in FAILOVER_STATES or rep.last_replication_time is None:
        return invalid_state(ctx, vm)
    if args.get("AsTest") and rep.state in ("Resynchronizing", "WaitingForUpdateCompletion"):
        return invalid_state(ctx, vm)
    snapshot = args.get("VMRecoverySnapshot")
    if snapshot is not None and (
        str(property_value(snapshot, "VMId")) != vm.id
        or getattr(property_value(snapshot, "SnapshotType"), "name", None) not in RECOVERY_SNAPSHOT_TYPES
    ):
        point_id = property_value(snapshot, "Id")
        message = f"The snapshot '{point_id}' is not a recovery snapshot of virtual machine '{vm.name}'."
        return hyperv_error(ctx, INVALID_PARAMETER, message)
    return None


def _prepare(ctx: CmdletContext, vm: VirtualMachine, rep: Replication) -> bool:
    """§3.2 #13: the primary sends what it has not sent yet, then stays PreparedForFailover (and off)."""
    now = ctx.lab.now()
    try:
        _, replica_vm = replica_leg(ctx.lab, ctx.host, vm, now)
    except ReplicationCheckError as exc:
        connection_error(ctx, vm, exc, "prepare the failover of")
        return False
    for leg in (rep, replica_vm.replication):
        assert leg is not None
        leg.last_replication_time = now
    rep.state, rep.next_cycle_at, rep.stats.pending_bytes = "PreparedForFailover", None, 0
    refresh_health(rep, now)
    return True


def _test_failover(ctx: CmdletContext, vm: VirtualMachine, rep: Replication) -> VirtualMachine | None:
    """§3.2 #11: a VM "<name> - Test" with a new id, from the chosen (or latest) point, on differencing disks
    of the replica's, its network adapters unconnected; replication goes on. One test VM at a time."""
    hyperv = ctx.host.hyperv
    if rep.test_vm_id and hyperv.vm_by_id(rep.test_vm_id) is not None:
        message = (
            f"Hyper-V failed to start a test failover of virtual machine '{vm.name}': a test virtual machine "
            "already exists."
        )
        ctx.write_error(vm_failure(ctx, vm, message))
        return None
    test_vm = hyperv.add_vm(
        f"{vm.name} - Test",
        generation=vm.generation,
        memory_startup_bytes=vm.memory_startup_bytes,
        path=vm.path,
        hard_disks=[
            dataclasses.replace(d, path=f"{d.path.rsplit('.', 1)[0]}_{uuid.uuid4().hex[:8]}.avhdx")
            for d in vm.hard_disks
        ],
        now=ctx.lab.now(),
    )
    test_vm.test_of = vm.id
    test_vm.network_adapters = [NetworkAdapter(name=a.name) for a in vm.network_adapters]
    rep.test_vm_id = test_vm.id
    return test_vm


@cmdlet(
    "Stop-VMFailover",
    f"{COMMANDS}.StopVMFailover",
    [
        *vm_params(name_sets=("VMName",), object_sets=("VMObject",)),
        Param("AsJob", SWITCH),
        PASSTHRU,
    ],
    default_set="VMName",
    supports_should_process=True,
)
def stop_vm_failover(ctx: CmdletContext, args: BoundArguments) -> None:
    """§3.2 #12/#14/#16: removes the test VM if there is one (stopping it first); otherwise turns the VM off
    and reverts the failover or the -Prepare."""
    hyperv, now = ctx.host.hyperv, ctx.lab.now()
    for vm in select_vms(ctx, args):
        rep = vm.replication
        if rep is None or vm.replication_mode not in ("Primary", "Replica", "ExtendedReplica"):
            ctx.write_error(not_applicable(ctx, vm))
            continue
        test_vm = hyperv.vm_by_id(rep.test_vm_id) if rep.test_vm_id else None
        if test_vm is None and rep.state not in ("FailedOverWaitingCompletion", "PreparedForFailover"):
            ctx.write_error(invalid_state(ctx, vm))
            continue
        if not ctx.should_process(vm.name, "Stop-VMFailover"):
            continue
        if test_vm is not None:
            hyperv.remove_vm(test_vm)
            rep.test_vm_id = ""
        else:
            vm.state, vm.uptime_started = "Off", None
            rep.state = "Replicating"
            if rep.mode == "Primary":
                rep.next_cycle_at = now  # the next scheduler tick runs a cycle
            refresh_health(rep, now)
        if args.get("PassThru"):
            ctx.write_output(vm_object(hyperv, vm, now))


@cmdlet(
    "Complete-VMFailover",
    f"{COMMANDS}.CompleteVMFailover",
    [*vm_params(name_sets=("VMName",), object_sets=("VMObject",)), PASSTHRU],
    default_set="VMName",
    supports_should_process=True,
    confirm_impact="High",
)
def complete_vm_failover(ctx: CmdletContext, args: BoundArguments) -> None:
    """§3.2 #17: commits the failover; every other recovery point is deleted (irreversible)."""
    now = ctx.lab.now()
    for vm in select_vms(ctx, args):
        if not ctx.should_process(vm.name, "Complete-VMFailover"):
            continue
        rep = vm.replication
        if rep is None or rep.mode not in ("Replica", "ExtendedReplica"):
            ctx.write_error(not_applicable(ctx, vm))
            continue
        if rep.state != "FailedOverWaitingCompletion":
            ctx.write_error(invalid_state(ctx, vm))
            continue
        rep.state = "FailedOver"
        vm.recovery_points.clear()
        refresh_health(rep, now)
        if args.get("PassThru"):
            ctx.write_output(vm_object(ctx.host.hyperv, vm, now))
