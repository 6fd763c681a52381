"""Hyper-V Replica primitives over a remoting session: replica-server settings, authorization entries,
per-VM replication. Typed dataclasses in and out; cmdlets with named parameters only.

Per-VM reads pipe the one VM (`Get-VM -Id | Get-VMReplication`), so a read costs the same with one VM or
five hundred on the host. Windows answers a VM without replication with a NON-terminating error,
`OperationFailed,Microsoft.HyperV.PowerShell.Commands.GetVMReplication` in category InvalidOperation
(GetVMReplication.cs), recognised here by that id and category; a VM that does not exist stays a NotFound
error (Get-VM's ObjectNotFound), and access denied or anything else is never taken for either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from hvreplica_provider.inputs import RelationshipAuthentication, ReplicaServerAuthentication
from hvreplica_provider.remoting import (
    CATEGORY_INVALID_OPERATION,
    CATEGORY_OBJECT_NOT_FOUND,
    Cmd,
    InvalidState,
    NotFound,
    RemoteError,
    Session,
    Statement,
    Validation,
    cmd,
    is_type,
    prop,
    text,
)

ANY_PRIMARY = "*"
DEFAULT_TRUST_GROUP = "DEFAULT"
SERVER_AUTHENTICATIONS: tuple[str, ...] = get_args(ReplicaServerAuthentication)
VM_AUTHENTICATIONS: tuple[str, ...] = get_args(RelationshipAuthentication)
WILDCARD_CHARACTERS = "*?[]"
MAX_VM_NAME = 100  # what New-VM/Rename-VM accept
# FullyQualifiedErrorIds end with the cmdlet's class; the part before it is one of a fixed set of identifiers
# (ErrorIdentifier.cs), paired with a category by ExceptionHelper.cs.
COMMANDS = "Microsoft.HyperV.PowerShell.Commands"
# Get-VMReplication's "Replication is not enabled for virtual machine with name 'X'.": the only
# OperationFailed it raises itself, in category InvalidOperation (a failed VMMS call would be NotSpecified).
NOT_ENABLED_ERROR = f"OperationFailed,{COMMANDS}.GetVMReplication"
# Measure-VMReplication says the same as ObjectNotFound (MeasureVMReplication.cs), in category ObjectNotFound.
MEASURE_NOT_ENABLED_ERROR = f"ObjectNotFound,{COMMANDS}.MeasureVMReplication"
# Remove-VMReplication's refusal for a VM without replication (RemoveVMReplication.cs: its invalid-state
# exception, identifier InvalidState in category InvalidOperation).
NOTHING_TO_REMOVE_ERROR = f"InvalidState,{COMMANDS}.RemoveVMReplication"
# What a Hyper-V cmdlet's own refusal or its failed VMMS job carries; AccessDenied, InvalidParameter,
# ObjectNotFound and transport faults are not refusals.
_REFUSAL_IDENTIFIERS = ("OperationFailed", "InvalidState", "InvalidOperation")

_SERVER_TYPE = "Microsoft.HyperV.PowerShell.VMReplicationServer"
_ENTRY_TYPE = "Microsoft.HyperV.PowerShell.VMReplicationAuthorizationEntry"
_REPLICATION_TYPE = "Microsoft.HyperV.PowerShell.VMReplication"
_VM_TYPE = "Microsoft.HyperV.PowerShell.VirtualMachine"
_HEALTH_TYPE = "Microsoft.HyperV.PowerShell.VMReplicationHealth"
_DISK_TYPE = "Microsoft.HyperV.PowerShell.HardDiskDrive"


@dataclass(frozen=True)
class AuthorizationEntry:
    allowed_primary_server: str
    storage_location: str
    trust_group: str = DEFAULT_TRUST_GROUP

    @property
    def key(self) -> str:
        return self.allowed_primary_server.lower()


@dataclass(frozen=True)
class ReplicationServerSettings:
    replication_enabled: bool
    authentication: str  # one of SERVER_AUTHENTICATIONS, "" when replication is off
    certificate_thumbprint: str
    certificate_port: int
    kerberos_port: int
    allow_any_primary: bool
    default_storage_location: str


@dataclass(frozen=True)
class ReplicationSettings:
    """What Enable-VMReplication sets and Set-VMReplication can change, named as the provider inputs."""

    replica_server_fqdn: str
    authentication: str
    certificate_thumbprint: str
    replica_port: int
    frequency_sec: int = 300
    recovery_history: int = 0
    vss_snapshot_frequency_hour: int = 0
    compression: bool = True
    replicate_host_kvp_items: bool = True
    auto_resynchronize: bool = True
    auto_resynchronize_start: str | None = None  # "hh:mm:ss"
    auto_resynchronize_end: str | None = None
    bypass_proxy_server: bool = False


@dataclass(frozen=True)
class InitialReplication:
    mode: str = "network"  # network | scheduled | export | none
    start_time: str | None = None  # ISO-8601 for scheduled
    destination_path: str | None = None  # for export


@dataclass(frozen=True)
class ReplicationStatistics:
    """Measure-VMReplication over the replica server's current monitoring interval (§1.3)."""

    average_size_bytes: int
    maximum_size_bytes: int
    pending_size_bytes: int
    successful_replications: int
    missed_replications: int
    errors: int
    average_latency: str | None  # hh:mm:ss; None before the first cycle
    health_details: tuple[str, ...]


