"""Per-VM replication cmdlets and their state machine: Enable-, Set-, Get-, Remove-,
Measure-VMReplication, Start-/Stop-/Import-VMInitialReplication, Suspend-/Resume-VMReplication."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from psrpcore.types import ErrorRecord

from hvsim.cmdlets.base import (
    BOOL,
    INT32,
    PASSTHRU,
    STRING,
    STRINGS,
    SWITCH,
    BoundArguments,
    CmdletContext,
    CmdletFunction,
    Param,
    array_of,
    cmdlet,
    enum_type,
    object_type,
)
from hvsim.cmdlets.hyperv_common import (
    COMMANDS,
    DATETIME,
    INVALID_OPERATION,
    INVALID_PARAMETER,
    INVALID_STATE,
    OBJECT_NOT_FOUND,
    OPERATION_FAILED,
    PORT_RANGE,
    TIMESPAN,
    ErrorKind,
    check_computer_name,
    check_thumbprint_for,
    connection_failed,
    fail,
    find_vms,
    hyperv_error,
    invalid_parameter,
    invalid_state,
    not_applicable,
    not_enabled,
    property_value,
    require_dns_name,
    select_vms,
    vm_failure,
    vm_params,
    wildcard_match,
)
from hvsim.cmdlets.hyperv_objects import (
    VM_REPLICATION_TN,
    ReplicationAuthenticationType,
    VMReplicationHealthState,
    VMReplicationMode,
    VMReplicationRelationshipType,
    VMReplicationState,
    leg_mode,
    leg_type,
    replication_health_object,
    replication_object,
)
from hvsim.hyperv import (
    ANY_SERVER,
    DEFAULT_FREQUENCY_SEC,
    Replication,
    ReplicationSettings,
    ReplicationStats,
    VirtualMachine,
)
from hvsim.network import ReplicationCheckError, ReplicationTarget, check_connection, normalize_thumbprint
from hvsim.scheduler import begin_initial_replication, refresh_health

MAX_SCHEDULE_AHEAD = timedelta(days=7)
AS_REPLICA_SETS = ("VMName_AsReplica", "VMObject_AsReplica")
TARGET_SETS = ("VMName", "VMObject")

# The settings Enable-VMReplication and Set-VMReplication share: parameter -> ReplicationSettings field.
_SETTING_FIELDS = {
    "ReplicaServerName": "replica_server_name",
    "ReplicaServerPort": "replica_server_port",
    "AuthenticationType": "authentication_type",
    "CertificateThumbprint": "certificate_thumbprint",
    "ReplicationFrequencySec": "frequency_sec",
    "RecoveryHistory": "recovery_history",
    "VSSSnapshotFrequencyHour": "vss_frequency_hour",
    "CompressionEnabled": "compression_enabled",
    "ReplicateHostKvpItems": "replicate_host_kvp_items",
    "BypassProxyServer": "bypass_proxy_server",
    "AutoResynchronizeEnabled": "auto_resynchronize_enabled",
    "AutoResynchronizeIntervalStart": "auto_resynchronize_start",
    "AutoResynchronizeIntervalEnd": "auto_resynchronize_end",
    "ExcludedVhdPath": "excluded_disks",
}


def _setting_params(sets: tuple[str, ...], *, target_mandatory: bool) -> list[Param]:
    mandatory = sets if target_mandatory else False
    return [
        Param(
            "ReplicaServerName",
            STRING,
            aliases=("ReplicaServer",),
            position=1,
            sets=sets,
            mandatory=mandatory,
        ),
        Param(
            "ReplicaServerPort",
            INT32,
            aliases=("ReplicaPort",),
            position=2,
            sets=sets,
            mandatory=mandatory,
            value_range=PORT_RANGE,
        ),
        Param(
            "AuthenticationType",
            enum_type(ReplicationAuthenticationType),
            aliases=("AuthType",),
            position=3,
            sets=sets,
            mandatory=mandatory,
        ),
        Param("CertificateThumbprint", STRING, aliases=("Thumbprint", "Cert"), sets=sets),
        Param(
            "ReplicationFrequencySec", INT32, aliases=("RepFreq",), choices=("30", "300", "900"), sets=sets
        ),
        Param("RecoveryHistory", INT32, aliases=("RecHist",), value_range=(0, 24), sets=sets),
        Param("VSSSnapshotFrequencyHour", INT32, aliases=("VSSFreq",), value_range=(1, 12), sets=sets),
        Param("CompressionEnabled", BOOL, sets=sets),
        Param("ReplicateHostKvpItems", BOOL, sets=sets),
        Param("BypassProxyServer", BOOL, sets=sets),
        Param("EnableWriteOrderPreservationAcrossDisks", BOOL, sets=sets),
        Param("ExcludedVhdPath", STRINGS, sets=sets),
        Param("AutoResynchronizeEnabled", BOOL, aliases=("AutoResync",), sets=sets),
        Param("AutoResynchronizeIntervalStart", TIMESPAN, aliases=("AutoResyncStart",), sets=sets),
        Param("AutoResynchronizeIntervalEnd", TIMESPAN, aliases=("AutoResyncEnd",), sets=sets),
    ]


_RELATIONSHIP = Param(
    "ReplicationRelationshipType", enum_type(VMReplicationRelationshipType), aliases=("Relationship",)
)


def _per_vm_cmdlet(name: str, *params: Param) -> Callable[[CmdletFunction], CmdletFunction]:
    """Register a cmdlet that acts on VMs chosen by -VMName or -VM, with -PassThru and ShouldProcess."""
    return cmdlet(
        name,
        f"{COMMANDS}.{name.replace('-', '')}",
        [*vm_params(name_sets=("VMName",), object_sets=("VMObject",)), *params, PASSTHRU],
        default_set="VMName",
        supports_should_process=True,
    )


def _connect(
    ctx: CmdletContext, vm: VirtualMachine, settings: ReplicationSettings, now: datetime, failure: str
) -> ReplicationTarget | None:
    """The replica target `settings` name, once every connection check passed; None after writing the
    VM's error."""
    try:
        return check_connection(
            ctx.lab,
            ctx.host,
            settings.replica_server_name,
            settings.replica_server_port,
            settings.authentication_type,
            settings.certificate_thumbprint,
            now,
        )
    except ReplicationCheckError as exc:
        connection_error(ctx, vm, exc, failure)
        return None


