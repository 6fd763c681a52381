"""Failover cmdlets with the real pypsrp client (hyperv-replica.md §2.8, §3.2 #11-#19, §3.3): every
precondition of Start-/Stop-/Complete-VMFailover and Set-VMReplication -Reverse refused the way the in-box
cmdlets refuse it, test failover on an isolated switch, planned and unplanned failover.

Two hosts of one domain replicate with Kerberos and authorize each other (reverse replication needs the old
primary to be a replica server). The clock runs fast so initial replications finish at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psrpcore.types import ErrorCategory
from pypsrp.powershell import PowerShell

from hvsim.hyperv import HyperVHost, VirtualSwitch
from hvsim.server import Emulator
from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import (
    HostSession,
    make_kerberos_replica,
    props,
    replication_state,
    sessions,
    wait_for,
)

PRIMARY, REPLICA = "hv1.contoso.com", "hv2.contoso.com"
VMS = ["prep01", "early01", "test01", "plan01", "auth01", "lost01", "sync01"]
KERBEROS = {"ReplicaServerName": REPLICA, "ReplicaServerPort": 80, "AuthenticationType": "Kerberos"}
NO_CONFIRM = {"Confirm": False}
START = "Microsoft.HyperV.PowerShell.Commands.StartVMFailover"


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Emulator, HostSession, HostSession]]:
    config = lab_config(host(PRIMARY, "127.64.0.1", vms=VMS), host(REPLICA, "127.64.0.2"), time_scale=600.0)
    with running_lab(config) as emulator, sessions(emulator, PRIMARY, REPLICA) as opened:
        make_kerberos_replica(opened[REPLICA], PRIMARY, "D:\\Replica")
        make_kerberos_replica(opened[PRIMARY], REPLICA, "D:\\Replica")
        yield emulator, opened[PRIMARY], opened[REPLICA]


@pytest.fixture()
def hosts(lab: tuple[Emulator, HostSession, HostSession]) -> tuple[HostSession, HostSession]:
    return lab[1], lab[2]


def replicate(primary: HostSession, replica: HostSession, vm: str, **settings: object) -> None:
    primary.ok("Enable-VMReplication", VMName=vm, **KERBEROS, **settings)
    primary.ok("Start-VMInitialReplication", VMName=vm)
    for session in (primary, replica):
        wait_for(lambda s=session: replication_state(s, vm)[0] == "Replicating", f"{vm} replicating")


def vm_props(session: HostSession, vm: str) -> dict:
    return props(session.ok("Get-VM", Name=vm)[0])


def test_prepare_needs_the_primary_off_and_replicating(hosts: tuple[HostSession, HostSession]) -> None:
    primary, replica = hosts
    primary.ok("Enable-VMReplication", VMName="early01", **KERBEROS)
    primary.ok("Stop-VM", VMName="early01")
    not_yet = primary.run("Start-VMFailover", "Prepare", VMName="early01", **NO_CONFIRM)
    assert not_yet.error.fq_error == f"InvalidState,{START}"
    assert "in the current replication state" in str(not_yet.error)

    replicate(primary, replica, "prep01")
    running = primary.run("Start-VMFailover", "Prepare", VMName="prep01", **NO_CONFIRM)
    assert not running.had_errors and running.error.fq_error == f"InvalidState,{START}"
    assert str(running.error) == "The operation cannot be performed while the object is in its current state."
    as_test = primary.run("Start-VMFailover", "AsTest", VMName="prep01", **NO_CONFIRM)
    assert as_test.error.fq_error == f"InvalidParameter,{START}"
    assert ErrorCategory(as_test.error.category) == ErrorCategory.InvalidArgument
    plain = primary.run("Start-VMFailover", VMName="prep01", **NO_CONFIRM)
    assert str(plain.error) == "'Prepare' is not provided."

    primary.ok("Stop-VM", VMName="prep01")
    prompt = primary.run("Start-VMFailover", "Prepare", VMName="prep01")
    assert prompt.had_errors and "HostException" in prompt.error.fq_error  # ConfirmImpact High
    primary.ok("Start-VMFailover", "Prepare", VMName="prep01", **NO_CONFIRM)
    assert replication_state(primary, "prep01") == ("PreparedForFailover", "Normal")
    assert "failed to start" in str(primary.run("Start-VM", Name="prep01").error)
    primary.ok("Stop-VMFailover", VMName="prep01")  # cancels the -Prepare
    assert replication_state(primary, "prep01")[0] == "Replicating"
    nothing = primary.run("Stop-VMFailover", VMName="prep01")
    assert nothing.error.fq_error == "InvalidState,Microsoft.HyperV.PowerShell.Commands.StopVMFailover"


def test_failover_on_the_replica_needs_a_replicated_off_vm(hosts: tuple[HostSession, HostSession]) -> None:
    primary, replica = hosts
    waiting = replica.run("Start-VMFailover", VMName="early01", **NO_CONFIRM)  # never replicated
    assert waiting.error.fq_error == f"InvalidState,{START}"
    prepare = replica.run("Start-VMFailover", "Prepare", VMName="early01", **NO_CONFIRM)
    assert "in the current replication state" in str(prepare.error)  # no extended leg to prepare
    complete = replica.run("Complete-VMFailover", VMName="early01", **NO_CONFIRM)
    assert complete.error.fq_error == "InvalidState,Microsoft.HyperV.PowerShell.Commands.CompleteVMFailover"
    on_primary = primary.run("Complete-VMFailover", VMName="early01", **NO_CONFIRM)
    assert on_primary.error.fq_error.startswith("OperationFailed,")
    assert "is not applicable on primary virtual machine" in str(on_primary.error)
    plain_vm = replica.run("Start-VMFailover", VMName="nosuch01", **NO_CONFIRM)
    assert plain_vm.error.fq_error == f"ObjectNotFound,{START}"


def test_test_failover_on_an_isolated_switch(hosts: tuple[HostSession, HostSession]) -> None:
    primary, replica = hosts
    replicate(primary, replica, "test01", RecoveryHistory=2)
    points = wait_for(lambda: replica.ok("Get-VMSnapshot", VMName="test01"), "a recovery point")
    ps = PowerShell(replica.pool)
    ps.add_cmdlet("Get-VMSnapshot").add_parameter("VMName", "test01").add_parameter(
        "Name", props(points[0])["Name"]
    )
    ps.add_cmdlet("Start-VMFailover").add_parameter("AsTest").add_parameter("Confirm", False)
    out = ps.invoke()
    assert not ps.had_errors and not ps.streams.error, [str(e) for e in ps.streams.error]
    test_vm = props(out[0])
    assert test_vm["Name"] == "test01 - Test" and str(test_vm["ReplicationMode"]) == "TestReplica"
    original = vm_props(replica, "test01")
    assert test_vm["Id"] != original["Id"] and str(test_vm["State"]) == "Off"
    leg = props(replica.ok("Get-VMReplication", VMName="test01")[0])
    assert str(test_vm["Id"]) in str(leg["TestVirtualMachine"])
    again = replica.run("Start-VMFailover", "AsTest", VMName="test01", **NO_CONFIRM)
    assert "a test virtual machine already exists" in str(again.error)
    assert replication_state(primary, "test01")[0] == "Replicating"  # production replication goes on

    missing = replica.run("Connect-VMNetworkAdapter", VMName="test01 - Test", SwitchName="Isolated")
    assert missing.error.fq_error == (
        "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.ConnectVMNetworkAdapter"
    )
    replica.ok("New-VMSwitch", Name="Isolated", SwitchType="Private")
    assert [props(s)["Name"] for s in replica.ok("Get-VMSwitch")] == ["Isolated"]
    ps = PowerShell(replica.pool)
    ps.add_cmdlet("Get-VM").add_parameter("Id", str(test_vm["Id"]))
    ps.add_cmdlet("Get-VMNetworkAdapter")
    ps.add_cmdlet("Connect-VMNetworkAdapter").add_parameter("SwitchName", "Isolated").add_parameter(
        "Passthru"
    )
    adapters = ps.invoke()
    assert not ps.had_errors and [props(a)["SwitchName"] for a in adapters] == ["Isolated"]
    replica.ok("Start-VM", Name="test01 - Test")
    assert props(replica.ok("Get-VMNetworkAdapter", VMName="test01")[0])["SwitchName"] is None

    replica.ok("Stop-VMFailover", VMName="test01")  # stops and removes the test VM
    assert replica.run("Get-VM", Id=str(test_vm["Id"])).error.fq_error.startswith("ObjectNotFound,")
    assert props(replica.ok("Get-VMReplication", VMName="test01")[0])["TestVirtualMachine"] is None
    assert replica.run("Stop-VMFailover", VMName="test01").error.fq_error.startswith("InvalidState,")


def test_planned_failover_and_reverse(hosts: tuple[HostSession, HostSession]) -> None:
    primary, replica = hosts
    replicate(primary, replica, "plan01")
    replicating = replica.run("Set-VMReplication", "Reverse", VMName="plan01")
    assert replicating.error.fq_error == "InvalidState,Microsoft.HyperV.PowerShell.Commands.SetVMReplication"
    on_primary = primary.run("Set-VMReplication", "Reverse", VMName="plan01")
    assert "is not applicable on primary virtual machine" in str(on_primary.error)
    running = replica.run("Start-VM", Name="plan01")
    assert "failed to start" in str(running.error)

    primary.ok("Stop-VM", VMName="plan01")
    primary.ok("Start-VMFailover", "Prepare", VMName="plan01", **NO_CONFIRM)
    replica.ok("Start-VMFailover", VMName="plan01", **NO_CONFIRM)
    assert replication_state(replica, "plan01") == ("FailedOverWaitingCompletion", "Warning")
    assert str(vm_props(replica, "plan01")["State"]) == "Off"  # Start-VMFailover does not start the VM
    out = replica.ok("Set-VMReplication", "Reverse", "Passthru", VMName="plan01", ReplicaServerPort=80)
    p = props(out[0])
    assert (str(p["ReplicationMode"]), str(p["ReplicationState"])) == ("Primary", "Replicating")
    assert (p["PrimaryServerName"], p["ReplicaServerName"]) == (REPLICA, PRIMARY)
    old = props(primary.ok("Get-VMReplication", VMName="plan01")[0])
    assert (str(old["ReplicationMode"]), str(old["ReplicationState"])) == ("Replica", "Replicating")
    replica.ok("Start-VM", Name="plan01")
    before = props(primary.ok("Get-VMReplication", VMName="plan01")[0])["LastReplicationTime"]
    wait_for(
        lambda: props(primary.ok("Get-VMReplication", VMName="plan01")[0])["LastReplicationTime"] != before,
        "a cycle from the new primary",
    )


def test_reverse_needs_an_authorizing_old_primary(hosts: tuple[HostSession, HostSession]) -> None:
    primary, replica = hosts
    replicate(primary, replica, "auth01")
    primary.ok("Stop-VM", VMName="auth01")
    primary.ok("Start-VMFailover", "Prepare", VMName="auth01", **NO_CONFIRM)
    replica.ok("Start-VMFailover", VMName="auth01", **NO_CONFIRM)
    primary.ok("Remove-VMReplicationAuthorizationEntry", AllowedPrimaryServer=REPLICA)
    try:
        refused = replica.run("Set-VMReplication", "Reverse", VMName="auth01", ReplicaServerPort=80)
        assert (
            refused.error.fq_error == "OperationFailed,Microsoft.HyperV.PowerShell.Commands.SetVMReplication"
        )
        assert "authorization" in str(refused.error)
        assert replication_state(replica, "auth01")[0] == "FailedOverWaitingCompletion"  # nothing applied
        assert replication_state(primary, "auth01")[0] == "PreparedForFailover"
    finally:
        primary.ok(
            "New-VMReplicationAuthorizationEntry",
            AllowedPrimaryServer=REPLICA,
            ReplicaStorageLocation="D:\\Replica",
            TrustGroup="lab",
        )
    replica.ok("Set-VMReplication", "Reverse", VMName="auth01", ReplicaServerPort=80)
    assert replication_state(primary, "auth01")[0] == "Replicating"


def test_unplanned_failover_and_complete(hosts: tuple[HostSession, HostSession]) -> None:
    primary, replica = hosts
    replicate(primary, replica, "lost01", RecoveryHistory=3)
    wait_for(lambda: replica.ok("Get-VMSnapshot", VMName="lost01"), "a recovery point")
    replica.ok("Start-VMFailover", VMName="lost01", **NO_CONFIRM)  # the primary still runs: unplanned
    wait_for(lambda: replication_state(primary, "lost01") == ("Error", "Critical"), "the primary's error")
    replica.ok("Start-VM", Name="lost01")
    replica.ok("Complete-VMFailover", VMName="lost01", **NO_CONFIRM)
    assert replication_state(replica, "lost01") == ("FailedOver", "Warning")
    assert replica.ok("Get-VMSnapshot", VMName="lost01") == []  # Complete deletes the recovery points
    assert replica.run("Stop-VMFailover", VMName="lost01").error.fq_error.startswith("InvalidState,")
    # The old primary still holds a primary VM: reversing onto it needs it turned into a replica first.
    refused = replica.run("Set-VMReplication", "Reverse", VMName="lost01", ReplicaServerPort=80)
    assert "already exists" in str(refused.error)
    primary.ok("Remove-VMReplication", VMName="lost01")
    primary.ok("Stop-VM", VMName="lost01")
    primary.ok("Enable-VMReplication", "AsReplica", VMName="lost01", AllowedPrimaryServer=REPLICA)
    out = replica.ok("Set-VMReplication", "Reverse", "Passthru", VMName="lost01", ReplicaServerPort=80)
    assert str(props(out[0])["ReplicationState"]) == "ReadyForInitialReplication"


def test_failover_model_round_trips() -> None:
    """The state directory keeps test VMs, their link to the replica VM, switches and adapter connections."""
    hyperv = HyperVHost(computer_name="HV2")
    hyperv.switches.append(
        VirtualSwitch(name="Isolated", id="0b0e7c9e-6f53-4d7c-9f3c-3d2c1a0e9b11", switch_type="Private")
    )
    test_vm = hyperv.add_vm("web01 - Test")
    test_vm.test_of = "2f1c7c0a-1a7e-4a34-8f7e-0c6a4d9e5b21"
    test_vm.network_adapters[0].switch_name = "Isolated"
    restored = HyperVHost.from_dict(hyperv.to_dict())
    assert restored == hyperv and restored.vms[0].replication_mode == "TestReplica"


def test_resynchronization_required(lab: tuple[Emulator, HostSession, HostSession]) -> None:
    """§3.5: a leg waiting for resynchronization is Critical; a plain resume is refused (VMMS needs the
    resync), Resume-VMReplication -Resynchronize resumes it and deletes the replica's recovery points."""
    emulator, primary, replica = lab
    replicate(primary, replica, "sync01", RecoveryHistory=2)
    before = wait_for(lambda: replica.ok("Get-VMSnapshot", VMName="sync01"), "a recovery point")
    emulator.require_resync(PRIMARY, "sync01")
    assert replication_state(primary, "sync01") == ("WaitingForStartResynchronize", "Critical")
    plain = primary.run("Resume-VMReplication", VMName="sync01")
    assert plain.error.fq_error == "OperationFailed,Microsoft.HyperV.PowerShell.Commands.ResumeVMReplication"
    assert "-Resynchronize" in str(plain.error)
    primary.ok("Resume-VMReplication", "Resynchronize", VMName="sync01")
    assert replication_state(primary, "sync01")[0] == "Replicating"
    after = {props(p)["Id"] for p in replica.ok("Get-VMSnapshot", VMName="sync01")}
    assert not after & {props(p)["Id"] for p in before}
