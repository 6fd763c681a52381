"""Planned failover as code: the VMs in `vms` replicate from `primary` to `replica`; swapping the two in
the stack config and running `pulumi up` fails them over to the other site and reverses replication
(`on_direction_change: planned_failover`), without a new initial replication. Swapping back fails back.
"""

import pulumi

from hvreplica_provider.stack import require_known_keys
from hvreplica_provider.topology import EMULATED_TOPOLOGY_KEYS, ReplicationFlow, emulated_topology

config = pulumi.Config()
require_known_keys(config, (*EMULATED_TOPOLOGY_KEYS, "primary", "replica", "vms"))
vms = tuple(config.require_object("vms"))

topology = emulated_topology(
    "flip",
    config,
    [ReplicationFlow(config.require("primary"), config.require("replica"), vms)],
    {"on_direction_change": "planned_failover", "wait_for_initial_replication": True},
)
pulumi.export("replication", topology.replication_summary())