@dataclass(frozen=True)
class VMReplicationInfo:
    vm_name: str
    vm_id: str  # lower-case GUID, the same on both hosts
    mode: str
    state: str
    health: str
    primary_server: str
    replica_server: str
    settings: ReplicationSettings
    last_replication_time: str | None = None
    statistics: ReplicationStatistics | None = None  # when Measure-VMReplication ran in the same read
    relationship_type: str = "Simple"  # Extended: a replica VM's leg to a third host


# ----------------------------------------------------------------------------------------- server side


def server_read_cmds() -> list[Statement]:
    return [[cmd("Get-VMReplicationServer")], [cmd("Get-VMReplicationAuthorizationEntry")]]


def parse_server(objects: Sequence[Any]) -> ReplicationServerSettings | None:
    for o in objects:
        if is_type(o, _SERVER_TYPE):
            enabled = _bool(prop(o, "ReplicationEnabled"))
            auth = text(prop(o, "AllowedAuthenticationType"))
            return ReplicationServerSettings(
                replication_enabled=enabled,
                authentication=auth if auth in SERVER_AUTHENTICATIONS else "",
                certificate_thumbprint=text(prop(o, "CertificateThumbprint")).upper(),
                certificate_port=int(prop(o, "CertificateAuthenticationPort", 443)),
                kerberos_port=int(prop(o, "KerberosAuthenticationPort", 80)),
                allow_any_primary=_bool(prop(o, "ReplicationAllowedFromAnyServer")),
                default_storage_location=text(prop(o, "DefaultStorageLocation")),
            )
    return None


def parse_entries(objects: Sequence[Any]) -> list[AuthorizationEntry]:
    """Specific entries only: the `*` entry belongs to the server settings (allow any primary)."""
    return [
        AuthorizationEntry(
            allowed_primary_server=text(prop(o, "AllowedPrimaryServer")),
            storage_location=text(prop(o, "ReplicaStorageLocation")),
            trust_group=text(prop(o, "TrustGroup")) or DEFAULT_TRUST_GROUP,
        )
        for o in objects
        if is_type(o, _ENTRY_TYPE) and text(prop(o, "AllowedPrimaryServer")) != ANY_PRIMARY
    ]


