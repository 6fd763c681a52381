"""InitialReplicationWait against two hvsim hosts in untrusted domains: one wait for many VMs of a primary
host costs one query per poll whatever their number, reports their states, and stops with a clear error
on a copy that cannot complete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.runtime.rpc import UNKNOWN

from hvreplica_provider.remoting import REGISTRY, InvalidState
from hvreplica_provider.resources import replication_relationship as rr
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from hvreplica_provider.resources.replication_wait import InitialReplicationWaitProvider
from tests.provider.support import PRIMARY, Lab, prepare_sites, relationship_inputs, two_site_lab

VMS = (*(f"w{i:02d}" for i in range(8)), "never01")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # 8 GiB per VM at 100 MiB/s, compressed: about 41 s of emulated time, 0.7 s at this time scale.
    with two_site_lab("69.0", vms=VMS, time_scale=60.0) as lab:
        prepare_sites(lab)
        yield lab
    REGISTRY.close_all()


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rr, "POLL_INTERVAL_SEC", 0.1)


def wait_inputs(lab: Lab, vm_ids: list[str], **overrides: Any) -> dict[str, Any]:
    raw = {"connection": lab.connection(PRIMARY), "vm_ids": vm_ids, **overrides}
    result = InitialReplicationWaitProvider().check({}, raw)
    assert [f.reason for f in result.failures] == []
    return result.inputs


def test_one_query_per_poll_for_all_vms(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    relationships = ReplicationRelationshipProvider()
    created = [relationships.create(relationship_inputs(lab, vm)) for vm in VMS[:8]]
    assert all(c.outs["state"] == "InitialReplicationInProgress" for c in created)  # returned at once
    vm_ids = [c.outs["vm_id"] for c in created]
    provider = InitialReplicationWaitProvider()
    before = lab.counters(PRIMARY)["pipelines"]
    waited = provider.create(wait_inputs(lab, vm_ids))
    pipelines = lab.counters(PRIMARY)["pipelines"] - before
    polls = capsys.readouterr().out.count("InitialReplicationWait")
    assert waited.outs["states"] == dict.fromkeys(vm_ids, "Replicating")
    assert pipelines == polls >= 2  # one Get-VMReplication per poll for all eight VMs
    assert provider.diff(waited.id, waited.outs, wait_inputs(lab, vm_ids)).changes is False
    more = provider.diff(waited.id, waited.outs, wait_inputs(lab, vm_ids[:4]))
    assert more.changes and more.replaces == []
    # At preview, ids of relationships being updated are unknown: the same VMs, no change shown.
    assert (
        provider.diff(waited.id, waited.outs, {**wait_inputs(lab, vm_ids), "vm_ids": UNKNOWN}).changes
        is False
    )
    for c in created:
        relationships.delete(c.id, c.outs)


def test_a_copy_that_cannot_complete_stops_the_wait(lab: Lab) -> None:
    relationships = ReplicationRelationshipProvider()
    never = relationships.create(relationship_inputs(lab, "never01", initial_replication="none"))
    with pytest.raises(InvalidState, match="'never01' is still ReadyForInitialReplication after 1s"):
        InitialReplicationWaitProvider().create(wait_inputs(lab, [never.outs["vm_id"]], timeout_sec=1.0))
    lab.emu.require_resync(PRIMARY, "never01")
    with pytest.raises(InvalidState, match="stopped in state WaitingForStartResynchronize"):
        InitialReplicationWaitProvider().create(wait_inputs(lab, [never.outs["vm_id"]]))
    relationships.delete(never.id, never.outs)


def test_check_refuses_what_is_not_a_vm_id(lab: Lab) -> None:
    failures = (
        InitialReplicationWaitProvider()
        .check({}, {"connection": lab.connection(PRIMARY), "vm_ids": ["web01"], "timeout_sec": 0})
        .failures
    )
    assert sorted(f.property for f in failures) == ["timeout_sec", "vm_ids"]
