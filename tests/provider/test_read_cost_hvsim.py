"""ReplicationRelationship reads name their VM (Get-VMReplication -VMName): one pipeline on the shared pool,
with many other VMs replicating on the host. Replication switched off reads as gone; a VM that is gone stays
a distinct error for read, and delete still succeeds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hvreplica_provider.remoting import REGISTRY, NotFound
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

VMS = tuple(f"vm{i:02d}" for i in range(40))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("75.0", vms=(*VMS, "gone01")) as lab:
        prepare_sites(lab)
        yield lab
    REGISTRY.close_all()


def test_a_read_costs_the_same_with_many_replicating_vms(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    created = {vm: provider.create(relationship_inputs(lab, vm, initial_replication="none")) for vm in VMS}
    one = created["vm17"]
    provider.read(one.id, one.outs)  # warm: the pool is open
    before = lab.counters(PRIMARY)
    read = provider.read(one.id, one.outs)
    after = lab.counters(PRIMARY)
    assert read.id == one.id and read.outs["vm_name"] == "vm17"
    assert after["pipelines"] - before["pipelines"] == 1
    assert after["pools_opened"] == before["pools_opened"]
    for result in created.values():
        provider.delete(result.id, result.outs)


def test_a_vm_gone_is_an_error_for_read_and_nothing_to_do_for_delete(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    created = provider.create(relationship_inputs(lab, "gone01", initial_replication="none"))
    lab.run(PRIMARY, "Remove-VMReplication", VMName="gone01")
    assert provider.read(created.id, created.outs).id == ""  # replication off: gone
    lab.emu.remove_vm(PRIMARY, "gone01")  # an administrator deleted the VM
    with pytest.raises(NotFound) as missing:
        provider.read(created.id, created.outs)
    assert "gone01" in str(missing.value) and "remove this ReplicationRelationship" in str(missing.value)
    provider.delete(created.id, created.outs)  # the replica leg goes, the missing primary VM is no error
    assert "gone01" not in [str(prop(r, "VMName")) for r in lab.run(REPLICA, "Get-VMReplication")]
