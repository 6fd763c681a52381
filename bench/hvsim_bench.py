"""hvsim benchmark (no assertions). From the repo root: `PYTHONPATH=. .venv/bin/python bench/hvsim_bench.py`.

Measured against a `python -m hvsim serve` subprocess on loopback with the real pypsrp client (HTTPS, Basic):
- median and p95 latency of one cmdlet invocation (`Get-VM -Name vm01` on a warm pool),
- invocations per second with 4 concurrent clients (4 client processes, one pool each),
- the cost of opening a runspace pool (on a warm connection, and on a fresh one including TLS),
- the server's RSS with 20 hosts x 50 VMs.
Aims (issue 3): median < 10 ms, >= 100 invocations/s, < 500 MB.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from tests.support.hvsim_env import host, lab_config_dict, serve_process, to_toml

PASSWORD = "P@ssw0rd!"


def _serve(raw: dict[str, Any], state_dir: Path) -> subprocess.Popen[str]:
    config = state_dir / "bench.toml"
    config.write_text(to_toml(raw))
    return serve_process(config, state_dir / "state")[0]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.communicate(timeout=60)


def _kwargs(entry: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    return {
        "server": entry["address"],
        "port": entry["winrm_port"],
        "auth": "basic",
        "username": "Administrator",
        "password": PASSWORD,
        "cert_validation": str(state_dir / "state" / "winrm-ca.pem"),
    }


def _invoke(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "vm01")
    if len(ps.invoke()) != 1:
        raise RuntimeError("Get-VM returned an unexpected result")


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _client_worker(kwargs: dict[str, Any], seconds: float, start_at: float) -> int:
    with WSMan(**kwargs) as wsman, RunspacePool(wsman) as pool:
        _invoke(pool)
        while time.time() < start_at:
            time.sleep(0.001)
        done, end = 0, start_at + seconds
        while time.time() < end:
            _invoke(pool)
            done += 1
        return done


def bench_latency_and_throughput(runs: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hvsim-bench-") as tmp:
        entry = host(
            "bench1.contoso.com",
            "127.40.0.11",
            vms=[f"vm{i:02d}" for i in range(1, 11)],
            users={"Administrator": PASSWORD},
        )
        process = _serve(lab_config_dict(entry), Path(tmp))
        try:
            kwargs = _kwargs(entry, Path(tmp))
            results: dict[str, float] = {}
            with WSMan(**kwargs) as wsman, RunspacePool(wsman) as pool:
                for _ in range(20):
                    _invoke(pool)
                samples = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    _invoke(pool)
                    samples.append((time.perf_counter() - t0) * 1000)
                results["invoke_median_ms"] = statistics.median(samples)
                results["invoke_p95_ms"] = _percentile(samples, 95)

                opens = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    extra = RunspacePool(wsman)
                    extra.open()
                    opens.append((time.perf_counter() - t0) * 1000)
                    extra.close()
                results["pool_open_warm_median_ms"] = statistics.median(opens)
            fresh = []
            for _ in range(10):
                t0 = time.perf_counter()
                with WSMan(**kwargs) as wsman, RunspacePool(wsman):
                    fresh.append((time.perf_counter() - t0) * 1000)
            results["pool_open_fresh_connection_median_ms"] = statistics.median(fresh)

            start_at = time.time() + 2.0
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(4) as workers:
                counts = workers.starmap(_client_worker, [(kwargs, seconds, start_at)] * 4)
            results["invocations_per_s_4_clients"] = sum(counts) / seconds
            return results
        finally:
            _stop(process)


def bench_rss(hosts: int, vms: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hvsim-bench-") as tmp:
        entries = [
            host(
                f"hv{i:02d}.contoso.com",
                f"127.41.{i // 200}.{i % 200 + 10}",
                vms=[f"vm{j:02d}" for j in range(vms)],
                users={"Administrator": PASSWORD},
            )
            for i in range(hosts)
        ]
        t0 = time.perf_counter()
        process = _serve(lab_config_dict(*entries), Path(tmp))
        started = time.perf_counter() - t0
        try:
            for entry in entries:  # one pool and one invocation per host, so every listener has served
                with WSMan(**_kwargs(entry, Path(tmp))) as wsman, RunspacePool(wsman) as pool:
                    _invoke(pool)
            status = Path(f"/proc/{process.pid}/status").read_text()
            rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            return {"rss_mb_20x50": rss_kb / 1024, "startup_s_20x50": started}
        finally:
            _stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=200, help="sequential invocations for the latency figures"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the 4-client throughput run")
    args = parser.parse_args()
    results = bench_latency_and_throughput(args.runs, args.seconds)
    results.update(bench_rss(20, 50))
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:8.2f}")


if __name__ == "__main__":
    main()
