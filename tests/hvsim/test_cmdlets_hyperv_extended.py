"""Extended replication with the real pypsrp client (hyperv-replica.md §2.3, §3.1, §3.4 flow 6): a replica
VM's second leg to a third host, its rules (300 or 900 s and not more often than the leg it extends, no VSS,
no disk selection), both legs side by side on the middle host, and removing the extended leg alone.

Three hosts of one domain replicate with Kerberos: hv1 -> hv2 -> hv3."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, make_kerberos_replica, props, sessions, wait_for

HV1, HV2, HV3 = "hv1.contoso.com", "hv2.contoso.com", "hv3.contoso.com"
ENABLE = "Microsoft.HyperV.PowerShell.Commands.EnableVMReplication"


def kerberos(target: str) -> dict[str, object]:
    return {"ReplicaServerName": target, "ReplicaServerPort": 80, "AuthenticationType": "Kerberos"}


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[HostSession, HostSession, HostSession]]:
    config = lab_config(
        host(HV1, "127.65.0.1", vms=["ext01"]),
        host(HV2, "127.65.0.2"),
        host(HV3, "127.65.0.3"),
        time_scale=600.0,
    )
    with running_lab(config) as emulator, sessions(emulator, HV1, HV2, HV3) as opened:
        make_kerberos_replica(opened[HV2], HV1, "D:\\Replica")
        make_kerberos_replica(opened[HV3], HV2, "D:\\Extended")
        yield opened[HV1], opened[HV2], opened[HV3]


def legs(session: HostSession, vm: str) -> dict[str, tuple[str, str]]:
    """Relationship type -> (mode, state) of the VM's legs on this host."""
    return {
        str(props(r)["ReplicationRelationshipType"]): (
            str(props(r)["ReplicationMode"]),
            str(props(r)["ReplicationState"]),
        )
        for r in session.ok("Get-VMReplication", VMName=vm)
    }


def test_extended_replication(hosts: tuple[HostSession, HostSession, HostSession]) -> None:
    first, middle, third = hosts
    first.ok("Enable-VMReplication", VMName="ext01", **kerberos(HV2))
    first.ok("Start-VMInitialReplication", VMName="ext01")
    wait_for(lambda: legs(middle, "ext01") == {"Simple": ("Replica", "Replicating")}, "the first leg")

    for refused, fragment in (
        ({"ReplicationFrequencySec": 30}, "300 or 900 seconds"),
        (
            {"VSSSnapshotFrequencyHour": 1, "RecoveryHistory": 2},
            "'VSSSnapshotFrequencyHour' is not applicable",
        ),
    ):
        outcome = middle.run("Enable-VMReplication", VMName="ext01", **kerberos(HV3), **refused)
        assert outcome.error.fq_error == f"InvalidParameter,{ENABLE}" and fragment in str(outcome.error)
    assert third.ok("Get-VM") == []  # nothing made on the third host

    out = middle.ok(
        "Enable-VMReplication", "Passthru", VMName="ext01", **kerberos(HV3), ReplicationFrequencySec=900
    )
    extended = props(out[0])
    assert (str(extended["ReplicationRelationshipType"]), str(extended["ReplicationMode"])) == (
        "Extended",
        "Replica",
    )
    assert (extended["PrimaryServerName"], extended["ReplicaServerName"]) == (HV2, HV3)
    assert legs(third, "ext01") == {"Simple": ("ExtendedReplica", "WaitingForInitialReplication")}
    again = middle.run("Enable-VMReplication", VMName="ext01", **kerberos(HV3), ReplicationFrequencySec=900)
    assert "already been enabled" in str(again.error)
    on_third = third.run("Enable-VMReplication", VMName="ext01", **kerberos(HV1))
    assert "is not applicable" in str(on_third.error)

    middle.ok("Start-VMInitialReplication", VMName="ext01")  # a replica VM starts its extended leg's copy
    wait_for(lambda: legs(third, "ext01")["Simple"][1] == "Replicating", "the extended leg")
    assert legs(middle, "ext01") == {
        "Simple": ("Replica", "Replicating"),
        "Extended": ("Replica", "Replicating"),
    }
    only = middle.ok("Get-VMReplication", VMName="ext01", ReplicationRelationshipType="Extended")
    assert [props(r)["ReplicaServerName"] for r in only] == [HV3]
    measured = middle.ok("Measure-VMReplication", VMName="ext01")
    assert sorted(str(props(m)["ReplicationRelationshipType"]) for m in measured) == ["Extended", "Simple"]

    middle.ok("Remove-VMReplication", VMName="ext01", ReplicationRelationshipType="Extended")
    assert legs(middle, "ext01") == {"Simple": ("Replica", "Replicating")}
    assert legs(third, "ext01")["Simple"][0] == "ExtendedReplica"  # the third host keeps its copy
    gone = middle.run("Remove-VMReplication", VMName="ext01", ReplicationRelationshipType="Extended")
    assert gone.error.fq_error.startswith("InvalidState,")
