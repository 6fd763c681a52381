"""Planned failover by swapping primary and replica of a ReplicationRelationship, against two hvsim hosts in
untrusted domains (certificate authentication both ways, both hosts prepared by ReplicaServer): refused by
default, an update (never a replace) with on_direction_change 'planned_failover', flipped and flipped back
without a new initial replication, and a failure half-way that says where it stopped and is completed by a
re-run. Results are checked with plain pypsrp."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hvreplica_provider.remoting import REGISTRY, RemoteError
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    Lab,
    prepare_sites,
    prop,
    relationship_inputs,
    site_certs,
    two_site_lab,
)

VMS = ("flip01", "half01")

pytestmark = pytest.mark.usefixtures("fast_polling")  # relationship waits poll often


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("68.0", vms=VMS, time_scale=600.0) as lab:
        prepare_sites(lab)
        yield lab
    REGISTRY.close_all()


def swapped(lab: Lab, vm: str, **overrides: Any) -> dict[str, Any]:
    """The relationship's inputs in the other direction (REPLICA -> PRIMARY)."""
    raw = {
        "primary": lab.connection(REPLICA),
        "replica": lab.connection(PRIMARY),
        "vm_name": vm,
        "replica_server_fqdn": PRIMARY,
        "certificate_thumbprint": site_certs(REPLICA).thumbprint,
        "wait_for_initial_replication": True,
        **overrides,
    }
    return raw


def leg(lab: Lab, fqdn: str, vm: str) -> tuple[str, str]:
    found = lab.run(fqdn, "Get-VMReplication", VMName=vm)[0]
    return str(prop(found, "ReplicationMode")), str(prop(found, "ReplicationState"))


def power(lab: Lab, fqdn: str, vm: str) -> str:
    return str(prop(lab.run(fqdn, "Get-VM", Name=vm)[0], "State"))


def test_flip_and_flip_back(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship_inputs(lab, "flip01", wait_for_initial_replication=True, recovery_history=1.0)
    created = provider.create(inputs)
    vm_id = created.outs["vm_id"]

    refused = provider.check(inputs, swapped(lab, "flip01", recovery_history=1.0))
    assert [f.property for f in refused.failures] == ["on_direction_change"]
    assert "planned_failover" in refused.failures[0].reason and "full initial" in refused.failures[0].reason

    news = provider.check(
        inputs, swapped(lab, "flip01", recovery_history=1.0, on_direction_change="planned_failover")
    )
    assert news.failures == []
    diff = provider.diff(created.id, created.outs, news.inputs)
    assert diff.changes and diff.replaces == []
    requests_before = lab.counters(PRIMARY)["pipelines"]
    outs = provider.update(created.id, created.outs, news.inputs).outs
    assert (outs["mode"], outs["state"], outs["vm_id"]) == ("Primary", "Replicating", vm_id)
    assert outs["primary_server"] == REPLICA and outs["replica_server"] == PRIMARY
    assert leg(lab, REPLICA, "flip01") == ("Primary", "Replicating")
    assert leg(lab, PRIMARY, "flip01") == ("Replica", "Replicating")  # no new initial replication
    assert (power(lab, REPLICA, "flip01"), power(lab, PRIMARY, "flip01")) == ("Running", "Off")
    assert lab.counters(PRIMARY)["pipelines"] > requests_before
    assert provider.diff(created.id, provider.read(created.id, outs).outs, news.inputs).changes is False

    back = provider.check(news.inputs, {**inputs, "on_direction_change": "planned_failover"})
    assert back.failures == []
    outs = provider.update(created.id, outs, back.inputs).outs
    assert leg(lab, PRIMARY, "flip01") == ("Primary", "Replicating")
    assert leg(lab, REPLICA, "flip01") == ("Replica", "Replicating")
    assert power(lab, PRIMARY, "flip01") == "Running"
    provider.delete(created.id, outs)


def test_failure_half_way_says_where_and_a_rerun_completes(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship_inputs(lab, "half01", wait_for_initial_replication=True)
    created = provider.create(inputs)
    news = provider.check(inputs, swapped(lab, "half01", on_direction_change="planned_failover")).inputs
    # The old primary no longer authorizes the new one: the reverse step is refused after the failover.
    lab.run(PRIMARY, "Remove-VMReplicationAuthorizationEntry", AllowedPrimaryServer=REPLICA)
    try:
        with pytest.raises(RemoteError) as caught:
            provider.update(created.id, created.outs, news)
        message = str(caught.value)
        assert "stopped at: Set-VMReplication -Reverse on" in message
        assert "Stop-VM | Start-VMFailover; Start-VMFailover" in message  # the steps done before
        assert "Run `pulumi up` again to continue" in message and "Stop-VMFailover` on" in message
        assert leg(lab, PRIMARY, "half01") == ("Primary", "PreparedForFailover")
        assert leg(lab, REPLICA, "half01") == ("Replica", "FailedOverWaitingCompletion")
    finally:
        lab.run(
            PRIMARY,
            "New-VMReplicationAuthorizationEntry",
            AllowedPrimaryServer=REPLICA,
            ReplicaStorageLocation="D:\\Replica",
            TrustGroup="DEFAULT",
        )
    outs = provider.update(created.id, created.outs, news).outs  # the re-run continues at the reverse
    assert outs["mode"] == "Primary" and leg(lab, PRIMARY, "half01") == ("Replica", "Replicating")
    assert power(lab, REPLICA, "half01") == "Running"
    provider.delete(created.id, outs)