def set_server_cmd(settings: ReplicationServerSettings) -> Statement:
    """Set-VMReplicationServer with both ports always explicit (an omitted port is reset to its default)."""
    params: dict[str, Any] = {"ReplicationEnabled": settings.replication_enabled}
    if settings.replication_enabled:
        params["AllowedAuthenticationType"] = settings.authentication
        if settings.authentication != "Kerberos":
            params["CertificateThumbprint"] = settings.certificate_thumbprint
    # Disabling replication keeps the '*' entry: say what it should be either way.
    params["ReplicationAllowedFromAnyServer"] = settings.allow_any_primary
    if settings.allow_any_primary:
        params["DefaultStorageLocation"] = settings.default_storage_location
    params["KerberosAuthenticationPort"] = settings.kerberos_port
    params["CertificateAuthenticationPort"] = settings.certificate_port
    return [cmd("Set-VMReplicationServer", **params, Force=True, ErrorAction="Stop")]


def entry_cmds(
    current: Sequence[AuthorizationEntry],
    wanted: Sequence[AuthorizationEntry],
    *,
    remove_unlisted: Sequence[str] = (),
) -> list[Statement]:
    """Statements turning `current` into `wanted` for the listed primaries. Entries not in `wanted` are
    removed only when named in `remove_unlisted` (the ones this resource created)."""
    have = {e.key: e for e in current}
    want = {e.key: e for e in wanted}
    out: list[Statement] = []
    for key in sorted(set(have) & {k.lower() for k in remove_unlisted} - set(want)):
        out.append(
            [
                cmd(
                    "Remove-VMReplicationAuthorizationEntry",
                    AllowedPrimaryServer=have[key].allowed_primary_server,
                    ErrorAction="Stop",
                )
            ]
        )
    for key, entry in sorted(want.items()):
        old = have.get(key)
        if old is None:
            out.append(
                [
                    cmd(
                        "New-VMReplicationAuthorizationEntry",
                        AllowedPrimaryServer=entry.allowed_primary_server,
                        ReplicaStorageLocation=entry.storage_location,
                        TrustGroup=entry.trust_group,
                        ErrorAction="Stop",
                    )
                ]
            )
        elif (old.storage_location, old.trust_group) != (entry.storage_location, entry.trust_group):
            out.append(
                [
                    cmd(
                        "Set-VMReplicationAuthorizationEntry",
                        AllowedPrimaryServer=old.allowed_primary_server,
                        ReplicaStorageLocation=entry.storage_location,
                        TrustGroup=entry.trust_group,
                        ErrorAction="Stop",
                    )
                ]
            )
    return out


# ---------------------------------------------------------------------------------------- VM replication


@dataclass(frozen=True)
class VirtualMachineRef:
    """A VM as Get-VM shows it: names are not unique on a host, the id is (and a replica VM keeps its
    primary's id)."""

    vm_id: str  # lower-case GUID
    name: str
    replication_mode: str
    state: str = ""  # power state: Running, Off, ...


def vm_by_id(vm_id: str) -> Cmd:
    """The head of every pipeline after create: the one VM with this id (Get-VM -Id, "Id" parameter set),
    piped to the Hyper-V cmdlet's -VM parameter (its "VMObject" set). An absent VM yields nothing, so the
    cmdlet after it does nothing, and Get-VM writes a non-terminating ObjectNotFound error."""
    return cmd("Get-VM", Id=vm_id)


def parse_vms(objects: Sequence[Any]) -> list[VirtualMachineRef]:
    return [
        VirtualMachineRef(
            vm_id=text(prop(o, "Id")).lower(),
            name=text(prop(o, "Name")),
            replication_mode=text(prop(o, "ReplicationMode")) or "None",
            state=text(prop(o, "State")),
        )
        for o in objects
        if is_type(o, _VM_TYPE)
    ]


