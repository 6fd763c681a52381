"""Hyper-V Replica primitives over a remoting session: replica-server settings, authorization entries,
per-VM replication. Typed dataclasses in and out; cmdlets with named parameters only.

Per-VM reads name the VM (`Get-VMReplication -VMName`), so a read costs the same with one VM or five
hundred on the host. Windows answers a named VM without replication with a terminating "not enabled"
error, recognised here by its FullyQualifiedErrorId; a VM that does not exist stays a NotFound error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hvreplica_provider.remoting import (
    InvalidState,
    NotFound,
    RemoteError,
    Session,
    Statement,
    cmd,
    is_type,
    prop,
    text,
)

ANY_PRIMARY = "*"
DEFAULT_TRUST_GROUP = "DEFAULT"
SERVER_AUTHENTICATIONS = ("Certificate", "Kerberos", "CertificateAndKerberos")
VM_AUTHENTICATIONS = ("Certificate", "Kerberos")
WILDCARD_CHARACTERS = "*?[]"
# The error id Hyper-V's module uses for "replication is not enabled for virtual machine ..." (the part of the
# FullyQualifiedErrorId before the command class).
NOT_ENABLED_ERROR_ID = "VMReplication_NotEnabled"

_SERVER_TYPE = "Microsoft.HyperV.PowerShell.VMReplicationServer"
_ENTRY_TYPE = "Microsoft.HyperV.PowerShell.VMReplicationAuthorizationEntry"
_REPLICATION_TYPE = "Microsoft.HyperV.PowerShell.VMReplication"
_HEALTH_TYPE = "Microsoft.HyperV.PowerShell.VMReplicationHealth"


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
class VMReplicationInfo:
    vm_name: str
    mode: str
    state: str
    health: str
    primary_server: str
    replica_server: str
    settings: ReplicationSettings
    last_replication_time: str | None = None


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


def replication_read_cmd(vm_name: str | None = None) -> Statement:
    """The replication legs of one VM (check refuses names with wildcard characters), or of every VM."""
    return [cmd("Get-VMReplication", VMName=vm_name)]


def is_not_enabled(error: RemoteError) -> bool:
    """Whether `error` is Hyper-V's "replication is not enabled" for a named VM."""
    return isinstance(error, InvalidState) and error.fq_error_id.split(",", 1)[0] == NOT_ENABLED_ERROR_ID


def parse_replications(objects: Sequence[Any]) -> list[VMReplicationInfo]:
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
                mode=text(prop(o, "ReplicationMode")),
                state=text(prop(o, "ReplicationState")),
                health=text(prop(o, "ReplicationHealth")),
                primary_server=text(prop(o, "PrimaryServerName")),
                replica_server=text(prop(o, "ReplicaServerName")),
                settings=settings,
                last_replication_time=text(last) if last is not None else None,
            )
        )
    return out


def find_replication(infos: Sequence[VMReplicationInfo], vm_name: str, mode: str) -> VMReplicationInfo | None:
    """The VM's leg in `mode` (Primary or Replica); names compare exactly as Hyper-V stores them."""
    return next((i for i in infos if i.vm_name == vm_name and i.mode == mode), None)


def vm_replications(session: Session, vm_name: str) -> list[VMReplicationInfo]:
    """The VM's replication legs on this host in one pipeline; empty when replication is not enabled.
    A VM that does not exist raises NotFound: the caller decides whether that means gone."""
    try:
        result = session.run(replication_read_cmd(vm_name))
    except RemoteError as exc:
        if is_not_enabled(exc):
            return []
        raise
    result.raise_errors()
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


def enable_cmds(
    vm_name: str,
    settings: ReplicationSettings,
    initial: InitialReplication,
    excluded_vhd_paths: Sequence[str] = (),
) -> list[Statement]:
    """Enable-VMReplication, the initial replication as configured and a read-back, for ONE invocation."""
    enable = cmd(
        "Enable-VMReplication",
        VMName=vm_name,
        ReplicaServerName=settings.replica_server_fqdn,
        **_setting_params(settings),
        ExcludedVhdPath=list(excluded_vhd_paths) or None,
        ErrorAction="Stop",
    )
    statements: list[Statement] = [[enable]]
    if initial.mode == "network":
        statements.append([cmd("Start-VMInitialReplication", VMName=vm_name, ErrorAction="Stop")])
    elif initial.mode == "scheduled":
        statements.append(
            [
                cmd(
                    "Start-VMInitialReplication",
                    VMName=vm_name,
                    InitialReplicationStartTime=initial.start_time,
                    ErrorAction="Stop",
                )
            ]
        )
    elif initial.mode == "export":
        statements.append(
            [
                cmd(
                    "Start-VMInitialReplication",
                    VMName=vm_name,
                    DestinationPath=initial.destination_path,
                    ErrorAction="Stop",
                )
            ]
        )
    statements.append(replication_read_cmd(vm_name))
    return statements


def set_replication_cmd(vm_name: str, settings: ReplicationSettings, changed: set[str]) -> Statement:
    params = _setting_params(settings, changed)
    return [cmd("Set-VMReplication", VMName=vm_name, **params, ErrorAction="Stop")]


def remove_replication(session: Session, vm_name: str, mode: str) -> list[VMReplicationInfo]:
    """Remove the VM's `mode` leg (Primary/Replica) on this host in one invocation: the legs are listed, then
    only the one in `mode` is piped to Remove-VMReplication, so a VM of the same name replicating some other
    way is left alone. Returns the legs left on this host; a VM without replication, or one that no longer
    exists, has nothing to remove."""
    listing = replication_read_cmd(vm_name)
    removal = [cmd("Get-VMReplication", VMName=vm_name, ReplicationMode=mode), cmd("Remove-VMReplication")]
    try:
        result = session.run(listing, removal)
    except RemoteError as exc:
        if is_not_enabled(exc):
            return []
        raise
    result.raise_errors(allow=(NotFound,))
    infos = parse_replications(result.output)
    return [i for i in infos if not (i.vm_name == vm_name and i.mode == mode)]


def remove_vm(session: Session, vm_name: str) -> None:
    """Delete a (replica) VM; already gone is success (Get-VM reports a missing name as NotFound)."""
    session.run([cmd("Remove-VM", Name=vm_name, Force=True)]).raise_errors(allow=(NotFound,))


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
