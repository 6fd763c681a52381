"""Convergence benchmark (reported, never asserted). From the repo root:

    PYTHONPATH=. .venv/bin/python bench/converge.py [--counts 1 10 50] [--latencies 0 25]

For each VM count N and injected latency per WinRM request (hvsim fault `latency`), between two hvsim hosts
in untrusted domains (a `python -m hvsim serve` subprocess):
- through the REAL dynamic-provider server (`python -m pulumi.dynamic`, driven like the engine, N calls in
  flight, the server runs four at a time): wall time of create-all (ReplicationRelationship Check+Create),
  read-all (refresh: Read) and delete-all (Delete), with hvsim's counters for each phase (HTTP requests,
  pipelines, pools opened, summed over both hosts). The two ReplicaServers are created first in the same
  provider process, which is the warm-up: it opens the provider's one pool per host.
- a naive baseline doing the same cmdlets with pypsrp and a NEW runspace pool per cmdlet, four at a time:
  Enable-VMReplication, Start-VMInitialReplication and Get-VMReplication per create, Get-VMReplication per
  read, Remove-VMReplication on both hosts per delete.
Columns: wall times per phase; per create: HTTP requests and pipelines; pipelines per read; pools opened
in the whole run (both hosts; for the provider including the warm-up); HTTP requests of the three phases.
Targets (issue 4): <= 2 pipelines per create and 1 per read after warm-up, <= 1 pool per host per provider
process, and at N=50 with 25 ms at least 3x faster than the naive baseline (speed-up = naive total / provider
total of the three phases).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan

from hvreplica_provider import ReplicationRelationshipProvider
from hvsim.admin import call
from tests.support.engine import RELATIONSHIP_TYPE, ProviderServer, ResourceState
from tests.support.hvsim_env import host, lab_config_dict, serve_process, to_toml
from tests.support.pwsh import run_cmdlet
from tests.support.topology_lab import HOST1, HOST2, prepare_pair

PRIMARY, REPLICA = HOST1, HOST2
ADDRESSES = {PRIMARY: "127.86.0.11", REPLICA: "127.86.0.12"}
PASSWORD = "P@ssw0rd!"
PARALLEL = 4  # the provider server's thread pool; the naive baseline gets the same
COUNTERS = ("http_requests", "pipelines", "pools_opened")


@dataclass
class Lab:
    """A `python -m hvsim serve` subprocess and what clients need to reach it."""

    process: subprocess.Popen[str]
    entries: dict[str, dict[str, Any]]
    admin: str
    ca_pem: str
    ca_path: Path

    def counters(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNTERS, 0)
        for fqdn in self.entries:
            for key, value in call(self.admin, "counters", fqdn).items():
                if key in totals:
                    totals[key] += value
        return totals

    def latency(self, ms: int) -> None:
        for fqdn in self.entries:
            call(self.admin, "clear-faults", fqdn)
            if ms:
                call(self.admin, "fault", fqdn, kind="latency", value=ms)

    def address(self, fqdn: str) -> str:
        return self.entries[fqdn]["address"]

    def connection(self, fqdn: str) -> dict[str, Any]:
        entry = self.entries[fqdn]
        return {
            "host": entry["address"],
            "port": float(entry["winrm_port"]),
            "auth": "basic",
            "username": "Administrator",
            "password": PASSWORD,
            "ca_cert_pem": self.ca_pem,
        }

    def wsman(self, fqdn: str) -> WSMan:
        entry = self.entries[fqdn]
        return WSMan(
            entry["address"],
            port=entry["winrm_port"],
            auth="basic",
            username="Administrator",
            password=PASSWORD,
            cert_validation=str(self.ca_path),
        )


def start_lab(tmp: Path, vms: list[str]) -> Lab:
    entries = {
        PRIMARY: host(PRIMARY, ADDRESSES[PRIMARY], vms=vms),
        REPLICA: host(REPLICA, ADDRESSES[REPLICA]),
    }
    raw = lab_config_dict(*entries.values(), admin_address="127.86.0.1", time_scale=60.0)
    config = tmp / "lab.toml"
    config.write_text(to_toml(raw))
    process, _ = serve_process(config, tmp / "state")
    for stream in (process.stdout, process.stderr):  # drain hvsim's output, or a full pipe blocks it
        threading.Thread(target=stream.read, daemon=True).start()
    ca_path = tmp / "state" / "winrm-ca.pem"
    return Lab(process, entries, raw["settings"]["admin"], ca_path.read_text(), ca_path)


def timed(phase: Callable[[], None], lab: Lab) -> tuple[float, dict[str, int]]:
    before = lab.counters()
    started = time.perf_counter()
    phase()
    elapsed = time.perf_counter() - started
    after = lab.counters()
    return elapsed, {k: after[k] - before[k] for k in COUNTERS}


def in_parallel(work: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(work, items))


@dataclass
class Row:
    n: int
    latency_ms: int
    mode: str
    phases: dict[str, tuple[float, dict[str, int]]]
    pools: int  # runspace pools opened for the whole run (provider: including the warm-up; two hosts)


def provider_run(lab: Lab, vms: list[str], latency_ms: int) -> Row:
    with ProviderServer() as server:
        server.configure()
        material = prepare_pair(server, lab, PRIMARY, REPLICA)  # the warm-up, in the same provider process
        lab.latency(latency_ms)
        provider = ReplicationRelationshipProvider()
        states: list[ResourceState] = []

        def create(vm: str) -> None:
            inputs = {
                "primary": lab.connection(PRIMARY),
                "replica": lab.connection(REPLICA),
                "vm_name": vm,
                "replica_server_fqdn": REPLICA,
                "certificate_thumbprint": material[PRIMARY].cert["thumbprint"],
            }
            states.append(server.up(server.urn(RELATIONSHIP_TYPE, f"repl-{vm}"), provider, inputs).state)

        phases = {"create": timed(lambda: in_parallel(create, vms), lab)}
        phases["read"] = timed(lambda: in_parallel(server.refresh, states), lab)
        phases["delete"] = timed(lambda: in_parallel(server.destroy, states), lab)
        lab.latency(0)
        return Row(len(vms), latency_ms, "provider", phases, lab.counters()["pools_opened"])


def naive_cmdlet(lab: Lab, fqdn: str, cmdlet: str, **params: Any) -> list[Any]:
    """One cmdlet on a brand-new runspace pool (and connection), as a script-per-call tool does."""
    with lab.wsman(fqdn) as wsman, RunspacePool(wsman) as pool:
        return run_cmdlet(pool, cmdlet, **params)


def naive_run(lab: Lab, vms: list[str], latency_ms: int) -> Row:
    with ProviderServer() as server:  # host preparation only, not measured
        server.configure()
        thumbprint = prepare_pair(server, lab, PRIMARY, REPLICA)[PRIMARY].cert["thumbprint"]
    lab.latency(latency_ms)

    def create(vm: str) -> None:
        naive_cmdlet(
            lab,
            PRIMARY,
            "Enable-VMReplication",
            VMName=vm,
            ReplicaServerName=REPLICA,
            ReplicaServerPort=443,
            AuthenticationType="Certificate",
            CertificateThumbprint=thumbprint,
        )
        naive_cmdlet(lab, PRIMARY, "Start-VMInitialReplication", VMName=vm)
        naive_cmdlet(lab, PRIMARY, "Get-VMReplication", VMName=vm)

    def read(vm: str) -> None:
        naive_cmdlet(lab, PRIMARY, "Get-VMReplication", VMName=vm)

    def delete(vm: str) -> None:
        naive_cmdlet(lab, PRIMARY, "Remove-VMReplication", VMName=vm)
        naive_cmdlet(lab, REPLICA, "Remove-VMReplication", VMName=vm)

    phases = {
        "create": timed(lambda: in_parallel(create, vms), lab),
        "read": timed(lambda: in_parallel(read, vms), lab),
        "delete": timed(lambda: in_parallel(delete, vms), lab),
    }
    lab.latency(0)
    return Row(len(vms), latency_ms, "naive", phases, sum(p[1]["pools_opened"] for p in phases.values()))


HEADER = (
    f"{'N':>3} {'lat':>4} {'mode':<8} {'create s':>9} {'read s':>7} {'delete s':>9} "
    f"{'req/create':>10} {'pipe/create':>11} {'pipe/read':>9} {'pools':>5} {'requests':>8}"
)


def print_row(row: Row) -> None:
    create, read, delete = (row.phases[p] for p in ("create", "read", "delete"))
    requests = sum(phase[1]["http_requests"] for phase in row.phases.values())
    times = f"{create[0]:>9.2f} {read[0]:>7.2f} {delete[0]:>9.2f}"
    print(
        f"{row.n:>3} {row.latency_ms:>4} {row.mode:<8} {times} "
        f"{create[1]['http_requests'] / row.n:>10.1f} {create[1]['pipelines'] / row.n:>11.2f} "
        f"{read[1]['pipelines'] / row.n:>9.2f} {row.pools:>5} {requests:>8}",
        flush=True,
    )


def print_targets(rows: list[Row]) -> None:
    """The issue's targets next to the measured values (reported, not asserted)."""
    provider = [r for r in rows if r.mode == "provider"]
    per_create = max(r.phases["create"][1]["pipelines"] / r.n for r in provider)
    per_read = max(r.phases["read"][1]["pipelines"] / r.n for r in provider)
    pools_per_host = max(r.pools for r in provider) / 2
    print()
    print(f"pipelines per create (max): {per_create:.2f}   target <= 2")
    print(f"pipelines per read (max):   {per_read:.2f}   target <= 1")
    print(f"pools per host per provider process (max): {pools_per_host:.0f}   target <= 1")