def resolve_vm(session: Session, vm_name: str, *, replica: bool = False) -> VirtualMachineRef:
    """The one VM named `vm_name` on this host that can be a primary, or with `replica` the one replica VM of
    that name (create only: names are resolved once, then ids are used). Replica VMs kept here for other
    hosts cannot be primaries (except for extended replication), and test failover VMs are neither. Several
    candidates are refused: picking one would be a guess."""
    result = session.run([cmd("Get-VM", Name=vm_name)])
    result.raise_errors(allow=(NotFound,))
    role = "replica VM" if replica else "VM"
    found = [
        v
        for v in parse_vms(result.output)
        if (v.replication_mode == "Replica") == replica and v.replication_mode != "TestReplica"
    ]
    if not found:
        raise NotFound(f"there is no {role} named {vm_name!r}", cmdlet="Get-VM", host=session.host)
    if len(found) > 1:
        ids = ", ".join(v.vm_id for v in found)
        raise InvalidState(
            f"{len(found)} {role}s are named {vm_name!r} (ids {ids}); Hyper-V allows duplicate names, so the "
            "VM is ambiguous: rename all but one of them (Rename-VM) and run again",
            cmdlet="Get-VM",
            host=session.host,
        )
    return found[0]


def vm_name_problem(name: str) -> str | None:
    """Why `name` cannot be passed to -Name/-VMName as a literal VM name."""
    if any(ch in name for ch in WILDCARD_CHARACTERS):
        return "Hyper-V cmdlets treat * ? [ ] in VM names as wildcards; rename the VM"
    if name != name.strip():
        return "it has leading or trailing spaces"
    if len(name) > MAX_VM_NAME:
        return f"Hyper-V VM names have at most {MAX_VM_NAME} characters"
    return None


def relationship_read_cmds(vm_id: str) -> list[Statement]:
    """The VM's replication legs and their statistics, in one invocation."""
    return [replication_read_cmd(vm_id), [vm_by_id(vm_id), cmd("Measure-VMReplication")]]


def replication_read_cmd(vm_id: str | None = None) -> Statement:
    """The replication legs of the VM with this id, or of every VM on the host."""
    if vm_id is None:
        return [cmd("Get-VMReplication")]
    return [vm_by_id(vm_id), cmd("Get-VMReplication")]


def is_not_enabled(error: RemoteError) -> bool:
    """Whether `error` is Get-VMReplication's or Measure-VMReplication's "replication is not enabled" for a
    VM it was given."""
    if error.fq_error_id == MEASURE_NOT_ENABLED_ERROR:
        return error.category == CATEGORY_OBJECT_NOT_FOUND
    return error.fq_error_id == NOT_ENABLED_ERROR and error.category == CATEGORY_INVALID_OPERATION


def refused_by(error: RemoteError, command_class: str) -> bool:
    """Whether `error` is the Hyper-V cmdlet `command_class`'s own refusal or its failed VMMS job, as
    opposed to access denied, a parameter it rejected, a missing object or a transport fault."""
    identifier, _, command = error.fq_error_id.partition(",")
    return command == f"{COMMANDS}.{command_class}" and identifier in _REFUSAL_IDENTIFIERS


def parse_statistics(o: Any) -> ReplicationStatistics:
    latency = prop(o, "AverageReplicationLatency")
    details = prop(o, "ReplicationHealthDetails")
    return ReplicationStatistics(
        average_size_bytes=int(prop(o, "AverageReplicationSize", 0) or 0),
        maximum_size_bytes=int(prop(o, "MaximumReplicationSize", 0) or 0),
        pending_size_bytes=int(prop(o, "PendingReplicationSize", 0) or 0),
        successful_replications=int(prop(o, "SuccessfulReplicationCount", 0) or 0),
        missed_replications=int(prop(o, "MissedReplicationCount", 0) or 0),
        errors=int(prop(o, "ReplicationErrors", 0) or 0),
        average_latency=timespan(latency) if latency is not None else None,
        health_details=tuple(text(d) for d in details) if isinstance(details, list) else (),
    )


