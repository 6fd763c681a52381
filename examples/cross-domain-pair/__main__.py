"""Minimal cross-domain pair: the VMs of `primary` replicate to `replica`, one direction.

Each host's certificate comes from a CA of its own domain; both hosts are prepared as replica servers
(trusted CAs, certificate, firewall, hosts-file entries), then one ReplicationRelationship per VM.
"""

import pulumi

from hvreplica_provider.topology import (
    CertificateOptions,
    ReplicationFlow,
    ReplicaTopology,
    emulated_hosts,
    emulated_topology_hosts,
)

config = pulumi.Config()
lab = emulated_hosts(config.require("hvsim_config"), config.get("hvsim_state_dir") or "../../.hvsim")
primary, replica = config.require("primary"), config.require("replica")
rsa_bits = config.get_int("rsa_bits")

topology = ReplicaTopology(
    "pair",
    emulated_topology_hosts(lab, [primary, replica], rsa_bits),
    [ReplicationFlow(primary, replica, tuple(config.require_object("vms")))],
    CertificateOptions(rsa_bits=rsa_bits),
)
pulumi.export("replication", topology.replication_summary())
