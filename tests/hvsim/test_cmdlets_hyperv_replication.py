"""Conformance of the per-VM replication cmdlets with the real pypsrp client (hyperv-replica.md §2.3-§2.6,
§3): validation, defaults, object shapes, the not-enabled and not-idempotent errors and the legality matrix.

Two hosts of one domain replicate with Kerberos (no certificates needed). The clock runs at real speed here,
so an initial replication started by a test stays in progress while the test looks at it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from psrpcore.types import ErrorCategory
from pypsrp.powershell import PowerShell

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import (
    HostSession,
    make_kerberos_replica,
    props,
    replication_state,
    sessions,
)

PRIMARY, REPLICA = "hv1.contoso.com", "hv2.contoso.com"
VMS = [
    "web01",
    "app01",
    "db01",
    "file01",
    "mail01",
    "idle01",
    "plain01",
    "sel01",
    "sel02",
    "opt01",
    "exp01",
    "pipe01",
]
REPLICATION_TYPES = [
    "Microsoft.HyperV.PowerShell.VMReplication",
    "Microsoft.HyperV.PowerShell.VirtualizationObject",
    "System.Object",
]
KERBEROS = {"ReplicaServerName": REPLICA, "ReplicaServerPort": 80, "AuthenticationType": "Kerberos"}


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[HostSession, HostSession]]:
    config = lab_config(host(PRIMARY, "127.63.0.1", vms=VMS), host(REPLICA, "127.63.0.2"), time_scale=1.0)
    with running_lab(config) as emulator, sessions(emulator, PRIMARY, REPLICA) as opened:
        make_kerberos_replica(opened[REPLICA], PRIMARY, "D:\\Replica")
        yield opened[PRIMARY], opened[REPLICA]


@pytest.fixture()
def primary(hosts: tuple[HostSession, HostSession]) -> HostSession:
    return hosts[0]


@pytest.fixture()
def replica(hosts: tuple[HostSession, HostSession]) -> HostSession:
    return hosts[1]


ENABLE = "Microsoft.HyperV.PowerShell.Commands.EnableVMReplication"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        # The engine's parameter binding: terminating, with the engine's ids.
        ({**KERBEROS, "ReplicationFrequencySec": 60}, 'does not belong to the set "30,300,900"'),
        ({**KERBEROS, "RecoveryHistory": 25}, "maximum allowed range of 24"),
        ({**KERBEROS, "VSSSnapshotFrequencyHour": 13, "RecoveryHistory": 2}, "maximum allowed range of 12"),
        ({**KERBEROS, "ReplicaServerPort": 0}, "minimum allowed range of 1"),
        ({"ReplicaServerPort": 80, "AuthenticationType": "Kerberos"}, "MissingMandatoryParameter"),
    ],
)
def test_enable_binding_errors_are_terminating(primary: HostSession, params: dict, fragment: str) -> None:
    outcome = primary.run("Enable-VMReplication", VMName="plain01", **params)
    assert outcome.had_errors
    assert fragment in f"{outcome.error} {outcome.error.fq_error}"
    assert str(props(primary.ok("Get-VM", Name="plain01")[0])["ReplicationMode"]) == "None"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {**KERBEROS, "ReplicaServerName": "127.63.0.2"},
            "The 'ReplicaServerName' parameter requires a fully qualified domain name (FQDN).",
        ),
        (
            {**KERBEROS, "VSSSnapshotFrequencyHour": 4},
            "Application-consistent replication frequency can be specified only if recovery history has a "
            "non-zero value.",
        ),
        (
            {**KERBEROS, "CertificateThumbprint": "AB" * 20},
            "'CertificateThumbprint' is not required for 'Kerberos'.",
        ),
        (
            {**KERBEROS, "AuthenticationType": "Certificate", "ReplicaServerPort": 443},
            "'CertificateThumbprint' is not provided.",
        ),
    ],
)
def test_enable_validation_is_a_non_terminating_invalid_parameter(
    primary: HostSession, params: dict, message: str
) -> None:
    """EnableVMReplication.ValidateParameters throws CreateInvalidArgumentException, which the cmdlet base
    class writes: the pipeline completes with one InvalidParameter record (VirtualizationCmdletBase.cs)."""
    outcome = primary.run("Enable-VMReplication", VMName="plain01", **params)
    assert not outcome.had_errors and outcome.output == []
    assert outcome.error.fq_error == f"InvalidParameter,{ENABLE}"
    assert ErrorCategory(outcome.error.category) == ErrorCategory.InvalidArgument
    assert str(outcome.error) == message
    assert str(props(primary.ok("Get-VM", Name="plain01")[0])["ReplicationMode"]) == "None"
    stopped = primary.run("Enable-VMReplication", VMName="plain01", ErrorAction="Stop", **params)
    assert stopped.had_errors and stopped.error.fq_error == f"InvalidParameter,{ENABLE}"


def test_enable_creates_both_legs_with_defaults(primary: HostSession, replica: HostSession) -> None:
    out = primary.ok("Enable-VMReplication", "Passthru", VMName="web01", **KERBEROS)
    assert out[0].types == REPLICATION_TYPES
    p = props(out[0])
    assert (str(p["ReplicationMode"]), str(p["ReplicationState"]), str(p["ReplicationHealth"])) == (
        "Primary",
        "ReadyForInitialReplication",
        "Warning",
    )
    assert (p["PrimaryServerName"], p["ReplicaServerName"], p["ReplicaServerPort"]) == (PRIMARY, REPLICA, 80)
    assert str(p["AuthenticationType"]) == "Kerberos" and p["CertificateThumbprint"] == ""
    assert (p["ReplicationFrequencySec"], p["RecoveryHistory"], p["VSSSnapshotFrequencyHour"]) == (300, 0, 0)
    assert (p["CompressionEnabled"], p["VSSSnapshotReplicationEnabled"], p["LastReplicationTime"]) == (
        True,
        False,
        None,
    )
    assert str(p["ReplicationRelationshipType"]) == "Simple"

    leg = props(replica.ok("Get-VMReplication", VMName="web01")[0])
    assert (str(leg["ReplicationMode"]), str(leg["ReplicationState"])) == (
        "Replica",
        "WaitingForInitialReplication",
    )
    assert leg["AllowedPrimaryServer"] == PRIMARY and leg["PrimaryServerName"] == PRIMARY
    replica_vm = props(replica.ok("Get-VM", Name="web01")[0])
    assert uuid.UUID(str(replica_vm["VMId"])) == uuid.UUID(str(p["VMId"]))
    assert str(replica_vm["State"]) == "Off" and replica_vm["Path"].startswith("D:\\Replica\\Hyper-V Replica")

    again = primary.run("Enable-VMReplication", VMName="web01", **KERBEROS)
    assert again.error.fq_error == f"OperationFailed,{ENABLE}" and not again.had_errors
    assert str(again.error) == (
        "Replication has already been enabled on virtual machine 'web01'. Please use the Set-VMReplication "
        "cmdlet to modify replication settings."
    )


def test_start_vm_refused_on_a_replica(replica: HostSession, primary: HostSession) -> None:
    primary.ok("Enable-VMReplication", VMName="mail01", **KERBEROS)
    refused = replica.run("Start-VM", Name="mail01")
    assert "Replica" in str(refused.error)


def test_initial_replication_legality(primary: HostSession) -> None:
    primary.ok(
        "Enable-VMReplication", VMName="app01", RecoveryHistory=3, VSSSnapshotFrequencyHour=2, **KERBEROS
    )
    started = props(primary.ok("Start-VMInitialReplication", "Passthru", VMName="app01")[0])
    assert (str(started["ReplicationState"]), str(started["ReplicationHealth"])) == (
        "InitialReplicationInProgress",
        "Normal",
    )
    repeat = primary.run("Start-VMInitialReplication", VMName="app01")
    assert "in the current replication state" in str(repeat.error)
    assert repeat.error.fq_error.startswith("InvalidState,")
    assert ErrorCategory(repeat.error.category) == ErrorCategory.InvalidOperation

    primary.ok("Suspend-VMReplication", VMName="app01")
    assert replication_state(primary, "app01") == ("Suspended", "Warning")
    assert "in the current replication state" in str(
        primary.run("Suspend-VMReplication", VMName="app01").error
    )
    primary.ok("Resume-VMReplication", VMName="app01")
    assert replication_state(primary, "app01")[0] == "InitialReplicationInProgress"
    assert "in the current replication state" in str(
        primary.run("Resume-VMReplication", VMName="app01").error
    )

    primary.ok("Stop-VMInitialReplication", VMName="app01")
    assert replication_state(primary, "app01") == ("ReadyForInitialReplication", "Warning")


def test_scheduled_initial_replication(primary: HostSession) -> None:
    primary.ok("Enable-VMReplication", VMName="file01", **KERBEROS)
    past = primary.run(
        "Start-VMInitialReplication", VMName="file01", InitialReplicationStartTime="2001-01-01T00:00:00"
    )
    assert str(past.error) == "The specified start time is not valid because it occurs in the past."
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    primary.ok("Start-VMInitialReplication", VMName="file01", InitialReplicationStartTime=when.isoformat())
    p = props(primary.ok("Get-VMReplication", VMName="file01")[0])
    assert str(p["ReplicationState"]) == "ReadyForInitialReplication"
    assert p["InitialReplicationStartTime"] is not None


def test_set_vm_replication_rules(primary: HostSession, replica: HostSession) -> None:
    primary.ok("Enable-VMReplication", VMName="db01", **KERBEROS)
    none = primary.run("Set-VMReplication", VMName="db01")
    assert none.error.fq_error.startswith("OperationFailed,") and "Insufficient input" in str(none.error)
    changed = props(
        primary.ok(
            "Set-VMReplication",
            "Passthru",
            VMName="db01",
            ReplicationFrequencySec=30,
            RecoveryHistory=4,
            VSSSnapshotFrequencyHour=2,
        )[0]
    )
    assert (
        changed["ReplicationFrequencySec"],
        changed["RecoveryHistory"],
        changed["VSSSnapshotFrequencyHour"],
    ) == (
        30,
        4,
        2,
    )
    conflict = primary.run("Set-VMReplication", VMName="db01", RecoveryHistory=0, VSSSnapshotFrequencyHour=1)
    assert conflict.error.fq_error.startswith("InvalidParameter,")
    # RecoveryHistory 0 alone switches VSS points off (§2.4).
    off = props(primary.ok("Set-VMReplication", "Passthru", VMName="db01", RecoveryHistory=0)[0])
    assert (off["VSSSnapshotFrequencyHour"], off["VSSSnapshotReplicationEnabled"]) == (0, False)
    on_replica = replica.run("Set-VMReplication", VMName="db01", ReplicationFrequencySec=900)
    assert on_replica.error.fq_error.startswith("OperationFailed,")
    assert "cannot be modified on the replica virtual machine 'db01'" in str(on_replica.error)
    not_enabled = primary.run("Set-VMReplication", VMName="idle01", ReplicationFrequencySec=900)
    assert not_enabled.error.fq_error.startswith("InvalidState,")  # SetVMReplication.cs
    assert str(not_enabled.error) == "Replication is not enabled for virtual machine with name 'idle01'."


def test_get_vm_replication_selection(primary: HostSession, replica: HostSession) -> None:
    primary.ok("Enable-VMReplication", VMName="sel01", **KERBEROS)
    enabled = {props(r)["VMName"] for r in primary.ok("Get-VMReplication")}
    assert "sel01" in enabled and "sel02" not in enabled
    # GetVMReplication.cs: CreateOperationFailedException, written by the base class (non-terminating), so
    # the other VMs named are still listed.
    named = primary.run("Get-VMReplication", VMName=["sel02", "sel01"])
    assert not named.had_errors and [props(r)["VMName"] for r in named.output] == ["sel01"]
    assert named.error.fq_error == "OperationFailed,Microsoft.HyperV.PowerShell.Commands.GetVMReplication"
    assert ErrorCategory(named.error.category) == ErrorCategory.InvalidOperation
    assert str(named.error) == "Replication is not enabled for virtual machine with name 'sel02'."
    assert named.error.target_object is None
    stopped = primary.run("Get-VMReplication", VMName="sel02", ErrorAction="Stop")
    assert stopped.had_errors and stopped.error.fq_error.startswith("OperationFailed,")
    # A wildcard selects VMs too: each one without replication is reported (VMName != null).
    wildcard = primary.run("Get-VMReplication", VMName="sel*")
    assert [props(r)["VMName"] for r in wildcard.output] == ["sel01"]
    assert str(wildcard.error) == "Replication is not enabled for virtual machine with name 'sel02'."
    assert primary.run("Get-VMReplication", ReplicationState="Disabled").error.fq_error.startswith(
        "InvalidState,"
    )
    modes = {
        str(props(r)["ReplicationMode"]) for r in primary.ok("Get-VMReplication", ReplicationMode="Primary")
    }
    assert modes == {"Primary"}
    filtered = primary.run("Get-VMReplication", ReplicaServerName="hv2.*", VMName="sel*")
    assert [props(r)["VMName"] for r in filtered.output] == ["sel01"] and "'sel02'" in str(filtered.error)
    assert primary.ok("Get-VMReplication", ReplicaServerName="other.*") == []
    # On the replica, the leg carries the trust group of the entry that admitted the primary.
    assert "sel01" in {props(r)["VMName"] for r in replica.ok("Get-VMReplication", TrustGroup="lab")}
    assert replica.ok("Get-VMReplication", TrustGroup="other") == []


def test_measure_vm_replication_named_vm_without_replication(primary: HostSession) -> None:
    outcome = primary.run("Measure-VMReplication", VMName="sel02")
    # MeasureVMReplication.cs: the same message as an ObjectNotFound error.
    assert outcome.error.fq_error.startswith("ObjectNotFound,") and not outcome.had_errors


def test_measure_vm_replication_shape(primary: HostSession) -> None:
    primary.ok("Enable-VMReplication", VMName="idle01", **KERBEROS)
    out = primary.ok("Measure-VMReplication", VMName="idle01")
    assert out[0].types[0] == "Microsoft.HyperV.PowerShell.VMReplicationHealth"
    p = props(out[0])
    assert p["InitialReplicationSize"] > 0 and p["SuccessfulReplicationCount"] == 0
    assert str(p["LastReplicationType"]) == "None"
    assert p["ReplicationHealthDetails"] == ["Initial replication is not complete."]


def test_remove_affects_one_host_and_is_not_idempotent(primary: HostSession, replica: HostSession) -> None:
    primary.ok("Enable-VMReplication", VMName="plain01", **KERBEROS)
    primary.ok("Remove-VMReplication", VMName="plain01")
    assert str(props(primary.ok("Get-VM", Name="plain01")[0])["ReplicationMode"]) == "None"
    assert replication_state(replica, "plain01")[0] == "WaitingForInitialReplication"  # the replica leg stays
    again = primary.run("Remove-VMReplication", VMName="plain01")
    # RemoveVMReplication.cs: its invalid-state refusal, not "not enabled".
    assert again.error.fq_error == "InvalidState,Microsoft.HyperV.PowerShell.Commands.RemoveVMReplication"
    assert str(again.error) == (
        "The operation cannot be performed while the virtual machine 'plain01' is in the current replication "
        "state."
    )
    # The replica VM left behind without replication blocks a new relationship until it is removed there.
    replica.ok("Remove-VMReplication", VMName="plain01")
    blocked = primary.run("Enable-VMReplication", VMName="plain01", **KERBEROS)
    assert "already exists on the replica server" in str(blocked.error)
    assert str(props(primary.ok("Get-VM", Name="plain01")[0])["ReplicationMode"]) == "None"
    replica.ok("Remove-VM", "Force", Name="plain01")
    primary.ok("Enable-VMReplication", VMName="plain01", **KERBEROS)
    primary.ok("Remove-VMReplication", VMName="plain01")


def test_remove_takes_the_legs_get_selects_from_the_pipeline(
    primary: HostSession, replica: HostSession
) -> None:
    primary.ok("Enable-VMReplication", VMName="plain01", **KERBEROS)

    def remove_leg(session: HostSession, mode: str) -> PowerShell:
        ps = PowerShell(session.pool)
        ps.add_cmdlet("Get-VMReplication").add_parameter("VMName", "plain01")
        ps.add_parameter("ReplicationMode", mode)
        ps.add_cmdlet("Remove-VMReplication").add_parameter("PassThru")
        ps.invoke()
        return ps

    # The filter selects nothing on the primary's Replica side: nothing is removed there.
    assert remove_leg(primary, "Replica").output == [] and not primary.run("Get-VMReplication").errors
    removed = remove_leg(primary, "Primary")
    assert not removed.had_errors and [o.types[0] for o in removed.output] == [
        "Microsoft.HyperV.PowerShell.VMReplication"
    ]
    assert str(props(primary.ok("Get-VM", Name="plain01")[0])["ReplicationMode"]) == "None"
    assert replication_state(replica, "plain01")[0] == "WaitingForInitialReplication"
    assert not remove_leg(replica, "Replica").had_errors
    assert str(props(replica.ok("Get-VM", Name="plain01")[0])["ReplicationMode"]) == "None"
    replica.ok("Remove-VM", "Force", Name="plain01")


def test_test_replication_connection_parameters(primary: HostSession) -> None:
    ok = primary.ok("Test-VMReplicationConnection", **KERBEROS)
    assert ok == [
        f"Connection to replica server '{REPLICA}' on port 80 using Kerberos authentication was successful."
    ]
    ip = primary.run("Test-VMReplicationConnection", **{**KERBEROS, "ReplicaServerName": "127.63.0.2"})
    assert ip.error.fq_error.startswith("InvalidParameter,") and "(FQDN)" in str(ip.error)
    wrong_port = primary.run("Test-VMReplicationConnection", **{**KERBEROS, "ReplicaServerPort": 8080})
    assert not wrong_port.had_errors and "firewall" in str(wrong_port.error)


def test_enable_options_disks_and_whatif(primary: HostSession) -> None:
    disk = "C:\\ProgramData\\Microsoft\\Windows\\Virtual Hard Disks\\opt01.vhdx"
    unknown = primary.run(
        "Enable-VMReplication", VMName="opt01", ExcludedVhdPath=["C:\\nope.vhdx"], **KERBEROS
    )
    assert (
        str(unknown.error) == "Virtual hard disk 'C:\\nope.vhdx' is not attached to virtual machine 'opt01'."
    )
    # EnableVMReplication.cs compares the paths with string.Equals: ordinal, case-sensitive, trimmed.
    other_case = primary.run(
        "Enable-VMReplication", VMName="opt01", ExcludedVhdPath=[disk.upper()], **KERBEROS
    )
    assert other_case.error.fq_error.startswith("InvalidParameter,") and "not attached" in str(
        other_case.error
    )
    everything = primary.run(
        "Enable-VMReplication", VMName="opt01", ExcludedVhdPath=[f" {disk} "], **KERBEROS
    )
    assert "There is no supported virtual hard disk to replicate" in str(everything.error)
    what_if = primary.run("Enable-VMReplication", "WhatIf", VMName="opt01", **KERBEROS)
    assert (what_if.output, what_if.errors) == ([], [])
    assert str(props(primary.ok("Get-VM", Name="opt01")[0])["ReplicationMode"]) == "None"

    outcome = primary.run(
        "Enable-VMReplication",
        "Passthru",
        VMName="opt01",
        EnableWriteOrderPreservationAcrossDisks=False,
        CompressionEnabled=False,
        ReplicateHostKvpItems=False,
        BypassProxyServer=True,
        AutoResynchronizeEnabled=True,
        AutoResynchronizeIntervalStart="01:00:00",
        AutoResynchronizeIntervalEnd="05:30:00",
        **KERBEROS,
    )
    assert not outcome.errors and len(outcome.warnings) == 1
    p = props(outcome.output[0])
    assert (p["CompressionEnabled"], p["ReplicateHostKvpItems"], p["BypassProxyServer"]) == (
        False,
        False,
        True,
    )
    assert p["EnableWriteOrderPreservationAcrossDisks"] is True  # stored true whatever was passed
    assert (p["AutoResynchronizeEnabled"], p["AutoResynchronizeIntervalStart"]) == (True, "PT1H")
    assert p["AutoResynchronizeIntervalEnd"] == "PT5H30M"


def test_initial_replication_export_and_relationship_type(primary: HostSession) -> None:
    primary.ok("Enable-VMReplication", VMName="exp01", **KERBEROS)
    missing = primary.run("Start-VMInitialReplication", VMName="exp01", DestinationPath="E:\\Nowhere")
    assert missing.error.fq_error.startswith("ObjectNotFound,") and "E:\\Nowhere" in str(missing.error)
    exported = primary.ok(
        "Start-VMInitialReplication", "Passthru", VMName="exp01", DestinationPath="C:\\Windows\\Temp"
    )
    p = props(exported[0])
    assert str(p["ReplicationState"]) == "InitialReplicationInProgress"
    folder = f"C:\\Windows\\Temp\\exp01_{str(p['VMId']).upper()}"
    assert primary.ok("Test-Path", Path=folder) == [True]
    extended = primary.run("Remove-VMReplication", VMName="exp01", ReplicationRelationshipType="Extended")
    assert (
        str(extended.error)
        == "'ReplicationRelationshipType' is applicable only on a replica virtual machine."
    )


def test_vm_objects_from_the_pipeline(primary: HostSession) -> None:
    ps = PowerShell(primary.pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "pipe01")
    ps.add_cmdlet("Enable-VMReplication").add_parameter("Passthru")
    for name, value in KERBEROS.items():
        ps.add_parameter(name, value)
    out = ps.invoke()
    assert not ps.had_errors and [props(o)["VMName"] for o in out] == ["pipe01"]
    ps = PowerShell(primary.pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "pipe01")
    ps.add_cmdlet("Get-VMReplication")
    assert [str(props(o)["ReplicationState"]) for o in ps.invoke()] == ["ReadyForInitialReplication"]