def parse_replications(objects: Sequence[Any]) -> list[VMReplicationInfo]:
    """The VMReplication objects, each with the statistics of the VMReplicationHealth object of the same leg
    when the output holds one."""
    statistics = {_leg_key(o): parse_statistics(o) for o in objects if is_type(o, _HEALTH_TYPE)}
    out = []
    for o in objects:
        if not is_type(o, _REPLICATION_TYPE) or is_type(o, _HEALTH_TYPE):
            continue
        start, end = prop(o, "AutoResynchronizeIntervalStart"), prop(o, "AutoResynchronizeIntervalEnd")
        settings = ReplicationSettings(
            replica_server_fqdn=text(prop(o, "ReplicaServerName")),
            authentication=text(prop(o, "AuthenticationType")),
            certificate_thumbprint=text(prop(o, "CertificateThumbprint")).upper(),
            replica_port=int(prop(o, "ReplicaServerPort", 0) or 0),
            frequency_sec=int(prop(o, "ReplicationFrequencySec", 0) or 0),
            recovery_history=int(prop(o, "RecoveryHistory", 0) or 0),
            vss_snapshot_frequency_hour=int(prop(o, "VSSSnapshotFrequencyHour", 0) or 0),
            compression=_bool(prop(o, "CompressionEnabled")),
            replicate_host_kvp_items=_bool(prop(o, "ReplicateHostKvpItems")),
            auto_resynchronize=_bool(prop(o, "AutoResynchronizeEnabled")),
            auto_resynchronize_start=timespan(start) if start is not None else None,
            auto_resynchronize_end=timespan(end) if end is not None else None,
            bypass_proxy_server=_bool(prop(o, "BypassProxyServer")),
        )
        last = prop(o, "LastReplicationTime")
        out.append(
            VMReplicationInfo(
                vm_name=text(prop(o, "VMName")),
                vm_id=text(prop(o, "VMId")).lower(),
                mode=text(prop(o, "ReplicationMode")),
                state=text(prop(o, "ReplicationState")),
                health=text(prop(o, "ReplicationHealth")),
                primary_server=text(prop(o, "PrimaryServerName")),
                replica_server=text(prop(o, "ReplicaServerName")),
                settings=settings,
                last_replication_time=text(last) if last is not None else None,
                statistics=statistics.get(_leg_key(o)),
                relationship_type=text(prop(o, "ReplicationRelationshipType")) or "Simple",
            )
        )
    return out


def _leg_key(o: Any) -> tuple[str, str, str]:
    """What tells the legs of one host apart: VM id, mode and relationship type."""
    kind = text(prop(o, "ReplicationRelationshipType")) or "Simple"
    return text(prop(o, "VMId")).lower(), text(prop(o, "ReplicationMode")), kind


def find_replication(infos: Sequence[VMReplicationInfo], vm_id: str, mode: str) -> VMReplicationInfo | None:
    """The (simple) leg in `mode` (Primary or Replica) of the VM with this id."""
    return next(
        (i for i in infos if i.vm_id == vm_id and i.mode == mode and i.relationship_type == "Simple"), None
    )


def find_sending_leg(
    infos: Sequence[VMReplicationInfo], vm_id: str, extended: bool
) -> VMReplicationInfo | None:
    """The leg a relationship manages: the VM's primary leg, or with `extended` a replica VM's extended
    leg (which shows the VM's mode, Replica, with relationship type Extended)."""
    if extended:
        return next((i for i in infos if i.vm_id == vm_id and i.relationship_type == "Extended"), None)
    return find_replication(infos, vm_id, "Primary")


def vm_replications(session: Session, vm_id: str) -> list[VMReplicationInfo]:
    """The VM's replication legs on this host in one pipeline; empty when replication is not enabled
    (Windows writes that as a non-terminating error; a terminating one, under a caller's -ErrorAction Stop
    preference, counts the same). A VM that does not exist raises NotFound: the caller decides whether that
    means gone."""
    try:
        result = session.run(*relationship_read_cmds(vm_id))
    except RemoteError as exc:
        if is_not_enabled(exc):
            return []
        raise
    for error in result.errors:
        if not is_not_enabled(error):
            raise error
    return parse_replications(result.output)