def connection_error(
    ctx: CmdletContext, vm: VirtualMachine, exc: ReplicationCheckError, failure: str
) -> None:
    ctx.write_error(connection_failed(ctx, f"Hyper-V failed to {failure} virtual machine '{vm.name}'", exc))


def _validate_settings(ctx: CmdletContext, args: BoundArguments, current: ReplicationSettings | None) -> None:
    """Parameter rules of §2.3/§2.4 that the binder cannot express; they run before any state check."""
    if "ReplicaServerName" in args:
        require_dns_name(ctx, args["ReplicaServerName"])
    auth = args.get("AuthenticationType")
    auth_name = auth.name if auth is not None else (current.authentication_type if current else None)
    if auth_name is not None and (auth is not None or "CertificateThumbprint" in args):
        given = args.get("CertificateThumbprint")
        thumbprint = given if given is not None else (current.certificate_thumbprint if current else "")
        check_thumbprint_for(ctx, auth_name, normalize_thumbprint(thumbprint or ""))
    vss = args.get("VSSSnapshotFrequencyHour")
    if vss is not None:
        if args.values.get("DisableVSSSnapshotReplication"):
            invalid_parameter(
                ctx, "'VSSSnapshotFrequencyHour' is not required for 'DisableVSSSnapshotReplication'."
            )
        history = args.get("RecoveryHistory", current.recovery_history if current else 0)
        if not history:
            invalid_parameter(
                ctx,
                "Application-consistent replication frequency can be specified only if recovery history has "
                "a non-zero value.",
            )
    if "EnableWriteOrderPreservationAcrossDisks" in args:
        ctx.write_warning(f"'EnableWriteOrderPreservationAcrossDisks' is not required for '{ctx.spec.name}'.")


def _settings_from(args: BoundArguments, base: ReplicationSettings) -> ReplicationSettings:
    changes: dict[str, Any] = {}
    for parameter, attribute in _SETTING_FIELDS.items():
        value = args.get(parameter)
        if value is not None:
            if parameter == "AuthenticationType":
                value = value.name
            elif parameter == "CertificateThumbprint":
                value = normalize_thumbprint(value or "")
            elif parameter == "ExcludedVhdPath":
                value = [path.strip() for path in value]
            changes[attribute] = value
    settings = dataclasses.replace(base, **changes)
    if settings.authentication_type == "Kerberos":
        settings.certificate_thumbprint = ""
    if settings.recovery_history == 0 or args.values.get("DisableVSSSnapshotReplication"):
        settings.vss_frequency_hour = 0
    return settings


def _check_excluded(ctx: CmdletContext, vm: VirtualMachine, settings: ReplicationSettings) -> bool:
    """-ExcludedVhdPath names attached disks by their exact path: EnableVMReplication.cs trims each path and
    compares it with string.Equals, i.e. ordinal and CASE-SENSITIVE, although NTFS paths are not."""
    attached = {d.path for d in vm.hard_disks}
    unknown = [p for p in settings.excluded_disks if p not in attached]
    if unknown:
        message = f"Virtual hard disk '{unknown[0]}' is not attached to virtual machine '{vm.name}'."
        ctx.write_error(hyperv_error(ctx, INVALID_PARAMETER, message))
        return False
    if vm.hard_disks and set(settings.excluded_disks) == attached:
        message = f"There is no supported virtual hard disk to replicate for virtual machine '{vm.name}'."
        ctx.write_error(hyperv_error(ctx, INVALID_OPERATION, message))
        return False
    return True


# --- Enable-VMReplication -----------------------------------------------------------------------------------


