"""ReplicationRelationship against two hvsim hosts in untrusted domains (certificate authentication, HTTPS
with verification on), both prepared by ReplicaServer. Results are checked with plain pypsrp."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from hvreplica_provider import clock, pki, remoting
from hvreplica_provider.remoting import (
    REGISTRY,
    Authentication,
    InvalidState,
    RemoteError,
    RetryPolicy,
    Transient,
)
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    Lab,
    Site,
    prepare_sites,
    prop,
    relationship_inputs,
    site_certs,
    two_site_lab,
)

ODD_VM = "it's $web; 01"
VMS = ("web01", ODD_VM, "db01", "app01", "file01", "mail01", "sql01", "exp01", "sch01", "rep01", "drop01")

pytestmark = pytest.mark.usefixtures("fast_polling")  # relationship waits poll often


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("63.0", vms=VMS, time_scale=300.0) as lab:
        yield lab
    REGISTRY.close_all()


@pytest.fixture(scope="module")
def sites(lab: Lab) -> dict[str, Site]:
    return prepare_sites(lab)


def relationship(lab: Lab, vm: str, **overrides: Any) -> dict[str, Any]:
    return relationship_inputs(lab, vm, **overrides)


def legs(lab: Lab, fqdn: str) -> dict[str, Any]:
    return {str(prop(r, "VMName")): r for r in lab.run(fqdn, "Get-VMReplication")}


@pytest.mark.usefixtures("sites")
def test_create_wait_read_drift_update_password_delete(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship(
        lab,
        ODD_VM,
        frequency_sec=30.0,
        recovery_history=2.0,
        vss_snapshot_frequency_hour=1.0,
        wait_for_initial_replication=True,
        initial_replication_timeout_sec=120.0,
    )
    created = provider.create(inputs)
    outs = created.outs
    assert outs["state"] == "Replicating" and outs["mode"] == "Primary"
    assert ODD_VM in capsys.readouterr().out  # progress lines name the relationship

    primary = legs(lab, PRIMARY)[ODD_VM]
    assert str(prop(primary, "ReplicationState")) == "Replicating"
    assert str(prop(primary, "ReplicationHealth")) == "Normal"
    assert str(prop(primary, "ReplicationMode")) == "Primary"
    assert (prop(primary, "ReplicationFrequencySec"), prop(primary, "RecoveryHistory")) == (30, 2)
    assert str(prop(primary, "CertificateThumbprint")) == site_certs(PRIMARY).thumbprint
    replica = legs(lab, REPLICA)[ODD_VM]
    assert str(prop(replica, "ReplicationMode")) == "Replica"
    assert str(prop(replica, "ReplicationState")) == "Replicating"

    read = provider.read(created.id, outs)
    assert read.id == created.id and read.outs["frequency_sec"] == 30
    assert provider.diff(created.id, read.outs, inputs).changes is False

    # drift made on the host: read finds it, update fixes it in place
    lab.run(
        PRIMARY, "Set-VMReplication", VMName=ODD_VM, ReplicationFrequencySec=300, CompressionEnabled=False
    )
    drifted = provider.read(created.id, outs)
    assert (drifted.inputs["frequency_sec"], drifted.inputs["compression"]) == (300, False)
    diff = provider.diff(created.id, drifted.outs, inputs)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, drifted.outs, inputs).outs
    primary = legs(lab, PRIMARY)[ODD_VM]
    assert (prop(primary, "ReplicationFrequencySec"), prop(primary, "CompressionEnabled")) == (30, True)
    assert updated["frequency_sec"] == 30

    # a password change replaces nothing and touches neither host
    before = {h: lab.counters(h)["http_requests"] for h in (PRIMARY, REPLICA)}
    new_pw = {**inputs, "primary": {**inputs["primary"], "password": "rotated-Secret-2"}}
    diff = provider.diff(created.id, updated, new_pw)
    assert diff.changes is True and diff.replaces == []
    provider.update(created.id, updated, new_pw)
    assert {h: lab.counters(h)["http_requests"] for h in (PRIMARY, REPLICA)} == before

    # replacing properties
    assert provider.diff(created.id, updated, {**inputs, "vm_name": "web01"}).replaces == ["vm_name"]
    assert provider.diff(created.id, updated, {**inputs, "excluded_vhd_paths": ["D:\\x.vhdx"]}).replaces == [
        "excluded_vhd_paths"
    ]

    # delete: both sides, replica VM kept, idempotent, then read says gone
    provider.delete(created.id, updated)
    assert ODD_VM not in legs(lab, PRIMARY) and ODD_VM not in legs(lab, REPLICA)
    assert ODD_VM in [str(prop(v, "Name")) for v in lab.run(REPLICA, "Get-VM")]
    provider.delete(created.id, updated)
    assert provider.read(created.id, updated).id == ""


@pytest.mark.usefixtures("sites")
def test_enable_refused_by_replica_then_rerun_converges(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    lab.run(REPLICA, "Remove-VMReplicationAuthorizationEntry", AllowedPrimaryServer=PRIMARY)
    inputs = relationship(lab, "db01")
    try:
        with pytest.raises(RemoteError) as caught:
            provider.create(inputs)
        assert caught.value.cmdlet == "Enable-VMReplication"
        assert "db01" not in legs(lab, PRIMARY)  # nothing half-applied
    finally:
        lab.run(
            REPLICA,
            "New-VMReplicationAuthorizationEntry",
            AllowedPrimaryServer=PRIMARY,
            ReplicaStorageLocation="D:\\Replica",
            TrustGroup="DEFAULT",
        )
    created = provider.create(inputs)
    assert created.outs["mode"] == "Primary"
    provider.delete(created.id, created.outs)


@pytest.mark.usefixtures("sites")
def test_connection_dropped_mid_create_converges(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship(lab, "app01")
    provider.read("warm", {**inputs, "state": None})  # the shared pool is open: the next requests are known
    lab.emu.inject_fault(PRIMARY, "drop-nth", 2)  # the Receive carrying Enable-VMReplication's result
    try:
        created = provider.create(inputs)
    finally:
        lab.emu.clear_faults(PRIMARY)
    assert created.outs["mode"] == "Primary"
    assert str(prop(legs(lab, PRIMARY)["app01"], "ReplicaServerName")) == REPLICA
    provider.delete(created.id, created.outs)


@pytest.mark.usefixtures("sites")
def test_create_dropped_at_each_request_then_rerun_converges(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retries: the connection to the primary is dropped at request 1, 2, ... of a create; each time a
    plain re-run converges to one replication in the right place, and delete leaves no leg behind."""
    monkeypatch.setattr(remoting, "DEFAULT_RETRY", RetryPolicy(deadline_sec=0.0))
    provider = ReplicationRelationshipProvider()
    inputs = relationship(lab, "drop01", delete_replica_vm_on_destroy=True)
    failures = 0
    for n in itertools.count(1):
        requests_before = lab.counters(PRIMARY)["http_requests"]
        lab.emu.inject_fault(PRIMARY, "drop-nth", n)
        try:
            created = provider.create(inputs)
        except Transient:
            failures += 1
            created = provider.create(inputs)  # the re-run
        finally:
            lab.emu.clear_faults(PRIMARY)
        complete = lab.counters(PRIMARY)["http_requests"] - requests_before < n  # the drop never came
        primary, replica = legs(lab, PRIMARY)["drop01"], legs(lab, REPLICA)["drop01"]
        assert str(prop(primary, "ReplicaServerName")) == REPLICA
        assert str(prop(primary, "ReplicationState")) != "ReadyForInitialReplication"  # the copy started
        assert str(prop(replica, "ReplicationMode")) == "Replica"
        assert created.outs["mode"] == "Primary"
        provider.delete(created.id, created.outs)
        assert "drop01" not in legs(lab, PRIMARY) and "drop01" not in legs(lab, REPLICA)
        if complete:
            break  # every request of a create has been dropped once
    print(f"relationship create: {n - 1} requests on the primary, {failures} drops failed it")
    assert failures >= 2


