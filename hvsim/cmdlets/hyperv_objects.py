"""Hyper-V module output objects and enums, shared by the hyperv_* cmdlet modules.

Objects are real .NET objects (adapted properties) of `Microsoft.HyperV.PowerShell`; nested objects are sent
the way default remoting depth (1) sends them: as their ToString text.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hvsim.cmdlets.objects import (
    datetime_value,
    define_enum,
    dotnet_object,
    guid,
    i32,
    i64,
    object_array,
    string_array,
    timespan,
    u64,
)
from hvsim.hyperv import (
    AuthorizationEntry,
    HyperVHost,
    NetworkAdapter,
    RecoveryPoint,
    Replication,
    VirtualMachine,
    VirtualSwitch,
)

NS = "Microsoft.HyperV.PowerShell"

VMState = define_enum(
    f"{NS}.VMState",
    {
        "Other": 1,
        "Running": 2,
        "Off": 3,
        "Stopping": 4,
        "Saved": 6,
        "Paused": 9,
        "Starting": 10,
        "Reset": 11,
        "Saving": 32773,
        "Pausing": 32776,
        "Resuming": 32777,
        "FastSaved": 32779,
        "FastSaving": 32780,
    },
)
RecoveryAuthenticationType = define_enum(
    f"{NS}.RecoveryAuthenticationType", {"Kerberos": 1, "Certificate": 2, "CertificateAndKerberos": 3}
)
ReplicationAuthenticationType = define_enum(
    f"{NS}.ReplicationAuthenticationType", {"Kerberos": 1, "Certificate": 2}
)
VMReplicationMode = define_enum(
    f"{NS}.VMReplicationMode",
    {"None": 0, "Primary": 1, "Replica": 2, "TestReplica": 3, "ExtendedReplica": 4},
)
VMReplicationHealthState = define_enum(
    f"{NS}.VMReplicationHealthState", {"NotApplicable": 0, "Normal": 1, "Warning": 2, "Critical": 3}
)
VMReplicationRelationshipType = define_enum(
    f"{NS}.VMReplicationRelationshipType", {"Simple": 0, "Extended": 1}
)
VMReplicationState = define_enum(
    f"{NS}.VMReplicationState",
    {
        "Disabled": 0,
        "ReadyForInitialReplication": 1,
        "InitialReplicationInProgress": 2,
        "WaitingForInitialReplication": 3,
        "Replicating": 4,
        "PreparedForFailover": 5,
        "FailedOverWaitingCompletion": 6,
        "FailedOver": 7,
        "Suspended": 8,
        "Error": 9,
        "WaitingForStartResynchronize": 10,
        "Resynchronizing": 11,
        "ResynchronizeSuspended": 12,
        "RecoveryInProgress": 13,
        "FailbackInProgress": 14,
        "FailbackComplete": 15,
        "WaitingForUpdateCompletion": 16,
        "UpdateError": 17,
        "WaitingForRepurposeCompletion": 18,
        "PreparedForSyncReplication": 19,
        "PreparedForGroupReverseReplication": 20,
        "FiredrillInProgress": 21,
    },
)
VMReplicationType = define_enum(
    f"{NS}.VMReplicationType", {"None": 0, "Regular": 1, "ApplicationConsistent": 2, "Planned": 3}
)
VMReplicationServerOperationalStatus = define_enum(
    f"{NS}.VMReplicationServerOperationalStatus",
    {
        "Unknown": 0,
        "Other": 1,
        "Ok": 2,
        "Degraded": 3,
        "Stressed": 4,
        "PredictiveFailure": 5,
        "Error": 6,
        "NonRecoverableError": 7,
        "Starting": 8,
        "Stopping": 9,
        "Stopped": 10,
        "InService": 11,
        "NoContact": 12,
        "LostCommunication": 13,
        "Aborted": 14,
        "Dormant": 15,
        "SupportingEntityInError": 16,
        "Completed": 17,
        "PowerMode": 18,
    },
)
SnapshotType = define_enum(
    f"{NS}.SnapshotType",
    {
        "Standard": 0,
        "Recovery": 1,
        "Planned": 2,
        "Missing": 5,
        "Replica": 6,
        "AppConsistentReplica": 7,
        "SyncedReplica": 8,
    },
)
VMHeartbeatStatus = define_enum(
    f"{NS}.VMHeartbeatStatus",
    {
        "Unknown": 0,
        "Disabled": 1,
        "NoContact": 2,
        "Error": 3,
        "LostCommunication": 4,
        "OkApplicationsUnknown": 5,
        "OkApplicationsHealthy": 6,
        "OkApplicationsCritical": 7,
        "Paused": 8,
    },
)

VIRTUALIZATION_OBJECT = f"{NS}.VirtualizationObject"
VIRTUAL_MACHINE_TN = (f"{NS}.VirtualMachine", f"{NS}.VirtualMachineBase", VIRTUALIZATION_OBJECT)
VM_REPLICATION_TN = (f"{NS}.VMReplication", VIRTUALIZATION_OBJECT)
VM_REPLICATION_HEALTH_TN = (f"{NS}.VMReplicationHealth", VIRTUALIZATION_OBJECT)
VM_REPLICATION_SERVER_TN = (f"{NS}.VMReplicationServer", VIRTUALIZATION_OBJECT)
AUTHORIZATION_ENTRY_TN = (f"{NS}.VMReplicationAuthorizationEntry", VIRTUALIZATION_OBJECT)
VM_SNAPSHOT_TN = (f"{NS}.VMSnapshot", f"{NS}.VirtualMachineBase", VIRTUALIZATION_OBJECT)
# HardDiskDrive : Drive : DriveBase : VMDevice : VMComponentObject : VirtualizationObject (HardDiskDrive.cs).
HARD_DISK_DRIVE_TN = (
    f"{NS}.HardDiskDrive",
    f"{NS}.Drive",
    f"{NS}.DriveBase",
    f"{NS}.VMDevice",
    f"{NS}.VMComponentObject",
    VIRTUALIZATION_OBJECT,
)
ControllerType = define_enum(f"{NS}.ControllerType", {"IDE": 0, "SCSI": 1, "PMEM": 2})
VMSwitchType = define_enum(f"{NS}.VMSwitchType", {"Private": 0, "Internal": 1, "External": 2})
VM_SWITCH_TN = (f"{NS}.VMSwitch", VIRTUALIZATION_OBJECT)
# VMNetworkAdapter : VMNetworkAdapterBase : VMDevice : VMComponentObject : VirtualizationObject.
VM_NETWORK_ADAPTER_TN = (
    f"{NS}.VMNetworkAdapter",
    f"{NS}.VMNetworkAdapterBase",
    f"{NS}.VMDevice",
    f"{NS}.VMComponentObject",
    VIRTUALIZATION_OBJECT,
)

RECOVERY_AUTH_NAMES = {1: "Kerberos", 2: "Certificate", 3: "CertificateAndKerberos"}


def _optional_time(value: datetime | None) -> Any:
    return datetime_value(value) if value is not None else None


def _disk_text(vm: VirtualMachine, index: int) -> str:
    disk = vm.hard_disks[index]
    return (
        f"HardDiskDrive (Name = 'Hard Drive on {disk.controller_type} controller number "
        f"{disk.controller_number} at location {disk.controller_location}', VMName = '{vm.name}') [Id = "
        f"'Microsoft:{vm.id.upper()}\\{index}', VMId = '{vm.id}']"
    )


def _identity(hyperv: HyperVHost, vm: VirtualMachine) -> dict[str, Any]:
    return {"VMName": vm.name, "VMId": guid(vm.id), "ComputerName": hyperv.computer_name, "IsDeleted": False}


def vm_object(hyperv: HyperVHost, vm: VirtualMachine, now: datetime) -> Any:
    """A `VirtualMachine` as Get-VM writes it."""
    running = vm.state == "Running"
    uptime = now - vm.uptime_started if running and vm.uptime_started else timedelta(0)
    disks = [_disk_text(vm, i) for i in range(len(vm.hard_disks))]
    props: dict[str, Any] = {
        **_identity(hyperv, vm),
        "Name": vm.name,
        "Id": guid(vm.id),
        "State": VMState[vm.state],
        "Status": "Operating normally",
        "Heartbeat": VMHeartbeatStatus["OkApplicationsHealthy" if running else "Disabled"],
        "ReplicationState": VMReplicationState[vm.replication_state],
        "ReplicationHealth": VMReplicationHealthState[vm.replication_health],
        "ReplicationMode": VMReplicationMode[vm.replication_mode],
        "CPUUsage": i32(2 if running else 0),
        "MemoryAssigned": i64(vm.memory_startup_bytes if running else 0),
        "MemoryDemand": i64(vm.memory_startup_bytes // 2 if running else 0),
        "MemoryStartup": i64(vm.memory_startup_bytes),
        "DynamicMemoryEnabled": False,
        "ProcessorCount": i64(vm.processor_count),
        "Uptime": timespan(timedelta(seconds=int(uptime.total_seconds()))),
        "Generation": i32(vm.generation),
        "Version": "9.0",
        "Path": vm.path,
        "ConfigurationLocation": vm.path,
        "SnapshotFileLocation": vm.path,
        "CreationTime": datetime_value(vm.creation_time),
        "IsClustered": False,
        "Notes": "",
        "HardDrives": string_array(disks),
    }
    return dotnet_object(
        VIRTUAL_MACHINE_TN, props, to_string=f"VirtualMachine (Name = '{vm.name}') [Id = '{vm.id}']"
    )


def leg_mode(vm: VirtualMachine, rep: Replication) -> str:
    """The ReplicationMode a leg shows: the VM's own (Replica) for its extended leg, which hvsim keeps as a
    sending ("Primary") leg."""
    return vm.replication_mode if rep is vm.extended else rep.mode


def leg_type(vm: VirtualMachine, rep: Replication) -> str:
    return "Extended" if rep is vm.extended else "Simple"


def _replication_identity(hyperv: HyperVHost, vm: VirtualMachine, rep: Replication) -> dict[str, Any]:
    """The leading properties VMReplication and VMReplicationHealth share, in their order."""
    return {
        **_identity(hyperv, vm),
        "ReplicationMode": VMReplicationMode[leg_mode(vm, rep)],
        "ReplicationState": VMReplicationState[rep.state],
        "ReplicationHealth": VMReplicationHealthState[rep.health],
        "ReplicationRelationshipType": VMReplicationRelationshipType[leg_type(vm, rep)],
        "PrimaryServerName": rep.primary_server_name,
        "ReplicaServerName": rep.settings.replica_server_name,
        "CurrentReplicaServerName": rep.settings.replica_server_name,
    }


def replication_object(hyperv: HyperVHost, vm: VirtualMachine, leg: Replication | None = None) -> Any:
    """A `VMReplication` (Get-VMReplication, -Passthru of the replication cmdlets) of the leg `leg`, the
    simple one by default."""
    rep = leg or vm.replication
    assert rep is not None  # callers select replication-enabled VMs
    s = rep.settings
    excluded = set(s.excluded_disks)  # the stored paths, exactly (Enable-VMReplication checked them so)
    replicated = [_disk_text(vm, i) for i, d in enumerate(vm.hard_disks) if d.path not in excluded]
    excluded_text = [_disk_text(vm, i) for i, d in enumerate(vm.hard_disks) if d.path in excluded]
    props: dict[str, Any] = {
        **_replication_identity(hyperv, vm, rep),
        "AllowedPrimaryServer": rep.allowed_primary_server,
        "ReplicaServerPort": i32(s.replica_server_port),
        "AuthenticationType": ReplicationAuthenticationType[s.authentication_type],
        "CertificateThumbprint": s.certificate_thumbprint,
        "CompressionEnabled": s.compression_enabled,
        "ReplicateHostKvpItems": s.replicate_host_kvp_items,
        "BypassProxyServer": s.bypass_proxy_server,
        "EnableWriteOrderPreservationAcrossDisks": True,
        "ReplicationFrequencySec": i32(s.frequency_sec),
        "RecoveryHistory": i32(s.recovery_history),
        "VSSSnapshotFrequencyHour": i32(s.vss_frequency_hour),
        "VSSSnapshotReplicationEnabled": s.vss_frequency_hour > 0,
        "AutoResynchronizeEnabled": s.auto_resynchronize_enabled,
        "AutoResynchronizeIntervalStart": timespan(s.auto_resynchronize_start),
        "AutoResynchronizeIntervalEnd": timespan(s.auto_resynchronize_end),
        "ReplicatedDisks": string_array(replicated),
        "ExcludedDisks": string_array(excluded_text),
        "InitialReplicationStartTime": _optional_time(rep.initial_replication_start_time),
        "ResynchronizeStartTime": None,
        "LastReplicationTime": _optional_time(rep.last_replication_time),
        "LastAppliedLogTime": _optional_time(
            rep.last_replication_time if rep.mode in ("Replica", "ExtendedReplica") else None
        ),
        "TestVirtualMachine": _test_vm_text(hyperv, rep),
    }
    return dotnet_object(VM_REPLICATION_TN, props, to_string=f"VMReplication (VMName = '{vm.name}')")


def _test_vm_text(hyperv: HyperVHost, rep: Replication) -> str | None:
    test_vm = hyperv.vm_by_id(rep.test_vm_id) if rep.test_vm_id else None
    return f"VirtualMachine (Name = '{test_vm.name}') [Id = '{test_vm.id}']" if test_vm else None


def replication_health_object(
    hyperv: HyperVHost, vm: VirtualMachine, now: datetime, leg: Replication | None = None
) -> Any:
    """A `VMReplicationHealth` (Measure-VMReplication) of the leg `leg`, the simple one by default."""
    rep = leg or vm.replication
    assert rep is not None
    st = rep.stats
    average_bytes = st.total_bytes // st.successful if st.successful else 0
    average_latency = timedelta(seconds=st.total_latency_sec / st.successful) if st.successful else None
    replicated = rep.last_replication_time is not None
    props: dict[str, Any] = {
        **_replication_identity(hyperv, vm, rep),
        "MonitoringStartTime": datetime_value(st.monitoring_start),
        "MonitoringEndTime": datetime_value(now),
        "LastReplicationTime": _optional_time(rep.last_replication_time),
        "LastTestFailoverInitiatedTime": None,
        "LastVSSSnapshotTime": _optional_time(st.last_vss_time),
        "CurrentTask": object_array([]),
        "LastReplicationType": VMReplicationType[st.last_replication_type],
        "FailedOverReplicationType": VMReplicationType["None"],
        "InitialReplicationSize": u64(0 if replicated else vm.data_bytes()),
        "PendingReplicationSize": u64(st.pending_bytes),
        "AverageReplicationSize": u64(average_bytes),
        "MaximumReplicationSize": u64(st.max_bytes),
        "AverageReplicationLatency": timespan(average_latency) if average_latency is not None else None,
        "MaximumReplicationLatency": timespan(timedelta(seconds=st.max_latency_sec))
        if st.successful
        else None,
        "ReplicationErrors": i32(st.errors),
        "SuccessfulReplicationCount": i32(st.successful),
        "MissedReplicationCount": i32(st.missed),
        "ReplicationHealthDetails": string_array(rep.health_details),
    }
    return dotnet_object(
        VM_REPLICATION_HEALTH_TN, props, to_string=f"VMReplicationHealth (VMName = '{vm.name}')"
    )


def authorization_entry_object(entry: AuthorizationEntry) -> Any:
    server = entry.allowed_primary_server
    props = {
        "AllowedPrimaryServer": entry.allowed_primary_server,
        "ReplicaStorageLocation": entry.replica_storage_location,
        "TrustGroup": entry.trust_group,
    }
    return dotnet_object(
        AUTHORIZATION_ENTRY_TN,
        props,
        to_string=f"VMReplicationAuthorizationEntry (AllowedPrimaryServer = '{server}')",
    )


def replication_server_object(hyperv: HyperVHost) -> Any:
    server = hyperv.server
    any_entry = hyperv.any_server_entry
    auth = RECOVERY_AUTH_NAMES.get(server.allowed_authentication_type)
    entries = [
        f"VMReplicationAuthorizationEntry (AllowedPrimaryServer = '{e.allowed_primary_server}')"
        for e in hyperv.authorization_entries
    ]
    props: dict[str, Any] = {
        "ComputerName": hyperv.computer_name,
        "ReplicationEnabled": server.replication_enabled,
        # The unnamed value 0 stored after disabling serialises as its number.
        "AllowedAuthenticationType": RecoveryAuthenticationType[auth] if auth else i32(0),
        "ReplicationAllowedFromAnyServer": any_entry is not None,
        "CertificateThumbprint": server.certificate_thumbprint,
        "KerberosAuthenticationPort": i32(server.kerberos_port),
        "CertificateAuthenticationPort": i32(server.certificate_port),
        "KerberosAuthenticationPortMapping": None,
        "CertificateAuthenticationPortMapping": None,
        "DefaultStorageLocation": any_entry.replica_storage_location if any_entry else "",
        "AuthorizationEntries": string_array(entries),
        "MonitoringInterval": timespan(server.monitoring_interval),
        "MonitoringStartTime": timespan(server.monitoring_start_time),
        "OperationalStatus": object_array([VMReplicationServerOperationalStatus["Ok"]]),
        "StatusDescriptions": string_array(["OK"]),
        "IsDeleted": False,
    }
    return dotnet_object(
        VM_REPLICATION_SERVER_TN, props, to_string=f"VMReplicationServer ({hyperv.computer_name})"
    )


def hard_disk_drive_object(hyperv: HyperVHost, vm: VirtualMachine, index: int) -> Any:
    """A `HardDiskDrive` as Get-VMHardDiskDrive writes it: Path is the stored path, in its stored case."""
    disk = vm.hard_disks[index]
    props: dict[str, Any] = {
        **_identity(hyperv, vm),
        "Name": f"Hard Drive on {disk.controller_type} controller number {disk.controller_number} at "
        f"location {disk.controller_location}",
        "Id": f"Microsoft:{vm.id.upper()}\\{index}",
        "Path": disk.path,
        "ControllerType": ControllerType[disk.controller_type],
        "ControllerNumber": i32(disk.controller_number),
        "ControllerLocation": i32(disk.controller_location),
        "DiskNumber": None,
        "PoolName": "Primordial",
    }
    return dotnet_object(HARD_DISK_DRIVE_TN, props, to_string=_disk_text(vm, index))


def snapshot_object(hyperv: HyperVHost, vm: VirtualMachine, point: RecoveryPoint) -> Any:
    props: dict[str, Any] = {
        **_identity(hyperv, vm),
        "Id": guid(point.id),
        "Name": point.name,
        "SnapshotType": SnapshotType[point.snapshot_type],
        "CreationTime": datetime_value(point.creation_time),
        "ParentSnapshotId": None,
        "ParentSnapshotName": "",
        "State": VMState["Off"],
        "Path": vm.path,
        "Generation": i32(vm.generation),
        "Notes": "",
    }
    return dotnet_object(
        VM_SNAPSHOT_TN, props, to_string=f"VMSnapshot (Name = '{point.name}', VMName = '{vm.name}')"
    )


def switch_object(hyperv: HyperVHost, switch: VirtualSwitch) -> Any:
    props: dict[str, Any] = {
        "ComputerName": hyperv.computer_name,
        "Name": switch.name,
        "Id": guid(switch.id),
        "SwitchType": VMSwitchType[switch.switch_type],
        "IsDeleted": False,
    }
    return dotnet_object(
        VM_SWITCH_TN, props, to_string=f"VMSwitch (Name = '{switch.name}') [Id = '{switch.id}']"
    )


def network_adapter_object(hyperv: HyperVHost, vm: VirtualMachine, adapter: NetworkAdapter) -> Any:
    index = vm.network_adapters.index(adapter)
    props: dict[str, Any] = {
        **_identity(hyperv, vm),
        "Name": adapter.name,
        "Id": f"Microsoft:{vm.id.upper()}\\{index}",
        "SwitchName": adapter.switch_name or None,
        "Connected": bool(adapter.switch_name),
        "IsManagementOs": False,
        "MacAddress": "000000000000",
    }
    return dotnet_object(
        VM_NETWORK_ADAPTER_TN,
        props,
        to_string=f"VMNetworkAdapter (Name = '{adapter.name}', VMName = '{vm.name}') [VMId = '{vm.id}']",
    )