def _setting_params(s: ReplicationSettings, only: set[str] | None = None) -> dict[str, Any]:
    """Parameters for Enable-/Set-VMReplication; `only` restricts them to changed settings."""

    def want(name: str) -> bool:
        return only is None or name in only

    params: dict[str, Any] = {}
    if want("replica_port"):
        params["ReplicaServerPort"] = s.replica_port
    if want("authentication"):
        params["AuthenticationType"] = s.authentication
    if s.authentication == "Certificate" and (want("certificate_thumbprint") or want("authentication")):
        params["CertificateThumbprint"] = s.certificate_thumbprint
    if want("frequency_sec"):
        params["ReplicationFrequencySec"] = s.frequency_sec
    if want("recovery_history") or want("vss_snapshot_frequency_hour"):
        params["RecoveryHistory"] = s.recovery_history
        if s.vss_snapshot_frequency_hour > 0:
            params["VSSSnapshotFrequencyHour"] = s.vss_snapshot_frequency_hour
        elif only is not None and s.recovery_history > 0:
            params["DisableVSSSnapshotReplication"] = True
    if want("compression"):
        params["CompressionEnabled"] = s.compression
    if want("replicate_host_kvp_items"):
        params["ReplicateHostKvpItems"] = s.replicate_host_kvp_items
    if want("bypass_proxy_server"):
        params["BypassProxyServer"] = s.bypass_proxy_server
    if want("auto_resynchronize") or want("auto_resynchronize_start") or want("auto_resynchronize_end"):
        params["AutoResynchronizeEnabled"] = s.auto_resynchronize
        if s.auto_resynchronize and s.auto_resynchronize_start and s.auto_resynchronize_end:
            params["AutoResynchronizeIntervalStart"] = s.auto_resynchronize_start
            params["AutoResynchronizeIntervalEnd"] = s.auto_resynchronize_end
    return params


def stored_disk_paths(session: Session, vm_id: str, wanted: Sequence[str]) -> list[str]:
    """`wanted` as the VM's disks store them. Enable-VMReplication compares -ExcludedVhdPath with the stored
    paths case-SENSITIVELY (EnableVMReplication.cs: string.Equals), although Windows paths are not: so the
    paths are matched here ignoring case (Get-VMHardDiskDrive) and sent exactly as stored."""
    if not wanted:
        return []
    result = session.run([vm_by_id(vm_id), cmd("Get-VMHardDiskDrive")])
    result.raise_errors()
    stored = {
        text(prop(o, "Path")).lower(): text(prop(o, "Path")) for o in result.output if is_type(o, _DISK_TYPE)
    }
    unknown = [path for path in wanted if path.strip().lower() not in stored]
    if unknown:
        raise Validation(
            f"excluded_vhd_paths: {_quoted(unknown)} is not a virtual hard disk of VM {vm_id}; its disks "
            f"are {_quoted(stored.values()) or 'none'}",
            cmdlet="Get-VMHardDiskDrive",
            host=session.host,
        )
    return [stored[path.strip().lower()] for path in wanted]


def _quoted(paths: Iterable[str]) -> str:
    return ", ".join(f"'{path}'" for path in paths)  # not repr: that doubles every backslash


def enable_cmds(
    vm_id: str,
    settings: ReplicationSettings,
    initial: InitialReplication,
    excluded_vhd_paths: Sequence[str] = (),
) -> list[Statement]:
    """Enable-VMReplication, the initial replication as configured and a read-back, for ONE invocation."""
    enable = cmd(
        "Enable-VMReplication",
        ReplicaServerName=settings.replica_server_fqdn,
        **_setting_params(settings),
        ExcludedVhdPath=list(excluded_vhd_paths) or None,
        ErrorAction="Stop",
    )
    initial_cmds = initial_replication_cmds(vm_id, initial)
    return [[vm_by_id(vm_id), enable], *initial_cmds, *relationship_read_cmds(vm_id)]


def initial_replication_cmds(vm_id: str, initial: InitialReplication) -> list[Statement]:
    """Start-VMInitialReplication as `initial` says (nothing for mode "none")."""
    options = {
        "network": {},
        "scheduled": {"InitialReplicationStartTime": initial.start_time},
        "export": {"DestinationPath": initial.destination_path},
    }
    if initial.mode not in options:
        return []
    return [[vm_by_id(vm_id), cmd("Start-VMInitialReplication", **options[initial.mode], ErrorAction="Stop")]]


