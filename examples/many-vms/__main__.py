"""Many VMs: `vm_count` VMs named `<vm_prefix>001`, `<vm_prefix>002`, ... replicate from `primary` to
`replica`. The provider keeps one WinRM pool per host and bounds the concurrent pipelines per host
(`max_concurrent_operations`), so the count scales without opening a shell per VM.
"""

import pulumi

from hvreplica_provider.stack import ConfigError, require_known_keys
from hvreplica_provider.topology import EMULATED_TOPOLOGY_KEYS, ReplicationFlow, emulated_topology

config = pulumi.Config()
require_known_keys(config, (*EMULATED_TOPOLOGY_KEYS, "primary", "replica", "vm_count", "vm_prefix"))
count = config.require_int("vm_count")
if count < 1:
    raise ConfigError(f"{config.name}:vm_count must be at least 1")
prefix = config.get("vm_prefix") or "vm-"
vms = tuple(f"{prefix}{i:03d}" for i in range(1, count + 1))

topology = emulated_topology(
    "fleet", config, [ReplicationFlow(config.require("primary"), config.require("replica"), vms)]
)
pulumi.export("replication", topology.replication_summary())