@pytest.mark.usefixtures("sites")
def test_missing_vm_and_wrong_password_are_clear(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    with pytest.raises(RemoteError) as missing:
        provider.create(relationship(lab, "ghost"))
    assert "ghost" in str(missing.value)
    wrong = relationship(lab, "web01", primary=lab.connection(PRIMARY, password="bad-Pass-3"))
    with pytest.raises(Authentication) as denied:
        provider.create(wrong)
    assert "bad-Pass-3" not in str(denied.value)
    assert "web01" not in legs(lab, PRIMARY)


@pytest.mark.usefixtures("sites")
def test_vm_already_replicating_elsewhere_is_refused_clearly(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    created = provider.create(relationship(lab, "web01"))
    try:
        with pytest.raises(InvalidState) as caught:
            provider.create(relationship(lab, "web01", replica_server_fqdn="host3.fabrikam.com"))
        assert f"already replicates to {REPLICA}" in str(caught.value)
        assert str(prop(legs(lab, PRIMARY)["web01"], "ReplicaServerName")) == REPLICA  # untouched
    finally:
        provider.delete(created.id, created.outs)


@pytest.mark.usefixtures("sites")
def test_a_kept_replica_vm_blocking_a_new_create_is_explained(lab: Lab) -> None:
    """Delete keeps the replica VM by default (so does the delete half of a replace); Hyper-V then refuses to
    enable that VM's replication afresh. The error says why and what to do; then the re-run converges."""
    provider = ReplicationRelationshipProvider()
    inputs = relationship(lab, "rep01", initial_replication="none")
    created = provider.create(inputs)
    provider.delete(created.id, created.outs)
    with pytest.raises(InvalidState) as caught:
        provider.create(inputs)
    assert f"{lab.addresses[REPLICA]} still holds the replica VM 'rep01'" in str(caught.value)
    assert "Remove-VM" in str(caught.value) and "delete_replica_vm_on_destroy" in str(caught.value)
    assert "rep01" not in legs(lab, PRIMARY)
    lab.run(REPLICA, "Remove-VM", Name="rep01", Force=True)
    again = provider.create(inputs)
    assert again.outs["mode"] == "Primary"
    provider.delete(again.id, again.outs)


@pytest.mark.usefixtures("sites")
def test_two_pipelines_per_create_and_one_per_read(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship(lab, "file01")
    provider.read("warm", {**inputs, "state": None})  # the pool is open (a cold start opens it once)
    before = lab.counters(PRIMARY)
    created = provider.create(inputs)
    after_create = lab.counters(PRIMARY)
    provider.read(created.id, created.outs)
    after_read = lab.counters(PRIMARY)
    # Get-VM -Name (the name resolved to an id, once), then Enable + Start + Get-VMReplication by that id
    assert after_create["pipelines"] - before["pipelines"] == 2
    assert after_read["pipelines"] - after_create["pipelines"] == 1
    assert after_read["pools_opened"] == before["pools_opened"]
    provider.delete(created.id, created.outs)


@pytest.mark.usefixtures("sites")
def test_initial_replication_none_and_replica_vm_deleted_on_request(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship(lab, "mail01", initial_replication="none", delete_replica_vm_on_destroy=True)
    created = provider.create(inputs)
    assert created.outs["state"] == "ReadyForInitialReplication"
    assert "mail01" in [str(prop(v, "Name")) for v in lab.run(REPLICA, "Get-VM")]
    provider.delete(created.id, created.outs)
    assert "mail01" not in [str(prop(v, "Name")) for v in lab.run(REPLICA, "Get-VM")]
    assert "mail01" in [str(prop(v, "Name")) for v in lab.run(PRIMARY, "Get-VM")]
    provider.delete(created.id, created.outs)


@pytest.mark.usefixtures("sites")
def test_export_and_scheduled_initial_replication(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    exported = provider.create(
        relationship(
            lab,
            "exp01",
            initial_replication="export",
            initial_replication_destination_path="C:\\Windows\\Temp",
        )
    )
    assert exported.outs["state"] == "InitialReplicationInProgress"
    start = clock.now() + timedelta(days=6)  # far ahead of the lab's faster clock too
    scheduled = provider.create(
        relationship(
            lab, "sch01", initial_replication="scheduled", initial_replication_start_time=pki.iso_utc(start)
        )
    )
    assert scheduled.outs["state"] == "ReadyForInitialReplication"
    leg = legs(lab, PRIMARY)["sch01"]
    assert prop(leg, "InitialReplicationStartTime") is not None
    for created in (exported, scheduled):
        provider.delete(created.id, created.outs)


def test_certificate_rotation_keeps_the_certificate_a_replication_uses(
    lab: Lab, sites: dict[str, Site]
) -> None:
    """Runs last in this module: it rotates host1's certificate."""
    relationships = ReplicationRelationshipProvider()
    created = relationships.create(relationship(lab, "sql01"))
    old, new = site_certs(PRIMARY), site_certs(PRIMARY, generation=1)
    site = sites[PRIMARY]
    servers = ReplicaServerProvider()
    rotated = servers.check({}, {**site.inputs, "certificate": new.certificate}).inputs
    assert servers.diff(site.id, site.outputs, rotated).replaces == []
    outs = servers.update(site.id, site.outputs, rotated).outs
    my = {
        str(prop(c, "Thumbprint")) for c in lab.run(PRIMARY, "Get-ChildItem", Path="Cert:\\LocalMachine\\My")
    }
    assert {old.thumbprint, new.thumbprint} <= my  # the old one still authenticates sql01's replication
    [server] = lab.run(PRIMARY, "Get-VMReplicationServer")
    assert str(prop(server, "CertificateThumbprint")) == new.thumbprint
    assert set(outs["managed"]["certificate_thumbprints"]) == {old.thumbprint, new.thumbprint}
    # Point the replication at the new certificate in place; then the old one is free to go at delete.
    moved = relationship(lab, "sql01", certificate_thumbprint=new.thumbprint)
    assert relationships.diff(created.id, created.outs, moved).replaces == []
    updated = relationships.update(created.id, created.outs, moved).outs
    assert updated["certificate_thumbprint"] == new.thumbprint
    relationships.delete(created.id, updated)