@cmdlet(
    "Enable-VMReplication",
    f"{COMMANDS}.EnableVMReplication",
    [
        *vm_params(name_sets=("VMName", "VMName_AsReplica"), object_sets=("VMObject", "VMObject_AsReplica")),
        *_setting_params(TARGET_SETS, target_mandatory=True),
        Param("AsReplica", SWITCH, sets=AS_REPLICA_SETS, mandatory=AS_REPLICA_SETS),
        Param("AllowedPrimaryServer", STRING, aliases=("AllowedPS",), sets=AS_REPLICA_SETS),
        PASSTHRU,
    ],
    default_set="VMName",
    supports_should_process=True,
)
def enable_vm_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    if args.get("AsReplica"):
        _enable_as_replica(ctx, args)
        return
    _validate_settings(ctx, args, None)
    now = ctx.lab.now()
    for vm in select_vms(ctx, args):
        if vm.replication_mode == "Primary":
            ctx.write_error(already_enabled(ctx, vm))
            continue
        if vm.replication_mode == "Replica":
            _enable_extended(ctx, args, vm, now)
            continue
        if vm.replication_mode != "None":  # TestReplica, ExtendedReplica (EnableVMReplication.cs)
            ctx.write_error(not_applicable(ctx, vm))
            continue
        settings = _settings_from(args, ReplicationSettings("", 0, "Kerberos"))
        if not _check_excluded(ctx, vm, settings) or not ctx.should_process(vm.name, "Enable-VMReplication"):
            continue
        target = _connect(ctx, vm, settings, now, "enable replication for")
        if target is None:
            continue
        if not _create_replica_vm(ctx, vm, settings, target, now):
            continue
        vm.replication = _sending_leg(ctx, settings, now)
        if args.get("PassThru"):
            ctx.write_output(replication_object(ctx.host.hyperv, vm))


def _sending_leg(ctx: CmdletContext, settings: ReplicationSettings, now: datetime) -> Replication:
    """A new leg this host sends on (a primary leg, or a replica VM's extended leg), before its initial
    replication (§3.2 #1)."""
    leg = Replication(
        mode="Primary",
        state="ReadyForInitialReplication",
        health="Warning",
        primary_server_name=ctx.host.fqdn,
        settings=settings,
        stats=ReplicationStats(monitoring_start=now),
    )
    refresh_health(leg, now)
    return leg


EXTENDED_FREQUENCIES = (300, 900)


def _enable_extended(ctx: CmdletContext, args: BoundArguments, vm: VirtualMachine, now: datetime) -> None:
    """§3.4 flow 6: Enable-VMReplication of a Replica VM makes its extended leg to a third host (hvsim makes
    there a VM in mode ExtendedReplica). Rules: 300 or 900 s and not more frequent than the leg it receives
    (SetVMReplication.ValidateAndSetReplicationFrequency), no application-consistent points, no disk
    selection (hyperv-replica reference §2.3, §3.4)."""
    rep = vm.replication
    assert rep is not None
    if vm.extended is not None:
        ctx.write_error(already_enabled(ctx, vm))
        return
    frequency = args.get("ReplicationFrequencySec", DEFAULT_FREQUENCY_SEC)
    if frequency not in EXTENDED_FREQUENCIES or frequency < rep.settings.frequency_sec:
        message = (
            "The replication frequency is not valid for extended replication: use 300 or 900 seconds, and "
            f"not more often than the replication it extends ({rep.settings.frequency_sec} seconds)."
        )
        ctx.write_error(hyperv_error(ctx, INVALID_PARAMETER, message))
        return
    for refused in ("VSSSnapshotFrequencyHour", "ExcludedVhdPath"):
        if refused in args:
            message = f"'{refused}' is not applicable to the extended replication of '{vm.name}'."
            ctx.write_error(hyperv_error(ctx, INVALID_PARAMETER, message))
            return
    settings = _settings_from(args, ReplicationSettings("", 0, "Kerberos"))
    if not ctx.should_process(vm.name, "Enable-VMReplication"):
        return
    target = _connect(ctx, vm, settings, now, "enable extended replication for")
    if target is None or not _create_replica_vm(ctx, vm, settings, target, now, mode="ExtendedReplica"):
        return
    vm.extended = _sending_leg(ctx, settings, now)
    if args.get("PassThru"):
        ctx.write_output(replication_object(ctx.host.hyperv, vm, vm.extended))


def already_enabled(ctx: CmdletContext, vm: VirtualMachine) -> ErrorRecord:
    message = (
        f"Replication has already been enabled on virtual machine '{vm.name}'. Please use the "
        "Set-VMReplication cmdlet to modify replication settings."
    )
    return hyperv_error(ctx, OPERATION_FAILED, message)


