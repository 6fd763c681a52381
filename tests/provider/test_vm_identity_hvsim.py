"""VMs are addressed by id after create (issue 8, item 1). Hyper-V allows several VMs of one name on a host,
and a replica VM keeps its primary's VMId: these tests put same-named VMs where the name-based provider
destroyed or broke someone else's replication, and check through plain pypsrp that only the relationship's own
VM is touched. Real pypsrp over HTTPS to hvsim hosts in untrusted domains, TLS verified."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from hvreplica_provider.remoting import REGISTRY, InvalidState
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.provider.support import PRIMARY, REPLICA, Lab, prop, relationship_inputs, site_certs
from tests.support.hvsim_env import host, lab_config, running_lab

BRANCH1, BRANCH2, DR = "branch1.contoso.com", "branch2.northwind.com", "dr.fabrikam.com"


@contextlib.contextmanager
def lab_of(prefix: str, hosts: dict[str, list[str]]) -> Iterator[Lab]:
    """Hosts (FQDN -> VM names) on 127.<prefix>.11, .12, ...; each domain trusts no other."""
    addresses = {fqdn: f"127.{prefix}.{11 + i}" for i, fqdn in enumerate(hosts)}
    domains = sorted({fqdn.split(".", 1)[1] for fqdn in hosts})
    config = lab_config(
        *(host(fqdn, addresses[fqdn], vms=vms) for fqdn, vms in hosts.items()),
        domains=[{"name": d} for d in domains],
        time_scale=600.0,
    )
    with running_lab(config) as emu:
        yield Lab(emu, addresses)
    REGISTRY.close_all()


def prepare(lab: Lab, fqdn: str, partners: list[str]) -> None:
    """A ReplicaServer on `fqdn` that trusts and admits `partners` (and resolves their names)."""
    own = site_certs(fqdn)
    inputs = {
        "connection": lab.connection(fqdn),
        "fqdn": fqdn,
        "certificate": own.certificate,
        "trusted_ca_certs": [own.ca_pem, *(site_certs(p).ca_pem for p in partners)],
        "partner_trusted_ca_certs": [own.ca_pem],
        "disable_revocation_check": True,
        "allowed_primaries": [{"primary_server": p, "storage_location": "D:\\Replica"} for p in partners],
        "hosts_entries": {p: lab.addresses[p] for p in partners},
    }
    checked = ReplicaServerProvider().check({}, inputs)
    assert [f.reason for f in checked.failures] == []
    ReplicaServerProvider().create(checked.inputs)


def relationship(lab: Lab, primary: str, replica: str, vm: str, **overrides: Any) -> dict[str, Any]:
    return relationship_inputs(lab, vm, source=primary, target=replica, **overrides)


def vms(lab: Lab, fqdn: str) -> dict[str, tuple[str, str]]:
    """VM id -> (name, replication mode) on a host, read with plain pypsrp."""
    return {
        str(prop(v, "Id")).lower(): (str(prop(v, "Name")), str(prop(v, "ReplicationMode")))
        for v in lab.run(fqdn, "Get-VM")
    }


def state_of(lab: Lab, fqdn: str, vm_id: str) -> str:
    legs = [r for r in lab.run(fqdn, "Get-VMReplication") if str(prop(r, "VMId")).lower() == vm_id]
    return str(prop(legs[0], "ReplicationState")) if legs else "Disabled"


def test_two_branches_replicating_their_own_dc01_to_one_dr_host() -> None:
    with lab_of("66.0", {BRANCH1: ["dc01"], BRANCH2: ["dc01"], DR: []}) as lab:
        prepare(lab, DR, [BRANCH1, BRANCH2])
        prepare(lab, BRANCH1, [DR])
        prepare(lab, BRANCH2, [DR])
        provider = ReplicationRelationshipProvider()
        one = provider.create(relationship(lab, BRANCH1, DR, "dc01", delete_replica_vm_on_destroy=True))
        two = provider.create(relationship(lab, BRANCH2, DR, "dc01", delete_replica_vm_on_destroy=True))
        id1, id2 = one.outs["vm_id"], two.outs["vm_id"]
        assert id1 != id2 and vms(lab, DR) == {id1: ("dc01", "Replica"), id2: ("dc01", "Replica")}

        provider.delete(one.id, one.outs)  # removes branch 1's replication and its replica VM only

        assert vms(lab, DR) == {id2: ("dc01", "Replica")}
        assert state_of(lab, BRANCH2, id2) != "Disabled" and state_of(lab, DR, id2) != "Disabled"
        assert provider.read(two.id, two.outs).id == two.id
        provider.delete(two.id, two.outs)
        assert vms(lab, DR) == {}
        assert vms(lab, BRANCH1) == {id1: ("dc01", "None")} and vms(lab, BRANCH2) == {id2: ("dc01", "None")}


def test_a_replica_host_with_its_own_unrelated_vm_of_that_name() -> None:
    with lab_of("66.1", {PRIMARY: ["dc01"], REPLICA: ["dc01"]}) as lab:
        prepare(lab, REPLICA, [PRIMARY])
        prepare(lab, PRIMARY, [REPLICA])
        (local_id,) = vms(lab, REPLICA)
        provider = ReplicationRelationshipProvider()
        inputs = relationship(lab, PRIMARY, REPLICA, "dc01", delete_replica_vm_on_destroy=True)
        created = provider.create(inputs)
        vm_id = created.outs["vm_id"]
        assert vm_id != local_id and provider.read(created.id, created.outs).id == created.id

        provider.delete(created.id, created.outs)  # the local dc01 runs: a delete by name failed here

        assert vms(lab, REPLICA) == {local_id: ("dc01", "None")}
        lab.run(REPLICA, "Stop-VM", Name="dc01", Force=True)  # off: a delete by name removed it
        provider.delete(created.id, created.outs)  # idempotent
        assert vms(lab, REPLICA) == {local_id: ("dc01", "None")}


def test_the_same_vm_name_on_both_hosts_of_a_bidirectional_pair() -> None:
    with lab_of("66.2", {PRIMARY: ["dc01"], REPLICA: ["dc01"]}) as lab:
        prepare(lab, REPLICA, [PRIMARY])
        prepare(lab, PRIMARY, [REPLICA])
        provider = ReplicationRelationshipProvider()
        forward = provider.create(relationship(lab, PRIMARY, REPLICA, "dc01"))
        # host2 now holds its own dc01 and host1's replica dc01: the reverse create picks its own
        back = relationship(lab, REPLICA, PRIMARY, "dc01", delete_replica_vm_on_destroy=True)
        reverse = provider.create(back)
        f_id, r_id = forward.outs["vm_id"], reverse.outs["vm_id"]
        assert vms(lab, PRIMARY) == {f_id: ("dc01", "Primary"), r_id: ("dc01", "Replica")}
        assert vms(lab, REPLICA) == {r_id: ("dc01", "Primary"), f_id: ("dc01", "Replica")}
        read = provider.read(forward.id, forward.outs)
        assert provider.diff(forward.id, read.outs, forward.outs).changes is False

        provider.delete(reverse.id, reverse.outs)

        assert vms(lab, PRIMARY) == {f_id: ("dc01", "Primary")}
        assert vms(lab, REPLICA) == {r_id: ("dc01", "None"), f_id: ("dc01", "Replica")}
        assert state_of(lab, REPLICA, f_id) != "Disabled"
        provider.delete(forward.id, forward.outs)
        assert vms(lab, REPLICA) == {r_id: ("dc01", "None"), f_id: ("dc01", "None")}  # replica VM kept


def test_an_ambiguous_name_on_the_primary_is_refused_before_anything_changes() -> None:
    with lab_of("66.3", {PRIMARY: ["dc01"], REPLICA: []}) as lab:
        prepare(lab, REPLICA, [PRIMARY])
        prepare(lab, PRIMARY, [REPLICA])
        lab.run(PRIMARY, "New-VM", Name="dc01")
        with pytest.raises(InvalidState) as caught:
            ReplicationRelationshipProvider().create(relationship(lab, PRIMARY, REPLICA, "dc01"))
        message = str(caught.value)
        assert "2 VMs are named 'dc01'" in message and "Rename-VM" in message
        assert all(mode == "None" for _, mode in vms(lab, PRIMARY).values()) and vms(lab, REPLICA) == {}
