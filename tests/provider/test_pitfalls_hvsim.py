"""The scenario's pitfalls on live (emulated) hosts: what the host reports when a step is missing, and the
re-run that converges once the configuration is fixed; Kerberos where the domains trust each other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hvreplica_provider.remoting import REGISTRY, RemoteError
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    prop,
    relationship_inputs,
    replica_server_inputs,
    two_site_lab,
)


@pytest.fixture(autouse=True)
def fresh_pools() -> Iterator[None]:
    yield
    REGISTRY.close_all()


def test_missing_hosts_entry_fails_on_the_host_then_converges() -> None:
    """Across untrusted domains the primary cannot resolve the replica until the hosts file names it."""
    servers, relationships = ReplicaServerProvider(), ReplicationRelationshipProvider()
    with two_site_lab("66.0", vms=("web01",), time_scale=300.0) as lab:
        servers.create(replica_server_inputs(lab, REPLICA, PRIMARY))
        primary_inputs = replica_server_inputs(lab, PRIMARY, REPLICA, hosts_entries={})
        primary = servers.create(primary_inputs)
        inputs = relationship_inputs(lab, "web01")
        with pytest.raises(RemoteError) as caught:
            relationships.create(inputs)
        assert REPLICA in str(caught.value) and "hosts file" in str(caught.value)
        assert lab.run(PRIMARY, "Get-VMReplication") == []  # nothing half-enabled

        fixed = replica_server_inputs(lab, PRIMARY, REPLICA)
        assert servers.diff(primary.id, primary.outs, fixed).replaces == []
        servers.update(primary.id, primary.outs, fixed)
        created = relationships.create(inputs)
        assert created.outs["mode"] == "Primary"
        [leg] = lab.run(PRIMARY, "Get-VMReplication")
        assert str(prop(leg, "ReplicaServerName")) == REPLICA


def test_kerberos_between_trusting_domains() -> None:
    servers, relationships = ReplicaServerProvider(), ReplicationRelationshipProvider()
    with two_site_lab("66.1", vms=("web01",), time_scale=300.0, trusted=True) as lab:
        kerberos = {"authentication": "Kerberos", "certificate": None, "disable_revocation_check": False}
        server = servers.create(replica_server_inputs(lab, REPLICA, PRIMARY, **kerberos))
        [rule] = lab.run(REPLICA, "Get-NetFirewallRule", Name="VIRT-HVRHTTPL-In-TCP-NoScope")
        assert str(rule.extended_properties["Enabled"]) == "True"
        assert server.outs["certificate_thumbprint"] == ""
        servers.create(replica_server_inputs(lab, PRIMARY, REPLICA, **kerberos))
        created = relationships.create(
            relationship_inputs(
                lab, "web01", authentication="Kerberos", certificate_thumbprint=None, replica_port=80
            )
        )
        assert created.outs["authentication"] == "Kerberos" and created.outs["replica_port"] == 80
        [leg] = lab.run(PRIMARY, "Get-VMReplication")
        assert str(prop(leg, "AuthenticationType")) == "Kerberos"