def _create_replica_vm(
    ctx: CmdletContext,
    vm: VirtualMachine,
    settings: ReplicationSettings,
    target: ReplicationTarget,
    now: datetime,
    mode: str = "Replica",
) -> bool:
    """§3.2 #1: the replica VM appears at once on the replica server (same VMId) under the storage path of
    the authorization entry that admitted the primary; a VM prepared with -AsReplica is used as it is."""
    replica, entry = target.host, target.entry
    existing = replica.hyperv.vm_by_id(vm.id)
    if existing is not None and not (
        existing.replication_mode == "Replica"
        and existing.replication_state == "WaitingForInitialReplication"
    ):
        ctx.write_error(
            vm_failure(
                ctx,
                vm,
                f"Hyper-V failed to enable replication for virtual machine '{vm.name}': a virtual machine "
                f"with the same ID already exists on the replica server '{replica.fqdn}' (remove it there "
                "with Remove-VM, or prepare it with Enable-VMReplication -AsReplica).",
            )
        )
        return False
    if existing is None:
        root = f"{entry.replica_storage_location.rstrip(chr(92))}\\Hyper-V Replica"
        disks_dir = f"{root}\\Virtual hard disks\\{vm.id.upper()}"
        disks = [
            dataclasses.replace(d, path=f"{disks_dir}\\{d.path.rsplit(chr(92), 1)[-1]}")
            for d in vm.hard_disks
            if d.path not in settings.excluded_disks
        ]
        existing = replica.hyperv.add_vm(
            vm.name,
            vm_id=vm.id,
            generation=vm.generation,
            memory_startup_bytes=vm.memory_startup_bytes,
            path=root,
            hard_disks=disks,
            now=now,
        )
        replica.files.make_dirs(disks_dir)
        replica.files.make_dirs(f"{root}\\Virtual Machines")
    _make_replica_leg(ctx, existing, settings, target, now, replicated=False, mode=mode)
    return True


def _make_replica_leg(
    ctx: CmdletContext,
    replica_vm: VirtualMachine,
    settings: ReplicationSettings,
    target: ReplicationTarget,
    now: datetime,
    *,
    replicated: bool,
    mode: str = "Replica",
) -> None:
    """The replica side of a relationship fed by this host, admitted by `target`'s authorization entry:
    waiting for its initial replication, or (a planned reverse) already in step with the primary."""
    replica_vm.replication = Replication(
        mode=mode,
        state="Replicating" if replicated else "WaitingForInitialReplication",
        health="Warning",
        primary_server_name=ctx.host.fqdn,
        settings=dataclasses.replace(settings),
        stats=ReplicationStats(monitoring_start=now),
        allowed_primary_server=target.entry.allowed_primary_server,
        trust_group=target.entry.trust_group,
        last_replication_time=now if replicated else None,
    )
    refresh_health(replica_vm.replication, now)


def _enable_as_replica(ctx: CmdletContext, args: BoundArguments) -> None:
    """§3.2 #2: turn an existing VM into a replica waiting for its initial replication (seeding flows)."""
    hyperv, now = ctx.host.hyperv, ctx.lab.now()
    allowed = args.get("AllowedPrimaryServer")
    if allowed is not None:
        entry = next(
            (e for e in hyperv.authorization_entries if e.allowed_primary_server.lower() == allowed.lower()),
            None,
        )
        if entry is None:
            fail(ctx, OPERATION_FAILED, "Unable to find an authorization entry for the given primary server.")
    elif hyperv.any_server_entry is None:
        invalid_parameter(ctx, "'AllowedPrimaryServer' is not provided.")
    for vm in select_vms(ctx, args):
        if vm.replication_mode != "None":
            ctx.write_error(already_enabled(ctx, vm))
            continue
        if not ctx.should_process(vm.name, "Enable-VMReplication"):
            continue
        vm.replication = Replication(
            mode="Replica",
            state="WaitingForInitialReplication",
            health="Warning",
            primary_server_name="",
            settings=ReplicationSettings(ctx.host.fqdn, 443, "Certificate"),
            stats=ReplicationStats(monitoring_start=now),
            allowed_primary_server=allowed or ANY_SERVER,
        )
        refresh_health(vm.replication, now)
        if args.get("PassThru"):
            ctx.write_output(replication_object(hyperv, vm))


# --- Set-VMReplication --------------------------------------------------------------------------------------

_SET_SETTINGS = (*_SETTING_FIELDS, "InitialReplicationStartTime", "DisableVSSSnapshotReplication")


@_per_vm_cmdlet(
    "Set-VMReplication",
    *_setting_params((), target_mandatory=False),
    Param("InitialReplicationStartTime", DATETIME, aliases=("IRTime",)),
    Param("DisableVSSSnapshotReplication", SWITCH),
    Param("Reverse", SWITCH),
    Param("AsReplica", SWITCH),
    Param("AllowedPrimaryServer", STRING, aliases=("AllowedPS",)),
    Param("AsJob", SWITCH),
)
def set_vm_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    if not any(name in args for name in (*_SET_SETTINGS, "Reverse", "AsReplica")):
        message = (
            "Insufficient input to perform a valid operation. Please specify parameters for "
            "'Set-VMReplication' accordingly."
        )
        fail(ctx, OPERATION_FAILED, message)
    now = ctx.lab.now()
    for vm in select_vms(ctx, args):
        rep = vm.replication
        if rep is None:
            ctx.write_error(not_enabled(ctx, vm, INVALID_STATE))
            continue
        _validate_settings(ctx, args, rep.settings)
        if args.get("AsReplica"):
            # -AsReplica needs a VM without replication (hvsim emulates it in Enable-VMReplication only).
            ctx.write_error(invalid_state(ctx, vm))
            continue
        if args.get("Reverse"):
            _reverse(ctx, args, vm, rep, now)
            continue
        if rep.mode == "Replica":
            message = (
                "Replication settings cannot be modified on the replica virtual machine "
                f"'{vm.name}'. You can modify them on the primary virtual machine."
            )
            ctx.write_error(hyperv_error(ctx, OPERATION_FAILED, message))
            continue
        settings = _settings_from(args, rep.settings)
        start = args.get("InitialReplicationStartTime")
        if start is not None and not _valid_schedule(ctx, vm, rep, start, now):
            continue
        if not _check_excluded(ctx, vm, settings) or not ctx.should_process(vm.name, "Set-VMReplication"):
            continue
        if not _apply_target_change(ctx, vm, rep, settings, now):
            continue
        rep.settings = settings
        if start is not None:
            rep.initial_replication_start_time = start
        if args.get("PassThru"):
            ctx.write_output(replication_object(ctx.host.hyperv, vm))


