"""Bidirectional pair: each host replicates its own VMs to the other (both are primary and replica).

`vms` maps each host's FQDN to the VMs it runs; every host accepts the other as primary, so any
relationship can also be reversed after a failover.
"""

import pulumi

from hvreplica_provider.topology import (
    CertificateOptions,
    ReplicationFlow,
    ReplicationOptions,
    ReplicaTopology,
    emulated_hosts,
    emulated_topology_hosts,
)

config = pulumi.Config()
lab = emulated_hosts(config.require("hvsim_config"), config.get("hvsim_state_dir") or "../../.hvsim")
vms: dict[str, list[str]] = config.require_object("vms")
if len(vms) != 2:
    raise ValueError("hvreplica-bidirectional:vms must map exactly two host FQDNs to their VM names")
first, second = vms
rsa_bits = config.get_int("rsa_bits")

topology = ReplicaTopology(
    "both-ways",
    emulated_topology_hosts(lab, [first, second], rsa_bits),
    [
        ReplicationFlow(first, second, tuple(vms[first])),
        ReplicationFlow(second, first, tuple(vms[second])),
    ],
    CertificateOptions(rsa_bits=rsa_bits),
    ReplicationOptions(relationship={"frequency_sec": config.get_int("frequency_sec") or 300}),
)
pulumi.export("replication", topology.replication_summary())
