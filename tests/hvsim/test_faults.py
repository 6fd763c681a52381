"""Every injected fault kind observed by the real pypsrp client, and the per-host counters."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvsim.server import Emulator
from tests.support.hvsim_env import host, lab_config, running_lab, wsman_kwargs

HV1 = "hv1.contoso.com"
HV2 = "hv2.contoso.com"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    config = lab_config(host(HV1, "127.33.0.11", vms=["web01"]), host(HV2, "127.33.0.12", vms=["db01"]))
    with running_lab(config) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _no_faults_left(emu: Emulator) -> Iterator[None]:
    yield
    emu.clear_faults(HV1)
    emu.clear_faults(HV2)


def _get_vm(pool: RunspacePool, name: str) -> list:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", name)
    return ps.invoke()


def _timed_invoke(pool: RunspacePool) -> float:
    start = time.monotonic()
    _get_vm(pool, "web01")
    return time.monotonic() - start


def test_latency_delays_every_request_of_that_host_only(emu: Emulator) -> None:
    with WSMan(**wsman_kwargs(emu, HV1)) as wsman, RunspacePool(wsman) as pool:
        baseline = min(_timed_invoke(pool) for _ in range(3))
        emu.inject_fault(HV1, "latency", 150)
        slowed = _timed_invoke(pool)
        assert slowed >= 0.3  # an invoke is two requests (Command + Receive), 150 ms each
        with WSMan(**wsman_kwargs(emu, HV2)) as other, RunspacePool(other) as pool2:
            start = time.monotonic()
            _get_vm(pool2, "db01")
            assert time.monotonic() - start < 0.3
        emu.clear_faults(HV1)
        assert _timed_invoke(pool) < baseline + 0.25


def test_drop_nth_request_closes_the_connection(emu: Emulator) -> None:
    with WSMan(**wsman_kwargs(emu, HV1)) as wsman, RunspacePool(wsman) as pool:
        emu.inject_fault(HV1, "drop-nth", 2)  # Command passes, its Receive is dropped
        with pytest.raises(requests.exceptions.ConnectionError):
            _get_vm(pool, "web01")
        # Only that one request was dropped: the pool is still there and answers.
        assert [str(v.adapted_properties["Name"]) for v in _get_vm(pool, "web01")] == ["web01"]


def test_http500_faults_the_next_n_requests(emu: Emulator) -> None:
    with WSMan(**wsman_kwargs(emu, HV1)) as wsman, RunspacePool(wsman) as pool:
        emu.inject_fault(HV1, "http500", 2)
        for _ in range(2):
            with pytest.raises(WSManFaultError) as info:
                _get_vm(pool, "web01")
            assert info.value.code == 2147943850
            assert "insufficient system resources" in info.value.reason
        assert len(_get_vm(pool, "web01")) == 1


def test_restart_vmms_drops_every_pool_of_the_host(emu: Emulator) -> None:
    with (
        WSMan(**wsman_kwargs(emu, HV1)) as wsman,
        RunspacePool(wsman) as pool,
        WSMan(**wsman_kwargs(emu, HV2)) as other,
        RunspacePool(other) as pool2,
    ):
        assert len(_get_vm(pool, "web01")) == 1
        started_before = emu.dump_host(HV1)
        emu.inject_fault(HV1, "restart-vmms")
        with pytest.raises(WSManFaultError) as info:
            _get_vm(pool, "web01")
        assert info.value.code == 0x8033805B
        assert not pool.is_alive()
        assert len(_get_vm(pool2, "db01")) == 1  # the other host kept its pool
        assert emu.sessions(HV1)["shells"] == 0
        assert emu.dump_host(HV1) != started_before
    # A new pool works right away.
    with WSMan(**wsman_kwargs(emu, HV1)) as wsman, RunspacePool(wsman) as pool:
        assert len(_get_vm(pool, "web01")) == 1


def test_counters_count_requests_pipelines_and_pools(emu: Emulator) -> None:
    before = emu.counters(HV2)
    with WSMan(**wsman_kwargs(emu, HV2)) as wsman, RunspacePool(wsman) as pool:
        for _ in range(3):
            _get_vm(pool, "db01")
    after = emu.counters(HV2)
    assert after["pools_opened"] - before["pools_opened"] == 1
    assert after["pipelines"] - before["pipelines"] == 3
    # Create + open Receive(s) + 3 x (Command + Receive) + Delete
    assert after["http_requests"] - before["http_requests"] >= 9


def test_bad_fault_values_are_refused_with_a_clear_error(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="drop-nth needs N >= 1"):
        emu.inject_fault(HV1, "drop-nth", 0)
    with pytest.raises(ValueError, match="needs a value"):
        emu.inject_fault(HV1, "latency")
    with pytest.raises(ValueError):
        emu.inject_fault(HV1, "meteor-strike", 1)
    with pytest.raises(KeyError, match="no emulated host"):
        emu.inject_fault("nope.contoso.com", "latency", 1)