def set_replication_cmd(vm_id: str, settings: ReplicationSettings, changed: set[str]) -> Statement:
    params = _setting_params(settings, changed)
    return [vm_by_id(vm_id), cmd("Set-VMReplication", **params, ErrorAction="Stop")]


# States in which replication does not run until someone resumes it; the last two need a resynchronization.
SUSPENDED_STATES = ("Suspended", "ResynchronizeSuspended", "WaitingForStartResynchronize")
FAILED_OVER_STATES = ("FailedOverWaitingCompletion", "FailedOver")
RESYNC_STATES = ("ResynchronizeSuspended", "WaitingForStartResynchronize")


def prepare_failover_cmds(vm_id: str) -> list[Statement]:
    """On the primary: shut the VM down (the guest's own shutdown, -Force skips the prompt about open
    applications), then Start-VMFailover -Prepare, which sends what is not sent yet and needs the VM off."""
    return [
        [vm_by_id(vm_id), cmd("Stop-VM", Force=True, ErrorAction="Stop")],
        [vm_by_id(vm_id), cmd("Start-VMFailover", Prepare=True, Confirm=False, ErrorAction="Stop")],
    ]


def failover_cmd(vm_id: str) -> Statement:
    """On the replica: Start-VMFailover (the latest point; the VM is not started)."""
    return [vm_by_id(vm_id), cmd("Start-VMFailover", Confirm=False, ErrorAction="Stop")]


def reverse_cmd(vm_id: str, settings: ReplicationSettings) -> Statement:
    """On the failed-over replica: Set-VMReplication -Reverse to `settings.replica_server_fqdn` (the old
    primary) with this host's own certificate, port and settings."""
    reverse = cmd(
        "Set-VMReplication",
        Reverse=True,
        ReplicaServerName=settings.replica_server_fqdn,
        **_setting_params(settings),
        ErrorAction="Stop",
    )
    return [vm_by_id(vm_id), reverse]


def _relationship(extended: bool) -> str | None:
    return "Extended" if extended else None  # -ReplicationRelationshipType: Simple when left out


def suspend_cmd(vm_id: str, *, extended: bool = False) -> Statement:
    relationship = _relationship(extended)
    suspend = cmd("Suspend-VMReplication", ReplicationRelationshipType=relationship, ErrorAction="Stop")
    return [vm_by_id(vm_id), suspend]


def resume_cmd(vm_id: str, *, resynchronize: bool, extended: bool = False) -> Statement:
    resume = cmd(
        "Resume-VMReplication",
        ReplicationRelationshipType=_relationship(extended),
        Resynchronize=resynchronize or None,
        ErrorAction="Stop",
    )
    return [vm_by_id(vm_id), resume]


def remove_extended_replication(session: Session, vm_id: str) -> None:
    """Remove only the extended leg of the replica VM with this id (its first leg stays): its VMReplication
    object, picked by Get-VMReplication -ReplicationRelationshipType, piped to Remove-VMReplication (whose
    own -ReplicationRelationshipType exists with -VMName only, RemoveVMReplication.cs). Already gone is
    success."""
    extended = cmd("Get-VMReplication", ReplicationRelationshipType="Extended")
    result = session.run([vm_by_id(vm_id), extended, cmd("Remove-VMReplication")])
    for error in result.errors:
        if not (isinstance(error, NotFound) or is_not_enabled(error)):
            raise error


def remove_replication(session: Session, vm_id: str) -> VirtualMachineRef | None:
    """Remove the replication of the VM with this id on this host (Remove-VMReplication affects only the host
    it runs on), then read the VM back, in one invocation. The VM is the relationship's own on either host (a
    replica VM keeps its primary's id), so another VM of the same name is never touched. Returns the VM as it
    is now; None when it does not exist. A VM without replication has nothing to remove."""
    result = session.run([vm_by_id(vm_id), cmd("Remove-VMReplication")], [vm_by_id(vm_id)])
    for error in result.errors:
        nothing_to_remove = error.fq_error_id == NOTHING_TO_REMOVE_ERROR
        if not (isinstance(error, NotFound) or nothing_to_remove):
            raise error
    vms = parse_vms(result.output)
    return vms[0] if vms else None