FAILED_OVER = ("FailedOverWaitingCompletion", "FailedOver")


def _reverse(
    ctx: CmdletContext, args: BoundArguments, vm: VirtualMachine, rep: Replication, now: datetime
) -> None:
    """§3.2 #18/#19: a failed-over replica becomes the primary and replicates to its old primary (or the
    -ReplicaServerName given). SetVMReplication.ValidateReplication refuses -Reverse on a primary and, with
    certificate authentication, without this host's own -CertificateThumbprint; VMMS then needs the
    failed-over state and a target that passes every connection check. A target VM prepared for planned
    failover turns into the replica at once (no initial replication); otherwise the target gets a replica VM
    waiting for an initial replication, as Enable-VMReplication makes one."""
    if rep.mode != "Replica":
        ctx.write_error(not_applicable(ctx, vm))
        return
    if rep.settings.authentication_type == "Certificate" and not args.get("CertificateThumbprint"):
        message = (
            "The certificate thumbprint of this server must be provided to reverse the replication of "
            f"virtual machine '{vm.name}'."
        )
        ctx.write_error(hyperv_error(ctx, INVALID_PARAMETER, message))
        return
    if rep.state not in FAILED_OVER:
        ctx.write_error(invalid_state(ctx, vm))
        return
    settings = _settings_from(
        args, dataclasses.replace(rep.settings, replica_server_name=rep.primary_server_name)
    )
    if not ctx.should_process(vm.name, "Set-VMReplication"):
        return
    target = _connect(ctx, vm, settings, now, "reverse the replication of")
    if target is None:
        return
    old = target.host.hyperv.vm_by_id(vm.id)
    planned = (
        old is not None and old.replication is not None and old.replication.state == "PreparedForFailover"
    )
    if old is not None and planned:
        _make_replica_leg(ctx, old, settings, target, now, replicated=True)
    elif not _create_replica_vm(ctx, vm, settings, target, now):
        return
    vm.replication = Replication(
        mode="Primary",
        state="Replicating" if planned else "ReadyForInitialReplication",
        health="Normal",
        primary_server_name=ctx.host.fqdn,
        settings=settings,
        stats=ReplicationStats(monitoring_start=now),
        last_replication_time=now if planned else None,
        next_cycle_at=now + timedelta(seconds=settings.frequency_sec) if planned else None,
    )
    vm.recovery_points.clear()  # a primary has no recovery points
    refresh_health(vm.replication, now)
    _passthru(ctx, args, vm)


def _valid_schedule(
    ctx: CmdletContext, vm: VirtualMachine, rep: Replication, start: datetime, now: datetime
) -> bool:
    if rep.state != "ReadyForInitialReplication":
        ctx.write_error(invalid_state(ctx, vm))
        return False
    check_schedule(ctx, start, now)
    return True


def check_schedule(ctx: CmdletContext, start: datetime, now: datetime) -> None:
    """-InitialReplicationStartTime: in the future and at most 7 days ahead. "Future" is judged by the
    earlier of the emulated and the real clock: clients compute start times from their own (real) clock,
    which a time-scaled lab has left behind."""
    if start <= min(now, datetime.now(UTC)):
        invalid_parameter(ctx, "The specified start time is not valid because it occurs in the past.")
    if start > now + MAX_SCHEDULE_AHEAD:
        message = 'Scheduled start time for virtual machine should not exceed "7" days from now.'
        invalid_parameter(ctx, message)


def _apply_target_change(
    ctx: CmdletContext, vm: VirtualMachine, rep: Replication, settings: ReplicationSettings, now: datetime
) -> bool:
    """A new replica server, port, authentication or certificate is checked like Enable checks it; a new
    server name is a new target: its replica VM is created and initial replication starts over (§2.4)."""
    old = rep.settings
    keys = ("replica_server_name", "replica_server_port", "authentication_type", "certificate_thumbprint")
    if all(getattr(old, k) == getattr(settings, k) for k in keys):
        return True
    target = _connect(ctx, vm, settings, now, "change the replication settings of")
    if target is None:
        return False
    if settings.replica_server_name.lower() != old.replica_server_name.lower():
        if not _create_replica_vm(ctx, vm, settings, target, now):
            return False
        rep.state, rep.last_replication_time, rep.next_cycle_at = "ReadyForInitialReplication", None, None
    return True


# --- Get-/Measure-VMReplication -----------------------------------------------------------------------------


