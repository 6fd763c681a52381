"""Bidirectional pair: each host replicates its own VMs to the other (both are primary and replica).

`vms` maps each host's FQDN to the VMs it runs; every host accepts the other as primary, so any
relationship can also be reversed after a failover.
"""

import pulumi

from hvreplica_provider.stack import ConfigError, require_known_keys
from hvreplica_provider.topology import EMULATED_TOPOLOGY_KEYS, ReplicationFlow, emulated_topology

config = pulumi.Config()
require_known_keys(config, (*EMULATED_TOPOLOGY_KEYS, "vms", "frequency_sec"))
vms: dict[str, list[str]] = config.require_object("vms")
if not isinstance(vms, dict) or len(vms) != 2:
    raise ConfigError(f"{config.name}:vms must map exactly two host FQDNs to their VM names")
first, second = vms

topology = emulated_topology(
    "both-ways",
    config,
    [
        ReplicationFlow(first, second, tuple(vms[first])),
        ReplicationFlow(second, first, tuple(vms[second])),
    ],
    {"frequency_sec": config.get_int("frequency_sec") or 300},
)
pulumi.export("replication", topology.replication_summary())
