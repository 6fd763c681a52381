"""Many VMs: `vm_count` VMs named `<vm_prefix>001`, `<vm_prefix>002`, ... replicate from `primary` to
`replica`. The provider keeps one WinRM pool per host and bounds the concurrent pipelines per host
(`max_concurrent_operations`), so the count scales without opening a shell per VM.
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
lab = emulated_hosts(config.require("hvsim_config"), config.get("hvsim_state_dir") or ".hvsim")
primary, replica = config.require("primary"), config.require("replica")
count = config.require_int("vm_count")
if count < 1:
    raise ValueError("hvreplica-many-vms:vm_count must be at least 1")
prefix = config.get("vm_prefix") or "vm-"
rsa_bits = config.get_int("rsa_bits")

topology = ReplicaTopology(
    "fleet",
    emulated_topology_hosts(lab, [primary, replica], rsa_bits),
    [ReplicationFlow(primary, replica, tuple(f"{prefix}{i:03d}" for i in range(1, count + 1)))],
    CertificateOptions(rsa_bits=rsa_bits),
)
pulumi.export("replication", topology.replication_summary())