def _query_params() -> list[Param]:
    return [
        *vm_params(name_sets=("VMName",), object_sets=("VMObject",), mandatory=False),
        # The filters exist in the VMName set only (GetVMReplication.cs): piped VMs are taken as they come.
        Param("ReplicaServerName", STRING, aliases=("ReplicaServer",), sets=("VMName",)),
        Param("PrimaryServerName", STRING, aliases=("PrimaryServer",), sets=("VMName",)),
        Param("ReplicationState", enum_type(VMReplicationState), aliases=("State",), sets=("VMName",)),
        Param(
            "ReplicationHealth", enum_type(VMReplicationHealthState), aliases=("Health",), sets=("VMName",)
        ),
        Param("ReplicationMode", enum_type(VMReplicationMode), aliases=("Mode",), sets=("VMName",)),
        _RELATIONSHIP,
        Param("TrustGroup", STRING, sets=("VMName",)),
    ]


def _query(ctx: CmdletContext, args: BoundArguments, missing: ErrorKind) -> list[VirtualMachine]:
    """§2.5: no selector -> every replication-enabled VM; a VM selected by -VMName or -VM without replication
    is a "not enabled" error of kind `missing` (non-terminating: the other VMs are still written); the
    Disabled/None filters are errors."""
    check_computer_name(ctx, args)
    state, mode = args.get("ReplicationState"), args.get("ReplicationMode")
    if (state is not None and state.name == "Disabled") or (mode is not None and mode.name == "None"):
        message = (
            f"{ctx.spec.name} cannot retrieve replication settings of virtual machines for which replication "
            "is not enabled. Use Get-VM cmdlet to list all the virtual machines."
        )
        fail(ctx, INVALID_STATE, message)
    names, objects = args.get("VMName") or [], args.get("VM") or []
    # Every VM that -VMName (wildcards too) or -VM selected is "given"; without them only VMs with
    # replication are listed (GetVMReplication.cs, MeasureVMReplication.cs: VMName != null || VM != null).
    given = bool(names or objects)
    candidates = find_vms(ctx, names, objects) if given else list(ctx.host.hyperv.vms)
    selected: list[VirtualMachine] = []
    for vm in candidates:
        if vm.replication is None:
            if given:
                ctx.write_error(not_enabled(ctx, vm, missing))
            continue
        if vm not in selected and any(_filters_match(args, vm, leg) for leg in vm.legs()):
            selected.append(vm)
    return selected


def _filters_match(args: BoundArguments, vm: VirtualMachine, rep: Replication) -> bool:
    checks = (
        ("ReplicaServerName", rep.settings.replica_server_name),
        ("PrimaryServerName", rep.primary_server_name),
        ("TrustGroup", rep.trust_group),
    )
    for name, value in checks:
        pattern = args.get(name)
        if pattern is not None and not wildcard_match(pattern, value):
            return False
    enums = (
        ("ReplicationState", rep.state),
        ("ReplicationHealth", rep.health),
        ("ReplicationMode", leg_mode(vm, rep)),
        ("ReplicationRelationshipType", leg_type(vm, rep)),
    )
    return all(args.get(name) is None or args[name].name == value for name, value in enums)


@cmdlet("Get-VMReplication", f"{COMMANDS}.GetVMReplication", _query_params(), default_set="VMName")
def get_vm_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    for vm in _query(ctx, args, OPERATION_FAILED):  # GetVMReplication.cs: CreateOperationFailedException
        for leg in vm.legs():
            if _filters_match(args, vm, leg):
                ctx.write_output(replication_object(ctx.host.hyperv, vm, leg))


@cmdlet("Measure-VMReplication", f"{COMMANDS}.MeasureVMReplication", _query_params(), default_set="VMName")
def measure_vm_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    now = ctx.lab.now()
    for vm in _query(ctx, args, OBJECT_NOT_FOUND):  # MeasureVMReplication.cs: CreateObjectNotFoundException
        for leg in vm.legs():
            if _filters_match(args, vm, leg):
                ctx.write_output(replication_health_object(ctx.host.hyperv, vm, now, leg))


# --- Remove-VMReplication -----------------------------------------------------------------------------------


# Besides -VMName and -VM, Remove-VMReplication takes Get-VMReplication's objects (-VMReplication, from the
# pipeline), so one pipeline can pick a leg with Get-VMReplication's filters and remove it.
_VM_REPLICATIONS = Param(
    "VMReplication",
    array_of(object_type(VM_REPLICATION_TN[0])),
    position=0,
    sets=("VMReplication",),
    from_pipeline=True,
    mandatory=("VMReplication",),
)