def print_speedups(rows: list[Row]) -> None:
    by_key = {(r.n, r.latency_ms, r.mode): r for r in rows}
    print()
    for (n, latency, mode), row in sorted(by_key.items()):
        naive = by_key.get((n, latency, "naive"))
        if mode == "provider" and naive is not None:
            total = sum(p[0] for p in row.phases.values())
            naive_total = sum(p[0] for p in naive.phases.values())
            print(
                f"N={n:<3} latency={latency:>2} ms: provider {total:.2f} s, naive {naive_total:.2f} s, "
                f"speed-up {naive_total / total:.1f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--latencies", type=int, nargs="+", default=[0, 25])
    args = parser.parse_args()
    rows: list[Row] = []
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    for n in args.counts:
        vms = [f"vm{i:03d}" for i in range(1, n + 1)]
        for latency in args.latencies:
            for run in (provider_run, naive_run):  # each on a fresh lab
                with tempfile.TemporaryDirectory(prefix="hvreplica-bench-") as tmp:
                    lab = start_lab(Path(tmp), vms)
                    try:
                        rows.append(run(lab, vms, latency))
                    finally:
                        lab.process.terminate()
                        lab.process.wait(timeout=60)
                print_row(rows[-1])
    print_targets(rows)
    print_speedups(rows)


if __name__ == "__main__":
    main()
