"""20 relationships driven from 4 threads at once, as the dynamic-provider server does (one process, four
worker threads, one provider instance): no errors, one pool per host, one pipeline per create and read."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from hvreplica_provider.remoting import REGISTRY
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    Lab,
    prepare_sites,
    prop,
    relationship_inputs,
    two_site_lab,
)

VMS = tuple(f"vm{i:02d}" for i in range(20))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    REGISTRY.close_all()  # this module counts pools: start from none
    with two_site_lab("64.0", vms=VMS, time_scale=300.0) as lab:
        prepare_sites(lab)
        yield lab
    REGISTRY.close_all()


def test_twenty_relationships_from_four_threads(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()  # one instance serves every thread, as in the server
    inputs = [relationship_inputs(lab, vm) for vm in VMS]
    before = lab.counters(PRIMARY)
    with ThreadPoolExecutor(max_workers=4) as pool:
        created = list(pool.map(provider.create, inputs))
        after_create = lab.counters(PRIMARY)
        reads = list(pool.map(lambda c: provider.read(c.id, c.outs), created))
        after_read = lab.counters(PRIMARY)
        assert {r.id for r in reads} == {c.id for c in created}
        list(pool.map(lambda c: provider.delete(c.id, c.outs), created))

    assert len({c.id for c in created}) == 20 and all(c.outs["mode"] == "Primary" for c in created)
    assert after_create["pools_opened"] - before["pools_opened"] <= 1  # the sites' pool is reused
    assert after_create["pipelines"] - before["pipelines"] == 40  # per create: resolve the name, then enable
    assert after_read["pipelines"] - after_create["pipelines"] == 20
    assert after_read["pools_opened"] == after_create["pools_opened"]
    assert lab.run(PRIMARY, "Get-VMReplication") == []
    assert lab.run(REPLICA, "Get-VMReplication") == []
    assert sorted(str(prop(v, "Name")) for v in lab.run(REPLICA, "Get-VM")) == list(VMS)  # replica VMs kept
