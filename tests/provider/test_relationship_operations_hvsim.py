"""ReplicationRelationship operations against two hvsim hosts in untrusted domains: suspend/resume as an
input, a resynchronization the host requires, and the health outputs from Measure-VMReplication, which a
refresh reports without turning them into input changes. Results are checked with plain pypsrp."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from hvreplica_provider.remoting import REGISTRY, InvalidState
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

VMS = ("stat01", "pause01", "resync01", "born01")
STATISTICS = {
    "average_size_bytes",
    "maximum_size_bytes",
    "pending_size_bytes",
    "successful_replications",
    "missed_replications",
    "errors",
    "average_latency",
    "health_details",
}

pytestmark = pytest.mark.usefixtures("fast_polling")  # relationship waits poll often


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("67.0", vms=VMS, time_scale=600.0) as lab:
        prepare_sites(lab)
        yield lab
    REGISTRY.close_all()


def replicating(lab: Lab, vm: str, **overrides: Any) -> tuple[dict[str, Any], Any]:
    inputs = relationship_inputs(lab, vm, wait_for_initial_replication=True, **overrides)
    return inputs, ReplicationRelationshipProvider().create(inputs)


def leg_state(lab: Lab, fqdn: str, vm: str) -> str:
    return str(prop(lab.run(fqdn, "Get-VMReplication", VMName=vm)[0], "ReplicationState"))


def test_check_types_the_new_inputs(lab: Lab) -> None:
    raw = {**relationship_inputs(lab, "stat01"), "suspended": "yes", "resynchronize": "sometimes"}
    failures = {f.property: f.reason for f in ReplicationRelationshipProvider().check({}, raw).failures}
    assert set(failures) == {"suspended", "resynchronize"}
    assert "'when_required', 'never'" in failures["resynchronize"]
    checked = ReplicationRelationshipProvider().check({}, relationship_inputs(lab, "stat01")).inputs
    assert (checked["suspended"], checked["resynchronize"]) == (False, "when_required")


def test_health_outputs_and_a_clean_refresh(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs, created = replicating(lab, "stat01", frequency_sec=30.0)
    assert set(created.outs["statistics"]) == STATISTICS
    assert created.outs["health"] == "Normal" and created.outs["last_replication_time"]
    first = provider.read(created.id, created.outs)
    time.sleep(0.5)  # a few 30 s cycles of emulated time
    later = provider.read(created.id, first.outs)
    assert (
        later.outs["statistics"]["successful_replications"]
        > first.outs["statistics"]["successful_replications"]
    )
    for read in (first, later):
        assert not {"statistics", "state", "health", "last_replication_time"} & set(read.inputs)
        assert provider.diff(created.id, read.outs, inputs).changes is False  # observed values are no input
    provider.delete(created.id, later.outs)


def test_suspend_and_resume_as_an_input_and_as_drift(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs, created = replicating(lab, "pause01")
    paused = {**inputs, "suspended": True}
    diff = provider.diff(created.id, created.outs, paused)
    assert diff.changes and diff.replaces == []
    outs = provider.update(created.id, created.outs, paused).outs
    assert (outs["state"], outs["suspended"]) == ("Suspended", True)
    assert leg_state(lab, PRIMARY, "pause01") == "Suspended"
    outs = provider.update(created.id, outs, inputs).outs
    assert outs["state"] == "Replicating" and leg_state(lab, PRIMARY, "pause01") == "Replicating"

    lab.run(PRIMARY, "Suspend-VMReplication", VMName="pause01")  # paused outside Pulumi
    drifted = provider.read(created.id, outs)
    assert drifted.inputs["suspended"] is True
    diff = provider.diff(created.id, drifted.outs, inputs)
    assert diff.changes and diff.replaces == []
    outs = provider.update(created.id, drifted.outs, inputs).outs
    assert outs["suspended"] is False and leg_state(lab, PRIMARY, "pause01") == "Replicating"
    provider.delete(created.id, outs)


def test_created_suspended(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship_inputs(lab, "born01", suspended=True)
    created = provider.create(inputs)
    assert created.outs["suspended"] is True and leg_state(lab, PRIMARY, "born01") == "Suspended"
    assert provider.diff(created.id, provider.read(created.id, created.outs).outs, inputs).changes is False
    provider.delete(created.id, created.outs)


def test_resynchronization_when_required_or_never(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs, created = replicating(lab, "resync01", recovery_history=2.0)
    def points() -> set[str]:
        return {str(prop(p, "Id")) for p in lab.run(REPLICA, "Get-VMSnapshot", VMName="resync01")}

    before = points()
    assert before
    lab.emu.require_resync(PRIMARY, "resync01")
    drifted = provider.read(created.id, created.outs)
    assert (drifted.outs["state"], drifted.outs["health"]) == ("WaitingForStartResynchronize", "Critical")
    assert drifted.inputs["suspended"] is True
    never = {**inputs, "resynchronize": "never"}
    with pytest.raises(InvalidState, match="-Resynchronize` on"):
        provider.update(created.id, drifted.outs, never)
    assert leg_state(lab, PRIMARY, "resync01") == "WaitingForStartResynchronize"  # nothing done
    outs = provider.update(created.id, drifted.outs, inputs).outs
    assert outs["suspended"] is False and leg_state(lab, PRIMARY, "resync01") == "Replicating"
    assert not before & points()  # a resync deletes the recovery points (new ones follow)
    provider.delete(created.id, outs)
