"""Minimal cross-domain pair: the VMs of `primary` replicate to `replica`, one direction.

Each host's certificate comes from a CA of its own domain; both hosts are prepared as replica servers
(trusted CAs, certificate, firewall, hosts-file entries), then one ReplicationRelationship per VM.
"""

import pulumi

from hvreplica_provider.stack import require_known_keys
from hvreplica_provider.topology import EMULATED_TOPOLOGY_KEYS, ReplicationFlow, emulated_topology

config = pulumi.Config()
require_known_keys(config, (*EMULATED_TOPOLOGY_KEYS, "primary", "replica", "vms"))
vms = tuple(config.require_object("vms"))

topology = emulated_topology(
    "pair", config, [ReplicationFlow(config.require("primary"), config.require("replica"), vms)]
)
pulumi.export("replication", topology.replication_summary())
