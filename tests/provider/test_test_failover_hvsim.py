"""TestFailover against two hvsim hosts in untrusted domains (certificate replication set up by the
provider's own ReplicaServer and ReplicationRelationship): the drill's life cycle, its refusals, and a
create interrupted at every request. Results are checked with plain pypsrp."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from hvreplica_provider import remoting
from hvreplica_provider.remoting import REGISTRY, InvalidState, NotFound, RemoteError, RetryPolicy, Transient
from hvreplica_provider.resources import replication_relationship as rr
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from hvreplica_provider.resources.test_failover import TestFailoverProvider
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    Lab,
    prepare_sites,
    prop,
    relationship_inputs,
    two_site_lab,
)

VMS = ("drill01", "early01", "drop01")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("66.0", vms=VMS, time_scale=600.0) as lab:
        prepare_sites(lab)
        lab.run(REPLICA, "New-VMSwitch", Name="Isolated", SwitchType="Private")
        lab.run(REPLICA, "New-VM", Name="local01")
        yield lab
    REGISTRY.close_all()


@pytest.fixture(scope="module")
def replicated(lab: Lab) -> dict[str, dict[str, Any]]:
    """drill01 and drop01 replicating with recovery points; early01 enabled without an initial copy."""
    provider = ReplicationRelationshipProvider()
    outs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rr, "POLL_INTERVAL_SEC", 0.2)
        for vm in ("drill01", "drop01"):
            inputs = relationship_inputs(lab, vm, recovery_history=2.0, wait_for_initial_replication=True)
            outs[vm] = provider.create(inputs).outs
    outs["early01"] = provider.create(relationship_inputs(lab, "early01", initial_replication="none")).outs
    return outs


def drill(lab: Lab, vm: str, **overrides: Any) -> dict[str, Any]:
    result = TestFailoverProvider().check(
        {}, {"replica": lab.connection(REPLICA), "vm_name": vm, **overrides}
    )
    assert [f.reason for f in result.failures] == []
    return result.inputs


def vm_names(lab: Lab) -> list[str]:
    return [str(prop(v, "Name")) for v in lab.run(REPLICA, "Get-VM")]


def test_check_refuses_bad_inputs(lab: Lab) -> None:
    failures = (
        TestFailoverProvider()
        .check(
            {},
            {
                "replica": lab.connection(REPLICA),
                "vm_name": "web*",
                "recovery_point": "drill01 - Standard Replica - (*",
                "switch_name": "Iso\nlated",
                "start_vm": "yes",
            },
        )
        .failures
    )
    assert sorted(f.property for f in failures) == ["recovery_point", "start_vm", "switch_name", "vm_name"]
    assert "wildcards" in next(f.reason for f in failures if f.property == "recovery_point")
    assert TestFailoverProvider().check({}, {"vm_name": "drill01"}).failures[0].property == "replica"


def test_drill_life_cycle(lab: Lab, replicated: dict[str, dict[str, Any]]) -> None:
    provider = TestFailoverProvider()
    points = lab.run(REPLICA, "Get-VMSnapshot", VMName="drill01")
    inputs = drill(lab, "drill01", recovery_point=str(prop(points[0], "Name")), switch_name="Isolated")
    created = provider.create(inputs)
    outs = created.outs
    assert outs["test_vm_name"] == "drill01 - Test" and outs["state"] == "Running"
    assert outs["vm_id"] == replicated["drill01"]["vm_id"] != outs["test_vm_id"]
    test_vm = lab.run(REPLICA, "Get-VM", Id=outs["test_vm_id"])[0]
    assert str(prop(test_vm, "ReplicationMode")) == "TestReplica"
    adapters = lab.run(REPLICA, "Get-VMNetworkAdapter", VMName="drill01 - Test")
    assert [str(prop(a, "SwitchName")) for a in adapters] == ["Isolated"]
    primary_leg = lab.run(PRIMARY, "Get-VMReplication", VMName="drill01")[0]
    assert str(prop(primary_leg, "ReplicationState")) == "Replicating"  # production replication goes on

    read = provider.read(created.id, outs)
    assert read.id == created.id and read.outs == outs
    assert provider.diff(created.id, read.outs, inputs).changes is False
    assert provider.diff(created.id, outs, {**inputs, "recovery_point": None}).replaces == ["recovery_point"]
    stop = provider.diff(created.id, outs, {**inputs, "start_vm": False})
    assert stop.changes and stop.replaces == []
    outs = provider.update(created.id, outs, {**inputs, "start_vm": False}).outs
    assert outs["state"] == "Off"

    provider.delete(created.id, outs)
    assert "drill01 - Test" not in vm_names(lab)
    replica_leg = lab.run(REPLICA, "Get-VMReplication", VMName="drill01")[0]
    assert str(prop(replica_leg, "ReplicationState")) == "Replicating"  # the replica VM is untouched
    provider.delete(created.id, outs)  # already gone: success
    assert provider.read(created.id, outs).id == ""

    again = provider.create(drill(lab, "drill01"))  # latest point, no switch
    lab.run(REPLICA, "Stop-VMFailover", VMName="drill01")  # the drill ended outside Pulumi
    assert provider.read(again.id, again.outs).id == ""
    provider.delete(again.id, again.outs)


def test_refusals_change_nothing(lab: Lab, replicated: dict[str, dict[str, Any]]) -> None:
    provider = TestFailoverProvider()
    before = vm_names(lab)
    with pytest.raises(InvalidState, match="replicated at least once"):
        provider.create(drill(lab, "early01"))  # never replicated
    with pytest.raises(NotFound) as missing_switch:
        provider.create(drill(lab, "drill01", switch_name="Nowhere"))
    assert missing_switch.value.cmdlet == "Get-VMSwitch"
    with pytest.raises(NotFound):
        provider.create(drill(lab, "drill01", recovery_point="no such point"))
    with pytest.raises(RemoteError, match="ghost01"):
        provider.create(drill(lab, "ghost01"))
    with pytest.raises(NotFound, match="no replica VM named"):
        provider.create(drill(lab, "local01"))  # a VM of the replica host's own, not a replica
    assert vm_names(lab) == before


def test_create_interrupted_at_each_request(
    lab: Lab, replicated: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retries: the connection is dropped at request 1, 2, ... of a create. Each failure either leaves no
    test VM or a re-run says exactly what to run; after that a create succeeds and delete cleans up."""
    monkeypatch.setattr(remoting, "DEFAULT_RETRY", RetryPolicy(deadline_sec=0.0))
    provider = TestFailoverProvider()
    inputs = drill(lab, "drop01", switch_name="Isolated")
    provider.read("warm", {**inputs, "test_vm_id": "00000000-0000-0000-0000-000000000000"})
    for n in itertools.count(1):
        requests_before = lab.counters(REPLICA)["http_requests"]
        lab.emu.inject_fault(REPLICA, "drop-nth", n)
        try:
            created = provider.create(inputs)
        except Transient:
            lab.emu.clear_faults(REPLICA)
            try:
                created = provider.create(inputs)
            except RemoteError as refused:  # the interrupted create left its test VM behind
                assert "| Stop-VMFailover` and run again" in str(refused)
                lab.run(REPLICA, "Stop-VMFailover", VMName="drop01")
                created = provider.create(inputs)
        except RemoteError as rolled_back:
            assert "stopped again" in str(rolled_back)
            created = provider.create(inputs)
        finally:
            lab.emu.clear_faults(REPLICA)
        complete = lab.counters(REPLICA)["http_requests"] - requests_before < n
        assert vm_names(lab).count("drop01 - Test") == 1
        provider.delete(created.id, created.outs)
        assert "drop01 - Test" not in vm_names(lab)
        if complete:
            break
