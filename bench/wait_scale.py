"""Waiting for many initial replications (reported, never asserted; issue 10 item 7). From the repo root:

    PYTHONPATH=. .venv/bin/python bench/wait_scale.py [--count 40]

Through the REAL dynamic-provider server (`python -m pulumi.dynamic`, driven like the engine with four calls
in flight: the server runs four at a time) against a `python -m hvsim serve` lab of two hosts in untrusted
domains, whose 8 GiB VMs take about 41 s of emulated time (0.7 s at the lab's time scale of 60) to copy:

- per-VM: every ReplicationRelationship waits for its own copy (`wait_for_initial_replication`): each call
  holds one of the four workers until its copy is done, so the copies run four at a time;
- per-host: the relationships return once their copies started, then one InitialReplicationWait for the
  host's VMs (what ReplicaTopology declares) waits for all of them, one Get-VMReplication per poll.

Columns: wall time of the phase, worker-seconds (the summed durations of the provider calls: how long the
server's workers were held), and hvsim's HTTP requests and pipelines (both hosts).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.converge import PRIMARY, REPLICA, Lab, in_parallel, start_lab, timed
from hvreplica_provider import ReplicationRelationshipProvider
from hvreplica_provider.resources.replication_wait import InitialReplicationWaitProvider
from tests.support.engine import RELATIONSHIP_TYPE, WAIT_TYPE, ProviderServer
from tests.support.topology_lab import prepare_pair


def run(lab: Lab, vms: list[str], mode: str) -> tuple[float, float, dict[str, int]]:
    with ProviderServer() as server:
        server.configure()
        thumbprint = prepare_pair(server, lab, PRIMARY, REPLICA)[PRIMARY].cert["thumbprint"]
        held: list[float] = []
        vm_ids: list[str] = []

        def call(urn: str, provider: Any, inputs: dict[str, Any]) -> dict[str, Any]:
            started = time.perf_counter()
            outputs = server.up(urn, provider, inputs).state.outputs
            held.append(time.perf_counter() - started)
            return outputs

        def create(vm: str) -> None:
            inputs = {
                "primary": lab.connection(PRIMARY),
                "replica": lab.connection(REPLICA),
                "vm_name": vm,
                "replica_server_fqdn": REPLICA,
                "certificate_thumbprint": thumbprint,
                "wait_for_initial_replication": mode == "per-vm",
            }
            urn = server.urn(RELATIONSHIP_TYPE, f"repl-{vm}")
            outputs = call(urn, ReplicationRelationshipProvider(), inputs)
            vm_ids.append(outputs["vm_id"])

        def phase() -> None:
            in_parallel(create, vms)
            if mode == "per-host":
                wait = {"connection": lab.connection(PRIMARY), "vm_ids": sorted(vm_ids)}
                call(server.urn(WAIT_TYPE, "wait-primary"), InitialReplicationWaitProvider(), wait)

        wall, counters = timed(phase, lab)
        return wall, sum(held), counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    vms = [f"vm-{i:03d}" for i in range(1, args.count + 1)]
    print(f"{args.count} VMs, copies of ~0.7 s each, 4 provider workers")
    print(f"{'mode':<9} {'wall s':>7} {'worker-s':>9} {'requests':>9} {'pipelines':>10}")
    for mode in ("per-vm", "per-host"):
        with tempfile.TemporaryDirectory(prefix="hvreplica-bench-") as tmp:
            lab = start_lab(Path(tmp), vms)
            try:
                wall, held, counters = run(lab, vms, mode)
            finally:
                lab.process.terminate()
                lab.process.wait(timeout=30)
        print(f"{mode:<9} {wall:7.1f} {held:9.1f} {counters['http_requests']:9d} {counters['pipelines']:10d}")


if __name__ == "__main__":
    main()