@cmdlet(
    "Remove-VMReplication",
    f"{COMMANDS}.RemoveVMReplication",
    [
        *vm_params(name_sets=("VMName",), object_sets=("VMObject",)),
        _VM_REPLICATIONS,
        # RemoveVMReplication.cs: -ReplicationRelationshipType only with -VMName.
        dataclasses.replace(_RELATIONSHIP, sets=("VMName",)),
        PASSTHRU,
    ],
    default_set="VMName",
    supports_should_process=True,
)
def remove_vm_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    relationship = args.get("ReplicationRelationshipType")
    legs = args.get("VMReplication")
    if legs:
        check_computer_name(ctx, args)
        # A piped VMReplication object is one leg: its relationship type says which.
        chosen = [(vm, _is_extended_leg(leg)) for leg in legs for vm in find_vms(ctx, None, [leg])]
    else:
        extended = relationship is not None and relationship.name == "Extended"
        chosen = [(vm, extended) for vm in select_vms(ctx, args)]
    for vm, extended in chosen:
        if extended:
            _remove_extended(ctx, args, vm)
            continue
        if vm.replication is None:  # RemoveVMReplication.cs: the invalid-state refusal, not "not enabled"
            ctx.write_error(invalid_state(ctx, vm))
            continue
        if not ctx.should_process(vm.name, "Remove-VMReplication"):
            continue
        removed = replication_object(ctx.host.hyperv, vm)
        # §2.6: this host only; a replica VM is kept, without its recovery points.
        vm.replication = None
        vm.recovery_points.clear()
        if args.get("PassThru"):
            ctx.write_output(removed)


def _is_extended_leg(leg: Any) -> bool:
    return getattr(property_value(leg, "ReplicationRelationshipType"), "name", None) == "Extended"


def _remove_extended(ctx: CmdletContext, args: BoundArguments, vm: VirtualMachine) -> None:
    """-ReplicationRelationshipType Extended: a replica VM's extended leg, on this host only."""
    if vm.replication_mode != "Replica":
        message = "'ReplicationRelationshipType' is applicable only on a replica virtual machine."
        ctx.write_error(hyperv_error(ctx, INVALID_PARAMETER, message))
        return
    if vm.extended is None:
        ctx.write_error(invalid_state(ctx, vm))
        return
    if not ctx.should_process(vm.name, "Remove-VMReplication"):
        return
    removed = replication_object(ctx.host.hyperv, vm, vm.extended)
    vm.extended = None
    if args.get("PassThru"):
        ctx.write_output(removed)


# --- lifecycle ----------------------------------------------------------------------------------------------


def _lifecycle(
    ctx: CmdletContext,
    args: BoundArguments,
    modes: tuple[str, ...],
    states: tuple[str, ...],
    *,
    replica_sends: bool = False,
) -> list[tuple[VirtualMachine, Replication]]:
    """The selected VMs, with the leg this cmdlet acts on, whose mode and state accept it (§3.3); errors for
    the others. The leg is the extended one with -ReplicationRelationshipType Extended, or on a replica VM
    for a cmdlet that only sends (`replica_sends`: Start-VMInitialReplication starts the extended leg's
    copy); the simple one otherwise."""
    relationship = args.values.get("ReplicationRelationshipType")  # not every lifecycle cmdlet has it
    accepted = []
    for vm in select_vms(ctx, args):
        extended = (relationship is not None and relationship.name == "Extended") or (
            replica_sends and vm.replication_mode == "Replica"
        )
        leg = vm.extended if extended else vm.replication
        if leg is None or leg.state not in states:  # no replication: state Disabled
            ctx.write_error(invalid_state(ctx, vm))
        elif leg.mode not in modes:
            ctx.write_error(not_applicable(ctx, vm))
        elif ctx.should_process(vm.name, ctx.spec.name):
            accepted.append((vm, leg))
    return accepted


def _begin(ctx: CmdletContext, vm: VirtualMachine, rep: Replication, now: datetime, failure: str) -> bool:
    """Start (or restart) initial replication on the leg `rep`; a failed connection check is this VM's
    error."""
    try:
        begin_initial_replication(ctx.lab, ctx.host, vm, now, rep)
    except ReplicationCheckError as exc:
        connection_error(ctx, vm, exc, failure)
        return False
    return True


def _passthru(ctx: CmdletContext, args: BoundArguments, vm: VirtualMachine) -> None:
    if args.get("PassThru"):
        ctx.write_output(replication_object(ctx.host.hyperv, vm))


@_per_vm_cmdlet(
    "Start-VMInitialReplication",
    Param("DestinationPath", STRING, aliases=("IRLoc",)),
    Param("InitialReplicationStartTime", DATETIME, aliases=("IRTime",)),
    Param("UseBackup", SWITCH),
    Param("AsJob", SWITCH),
)
def start_initial_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    start, destination, now = (
        args.get("InitialReplicationStartTime"),
        args.get("DestinationPath"),
        ctx.lab.now(),
    )
    if start is not None:
        if args.get("AsJob"):
            invalid_parameter(
                ctx,
                "'AsJob' and 'InitialReplicationStartTime' parameters cannot be specified together. "
                "Scheduled initial replication can be monitored only after initial replication starts at the "
                "specified time.",
            )
        check_schedule(ctx, start, now)
    if destination is not None and (start is not None or args.get("UseBackup")):
        invalid_parameter(ctx, "Conflicting parameters have been supplied to the cmdlet.")
    if destination is not None and not ctx.host.files.is_dir(destination):
        message = f"Could not find a part of the path '{destination}'."  # hvsim's wording
        fail(ctx, OBJECT_NOT_FOUND, message)
    for vm, rep in _lifecycle(ctx, args, ("Primary",), ("ReadyForInitialReplication",), replica_sends=True):
        if start is not None:
            rep.initial_replication_start_time = start  # the scheduler starts it then (state stays Ready)
        elif destination is not None:
            # Export for out-of-band seeding: waits for Import-VMInitialReplication on the replica.
            ctx.host.files.make_dirs(f"{destination.rstrip(chr(92))}\\{vm.name}_{vm.id.upper()}")
            rep.next_cycle_at = now + timedelta(seconds=rep.settings.frequency_sec)
            rep.state, rep.health, rep.initial_replication_done_at = (
                "InitialReplicationInProgress",
                "Normal",
                None,
            )
        elif not _begin(ctx, vm, rep, now, "start initial replication of"):
            continue
        _passthru(ctx, args, vm)