def remove_vm(session: Session, vm_id: str) -> None:
    """Delete the (replica) VM with this id; already gone is success."""
    result = session.run([vm_by_id(vm_id), cmd("Remove-VM", Force=True)])
    result.raise_errors(allow=(NotFound,))


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.\d+)?S)?)?")


def timespan(value: Any) -> str:
    """A TimeSpan as hh:mm:ss; pypsrp hands it over as an xs:duration such as PT18H30M."""
    raw = text(value)
    match = _DURATION.fullmatch(raw)
    if match is None:
        return raw
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return f"{days * 24 + hours:02d}:{minutes:02d}:{seconds:02d}"


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return text(value).strip().lower() == "true"


# ----------------------------------------------------------------------------------------- test failover


def start_test_failover(
    session: Session, vm_id: str, recovery_point: str | None, switch_name: str | None
) -> VirtualMachineRef:
    """Start-VMFailover -AsTest on the replica VM with this id, from the named recovery point (its
    Get-VMSnapshot -Name, piped as -VMRecoverySnapshot) or the latest one; returns the test VM Hyper-V made
    ("<vm> - Test", a new id). An isolated switch is looked up first, so a missing one changes nothing."""
    statements: list[Statement] = []
    if switch_name:
        statements.append([cmd("Get-VMSwitch", Name=switch_name, ErrorAction="Stop")])
    head = [vm_by_id(vm_id)]
    if recovery_point:
        head.append(cmd("Get-VMSnapshot", Name=recovery_point, ErrorAction="Stop"))
    statements.append([*head, cmd("Start-VMFailover", AsTest=True, Confirm=False, ErrorAction="Stop")])
    result = session.run(*statements)
    result.raise_errors()
    made = [v for v in parse_vms(result.output) if v.replication_mode == "TestReplica"]
    if len(made) != 1:
        raise RemoteError(f"Start-VMFailover -AsTest wrote no test VM for VM {vm_id}", host=session.host)
    return made[0]


def prepare_test_vm(
    session: Session, test_vm_id: str, switch_name: str | None, start: bool
) -> VirtualMachineRef:
    """Connect the test VM's network adapters to `switch_name` and start it, as asked; then read it back."""
    statements: list[Statement] = []
    if switch_name:
        statements.append(
            [
                vm_by_id(test_vm_id),
                cmd("Get-VMNetworkAdapter"),
                cmd("Connect-VMNetworkAdapter", SwitchName=switch_name, ErrorAction="Stop"),
            ]
        )
    if start:
        statements.append([vm_by_id(test_vm_id), cmd("Start-VM", ErrorAction="Stop")])
    result = session.run(*statements, [vm_by_id(test_vm_id)])
    result.raise_errors()
    return parse_vms(result.output)[0]


def find_vm(session: Session, vm_id: str) -> VirtualMachineRef | None:
    """The VM with this id, or None when Get-VM -Id finds none (anything else raises)."""
    result = session.run([vm_by_id(vm_id)])
    result.raise_errors(allow=(NotFound,))
    vms = parse_vms(result.output)
    return vms[0] if vms else None


def stop_test_failover(session: Session, vm_id: str) -> None:
    """Stop-VMFailover on the replica VM with this id: Hyper-V stops and deletes its test VM. Callers make
    sure the test VM exists: without one, Stop-VMFailover would revert a real failover of the VM."""
    result = session.run([vm_by_id(vm_id), cmd("Stop-VMFailover")])
    for error in result.errors:
        # The test VM went in between (another Stop-VMFailover): nothing is left to end.
        if error.fq_error_id != f"InvalidState,{COMMANDS}.StopVMFailover":
            raise error
