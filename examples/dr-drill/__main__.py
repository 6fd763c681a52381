"""A DR drill as a stack: one TestFailover per VM on the host that holds the replicas of an existing
topology (another stack). `pulumi up` starts the drill (test VMs "<vm> - Test", from the latest recovery
point, on an optional isolated switch); `pulumi destroy` ends it. Production replication keeps running.
"""

import pulumi

from hvreplica_provider import TestFailover, TestFailoverArgs
from hvreplica_provider.stack import ConfigError, require_known_keys
from hvreplica_provider.topology import emulated_hosts

config = pulumi.Config()
require_known_keys(config, ("hvsim_config", "hvsim_state_dir", "replica", "vms", "switch_name", "start_vm"))
hosts = emulated_hosts(config.require("hvsim_config"), config.require("hvsim_state_dir"))
replica = config.require("replica").lower()
if replica not in hosts:
    raise ConfigError(f"{config.name}:replica {replica!r} is not a lab host; use one of {sorted(hosts)}")

drills = {
    vm: TestFailover(
        f"drill-{vm}",
        TestFailoverArgs(
            replica=hosts[replica].connection,
            vm_name=vm,
            switch_name=config.get("switch_name") or None,
            start_vm=config.get_bool("start_vm"),
        ),
    )
    for vm in config.require_object("vms")
}
pulumi.export(
    "drills",
    {
        vm: pulumi.Output.all(test_vm=drill.test_vm_name, id=drill.test_vm_id, state=drill.state)
        for vm, drill in drills.items()
    },
)