@_per_vm_cmdlet(
    "Import-VMInitialReplication",
    Param("Path", STRING, position=1, mandatory=True),
    Param("AsJob", SWITCH),
)
def import_initial_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    """Replica side of an exported initial replication: the media folder must be on this host."""
    path = args["Path"]
    if not ctx.host.files.is_dir(path):
        fail(ctx, OBJECT_NOT_FOUND, f"Could not find a part of the path '{path}'.")  # hvsim's wording
    now = ctx.lab.now()
    for vm, rep in _lifecycle(ctx, args, ("Replica",), ("WaitingForInitialReplication",)):
        rep.state, rep.last_replication_time = "Replicating", now
        refresh_health(rep, now)
        _passthru(ctx, args, vm)


@_per_vm_cmdlet("Stop-VMInitialReplication")
def stop_initial_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    candidates = (
        "ReadyForInitialReplication",
        "InitialReplicationInProgress",
        "WaitingForInitialReplication",
        "Suspended",
        "Error",
    )
    now = ctx.lab.now()
    for vm, rep in _lifecycle(ctx, args, ("Primary", "Replica"), candidates):
        scheduled = (
            rep.state == "ReadyForInitialReplication" and rep.initial_replication_start_time is not None
        )
        if rep.last_replication_time is not None or (
            rep.state == "ReadyForInitialReplication" and not scheduled
        ):
            ctx.write_error(invalid_state(ctx, vm))
            continue
        rep.initial_replication_start_time = rep.initial_replication_done_at = None
        rep.state = "ReadyForInitialReplication" if rep.mode == "Primary" else "WaitingForInitialReplication"
        rep.stats.pending_bytes = 0
        refresh_health(rep, now)
        _passthru(ctx, args, vm)


@_per_vm_cmdlet(
    "Suspend-VMReplication",
    _RELATIONSHIP,
)
def suspend_vm_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    states = (
        "WaitingForInitialReplication",
        "InitialReplicationInProgress",
        "Replicating",
        "Resynchronizing",
    )
    now = ctx.lab.now()
    for vm, rep in _lifecycle(ctx, args, ("Primary", "Replica"), states):
        rep.state = "Suspended"
        rep.initial_replication_done_at = None
        refresh_health(rep, now)
        _passthru(ctx, args, vm)


@_per_vm_cmdlet(
    "Resume-VMReplication",
    _RELATIONSHIP,
    Param("Resynchronize", SWITCH, aliases=("Resync",)),
    Param("ResynchronizeStartTime", DATETIME, aliases=("ResyncStart",)),
    Param("Continue", SWITCH),
    Param("AsJob", SWITCH),
)
def resume_vm_replication(ctx: CmdletContext, args: BoundArguments) -> None:
    if "ResynchronizeStartTime" in args and not args.get("Resynchronize"):
        invalid_parameter(ctx, "Conflicting parameters have been supplied to the cmdlet.")
    if args.get("Continue"):
        invalid_parameter(ctx, "'Continue' is applicable only on a replica virtual machine.")
    states = ("Suspended", "WaitingForStartResynchronize", "ResynchronizeSuspended", "Error")
    now = ctx.lab.now()
    for vm, rep in _lifecycle(ctx, args, ("Primary", "Replica"), states):
        if rep.mode == "Replica":
            rep.state = "Replicating" if rep.last_replication_time else "WaitingForInitialReplication"
        elif rep.last_replication_time is None:
            if not _begin(ctx, vm, rep, now, "resume replication of"):
                continue
        elif rep.state == "WaitingForStartResynchronize" and not args.get("Resynchronize"):
            # The cmdlet asks VMMS for Replicating (ResumeVMReplication.cs); VMMS needs the resync first.
            message = (
                f"Hyper-V cannot resume replication for virtual machine '{vm.name}': resynchronization is "
                "required. Use Resume-VMReplication -Resynchronize."
            )
            ctx.write_error(vm_failure(ctx, vm, message))
            continue
        else:
            rep.state, rep.next_cycle_at = "Replicating", now  # the next scheduler tick runs a cycle
            if args.get("Resynchronize"):
                _drop_replica_points(ctx, vm)
        rep.last_error = ""
        refresh_health(rep, now)
        _passthru(ctx, args, vm)


def _drop_replica_points(ctx: CmdletContext, vm: VirtualMachine) -> None:
    """§3.5: a resynchronization deletes every recovery point on the replica."""
    for host in ctx.lab.hosts.values():
        replica_vm = host.hyperv.vm_by_id(vm.id)
        if replica_vm is not None and replica_vm.replication_mode == "Replica":
            replica_vm.recovery_points.clear()
