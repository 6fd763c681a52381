"""An extended ReplicationRelationship against three hvsim hosts in three untrusted domains (certificate
authentication, each host prepared by ReplicaServer): host1 -> host2 -> host3, the second leg declared with
`extended` on the host that holds the replica VM; check enforces Windows' rules; delete removes only the
extended leg. Results are checked with plain pypsrp."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hvreplica_provider.remoting import REGISTRY
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    Lab,
    prop,
    relationship_inputs,
    replica_server_inputs,
    site_certs,
)
from tests.support.hvsim_env import host, lab_config, running_lab

THIRD = "host3.northwind.com"

pytestmark = pytest.mark.usefixtures("fast_polling")  # relationship waits poll often


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    addresses = {PRIMARY: "127.70.0.11", REPLICA: "127.70.0.12", THIRD: "127.70.0.13"}
    config = lab_config(
        host(PRIMARY, addresses[PRIMARY], vms=["far01"]),
        host(REPLICA, addresses[REPLICA]),
        host(THIRD, addresses[THIRD]),
        domains=[{"name": "contoso.com"}, {"name": "fabrikam.com"}, {"name": "northwind.com"}],
        time_scale=600.0,
    )
    with running_lab(config) as emu:
        lab = Lab(emu, addresses)
        cas = {fqdn: site_certs(fqdn).ca_pem for fqdn in addresses}
        # host2 receives from host1 and sends on to host3: it trusts and resolves both.
        partners = {PRIMARY: [REPLICA], REPLICA: [PRIMARY, THIRD], THIRD: [REPLICA]}
        for fqdn, others in partners.items():
            inputs = replica_server_inputs(
                lab,
                fqdn,
                others[0],
                trusted_ca_certs=[cas[fqdn], *(cas[o] for o in others)],
                allowed_primaries=[{"primary_server": o, "storage_location": "D:\\Replica"} for o in others],
                hosts_entries={o: addresses[o] for o in others},
            )
            ReplicaServerProvider().create(inputs)
        yield lab
    REGISTRY.close_all()


def extended_inputs(lab: Lab, **overrides: Any) -> dict[str, Any]:
    raw = {
        "primary": lab.connection(REPLICA),
        "replica": lab.connection(THIRD),
        "vm_name": "far01",
        "replica_server_fqdn": THIRD,
        "certificate_thumbprint": site_certs(REPLICA).thumbprint,
        "extended": True,
        "frequency_sec": 900.0,
        "wait_for_initial_replication": True,
        **overrides,
    }
    return raw


def legs(lab: Lab, fqdn: str) -> dict[str, tuple[str, str]]:
    return {
        str(prop(r, "ReplicationRelationshipType")): (
            str(prop(r, "ReplicationMode")),
            str(prop(r, "ReplicationState")),
        )
        for r in lab.run(fqdn, "Get-VMReplication", VMName="far01")
    }


def test_check_enforces_the_extended_rules(lab: Lab) -> None:
    raw = extended_inputs(lab, frequency_sec=30.0, vss_snapshot_frequency_hour=1.0, recovery_history=2.0)
    raw["excluded_vhd_paths"] = ["D:\\x.vhdx"]
    raw["on_direction_change"] = "planned_failover"
    failures = {f.property for f in ReplicationRelationshipProvider().check({}, raw).failures}
    assert failures == {
        "frequency_sec",
        "vss_snapshot_frequency_hour",
        "excluded_vhd_paths",
        "on_direction_change",
    }


def test_extended_relationship(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    first = provider.create(relationship_inputs(lab, "far01", wait_for_initial_replication=True))
    checked = provider.check({}, extended_inputs(lab))
    assert checked.failures == []
    created = provider.create(checked.inputs)
    outs = created.outs
    assert (outs["mode"], outs["state"], outs["vm_id"]) == ("Replica", "Replicating", first.outs["vm_id"])
    assert (outs["primary_server"], outs["replica_server"]) == (REPLICA, THIRD)
    assert legs(lab, REPLICA) == {
        "Simple": ("Replica", "Replicating"),
        "Extended": ("Replica", "Replicating"),
    }
    assert legs(lab, THIRD) == {"Simple": ("ExtendedReplica", "Replicating")}
    read = provider.read(created.id, outs)
    assert read.id == created.id and provider.diff(created.id, read.outs, checked.inputs).changes is False

    provider.delete(created.id, read.outs)
    assert legs(lab, REPLICA) == {"Simple": ("Replica", "Replicating")}  # the first leg is untouched
    assert "far01" in [str(prop(v, "Name")) for v in lab.run(THIRD, "Get-VM")]  # the copy is kept
    provider.delete(created.id, read.outs)  # already gone: success
    assert provider.read(created.id, read.outs).id == ""
    provider.delete(first.id, first.outs)
