"""ReplicationRelationship through the real dynamic-provider server, driven like the engine, against two
hvsim hosts in untrusted domains prepared by ReplicaServer (also through the server). Every step is checked
on the hosts with plain pypsrp.

create (waiting for the initial replication) -> unchanged up -> in-place update -> drift made on the host
found by refresh and fixed by the next up -> replace (another VM, delete-before-replace) -> delete ->
delete again -> refresh reports it gone. Then 20 relationships created concurrently through the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hvreplica_provider import ReplicationRelationshipProvider
from tests.support.engine import RELATIONSHIP_TYPE, ProviderServer, ServerFactory
from tests.support.pwsh import prop
from tests.support.topology_lab import (
    HOST1,
    HOST2,
    RunningLab,
    SiteMaterial,
    prepare_pair,
    running_dev_lab,
    wait_replicating,
)

MANY = [f"bulk-{i:02d}" for i in range(1, 21)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    extra = {HOST1: ["web 01 $x;'y'", *MANY]}
    with running_dev_lab(
        tmp_path_factory.mktemp("lab"), ["127.83.0.11", "127.83.0.12"], extra_vms=extra
    ) as lab:
        yield lab


@pytest.fixture(scope="module")
def server(module_provider_servers: ServerFactory) -> ProviderServer:
    return module_provider_servers()


@pytest.fixture(scope="module")
def material(lab: RunningLab, server: ProviderServer) -> dict[str, SiteMaterial]:
    return prepare_pair(server, lab, HOST1, HOST2)


def relationship(lab: RunningLab, material: dict[str, SiteMaterial], vm: str, **extra: Any) -> dict[str, Any]:
    return {
        "primary": lab.connection(HOST1),
        "replica": lab.connection(HOST2),
        "vm_name": vm,
        "replica_server_fqdn": HOST2,
        "certificate_thumbprint": material[HOST1].cert["thumbprint"],
        **extra,
    }


def legs(lab: RunningLab, fqdn: str) -> dict[str, Any]:
    with lab.shell(fqdn) as sh:
        return {str(prop(r, "VMName")): r for r in sh.run("Get-VMReplication")}


def test_lifecycle(lab: RunningLab, server: ProviderServer, material: dict[str, SiteMaterial]) -> None:
    provider = ReplicationRelationshipProvider()
    urn = server.urn(RELATIONSHIP_TYPE, "repl-web01")
    inputs = relationship(
        lab,
        material,
        "web01",
        frequency_sec=30,
        recovery_history=2,
        wait_for_initial_replication=True,
        initial_replication_timeout_sec=120,
    )

    # create: enabled and initially replicated before Create returns
    created = server.up(urn, provider, inputs)
    assert created.op == "create"
    outputs = created.state.outputs
    assert (outputs["state"], outputs["mode"]) == ("Replicating", "Primary")
    assert outputs["replica_server"].lower() == HOST2
    primary = legs(lab, HOST1)["web01"]
    assert str(prop(primary, "ReplicationState")) == "Replicating"
    assert (prop(primary, "ReplicationFrequencySec"), prop(primary, "RecoveryHistory")) == (30, 2)
    assert str(prop(legs(lab, HOST2)["web01"], "ReplicationMode")) == "Replica"

    # unchanged up: no change
    same = server.up(urn, provider, inputs, created.state)
    assert same.op == "same"

    # in-place update of what Set-VMReplication changes
    changed = {**inputs, "frequency_sec": 300, "recovery_history": 4}
    updated = server.up(urn, provider, changed, same.state)
    assert updated.op == "update" and updated.diff.replaces == ()
    primary = legs(lab, HOST1)["web01"]
    assert (prop(primary, "ReplicationFrequencySec"), prop(primary, "RecoveryHistory")) == (300, 4)
    assert updated.state.outputs["frequency_sec"] == 300

    # drift on the host: refresh shows it under the input names, the next up puts it back
    with lab.shell(HOST1) as sh:
        sh.run("Set-VMReplication", VMName="web01", ReplicationFrequencySec=900, CompressionEnabled=False)
    refreshed = server.refresh(updated.state)
    assert refreshed is not None
    assert (refreshed.inputs["frequency_sec"], refreshed.inputs["compression"]) == (900, False)
    fixed = server.up(urn, provider, changed, refreshed)
    assert fixed.op == "update"
    primary = legs(lab, HOST1)["web01"]
    assert (prop(primary, "ReplicationFrequencySec"), prop(primary, "CompressionEnabled")) == (300, True)

    # replace: another VM (a name with spaces, quotes, `$` and `;` is data, never script)
    odd = "web 01 $x;'y'"
    replaced = server.up(
        urn, provider, {**changed, "vm_name": odd, "wait_for_initial_replication": False}, fixed.state
    )
    assert replaced.op == "replace" and "vm_name" in replaced.diff.replaces
    assert replaced.diff.delete_before_replace and replaced.original is None  # deleted before the create
    assert "web01" not in legs(lab, HOST1) and "web01" not in legs(lab, HOST2)
    wait_replicating(lab, HOST1, [odd])
    with lab.shell(
        HOST2
    ) as sh:  # the old replica VM is kept (delete_replica_vm_on_destroy defaults to false)
        assert "web01" in [str(prop(v, "Name")) for v in sh.run("Get-VM")]

    # delete on both sides, delete again, and refresh then reports it gone
    server.destroy(replaced.state)
    assert odd not in legs(lab, HOST1) and odd not in legs(lab, HOST2)
    server.destroy(replaced.state)
    assert server.refresh(replaced.state) is None


def test_twenty_relationships_created_concurrently(
    lab: RunningLab, server: ProviderServer, material: dict[str, SiteMaterial]
) -> None:
    provider = ReplicationRelationshipProvider()
    pools_before = lab.emu.counters(HOST1)["pools_opened"]

    def create(vm: str) -> Any:
        return server.up(
            server.urn(RELATIONSHIP_TYPE, f"repl-{vm}"), provider, relationship(lab, material, vm)
        )

    with ThreadPoolExecutor(max_workers=len(MANY)) as pool:
        steps = list(pool.map(create, MANY))

    assert [s.op for s in steps] == ["create"] * len(MANY)
    assert len({s.state.id for s in steps}) == len(MANY)
    wait_replicating(lab, HOST1, MANY)
    replica_side = legs(lab, HOST2)
    assert all(str(prop(replica_side[vm], "ReplicationMode")) == "Replica" for vm in MANY)
    # One runspace pool per host per provider process, however many calls ran at once.
    assert lab.emu.counters(HOST1)["pools_opened"] - pools_before <= 1
    with ThreadPoolExecutor(max_workers=len(MANY)) as pool:
        list(pool.map(lambda step: server.destroy(step.state), steps))
    assert not set(MANY) & set(legs(lab, HOST1))
