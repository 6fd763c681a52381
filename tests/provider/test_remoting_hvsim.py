"""The remoting layer against hvsim over HTTPS with TLS verification: one pool per host shared by threads,
re-opened after the host drops it, transient faults retried inside a deadline, failures typed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hvreplica_provider.remoting import (
    Authentication,
    HostConnection,
    PoolRegistry,
    RetryPolicy,
    Session,
    Transient,
    cmd,
    prop,
)
from hvsim.listener_tls import issue_client_certificate
from tests.provider.support import PRIMARY, REPLICA, Lab, site_certs, two_site_lab

FAST_RETRY = RetryPolicy(deadline_sec=20.0, initial_backoff_sec=0.05, max_backoff_sec=0.2)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("61.0") as lab:
        yield lab


@pytest.fixture
def registry() -> Iterator[PoolRegistry]:
    reg = PoolRegistry()
    yield reg
    reg.close_all()


def session(lab: Lab, registry: PoolRegistry, fqdn: str = PRIMARY, **overrides: object) -> Session:
    conn = HostConnection.from_input(lab.connection(fqdn, **overrides))
    return Session(conn, retry=FAST_RETRY, registry=registry)


def vm_names(s: Session) -> list[str]:
    result = s.run([cmd("Get-VM")])
    result.raise_errors()
    return [str(prop(o, "Name")) for o in result.output]


def test_one_pool_per_host_shared_by_threads(lab: Lab, registry: PoolRegistry) -> None:
    before = {fqdn: lab.counters(fqdn)["pools_opened"] for fqdn in (PRIMARY, REPLICA)}
    errors: list[BaseException] = []
    seen: list[list[str]] = []

    def work(fqdn: str) -> None:
        try:
            s = session(lab, registry, fqdn)
            for _ in range(4):
                seen.append(vm_names(s))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(fqdn,)) for fqdn in (PRIMARY, REPLICA) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(seen) == 32 and ["web01"] in seen and [] in seen
    assert {fqdn: lab.counters(fqdn)["pools_opened"] - before[fqdn] for fqdn in before} == {
        PRIMARY: 1,
        REPLICA: 1,
    }
    assert registry.pools_opened() == 2


def test_several_statements_share_one_pipeline(lab: Lab, registry: PoolRegistry) -> None:
    s = session(lab, registry)
    vm_names(s)  # warm: the pool is open
    before = lab.counters(PRIMARY)["pipelines"]
    result = s.run(
        [cmd("Get-VM")], [cmd("Get-VMReplicationServer")], [cmd("Get-VMReplicationAuthorizationEntry")]
    )
    assert lab.counters(PRIMARY)["pipelines"] - before == 1
    types = [o.types[0] for o in result.output]
    assert "Microsoft.HyperV.PowerShell.VirtualMachine" in types
    assert "Microsoft.HyperV.PowerShell.VMReplicationServer" in types


def test_pool_reopened_after_the_host_drops_it(lab: Lab, registry: PoolRegistry) -> None:
    s = session(lab, registry)
    assert vm_names(s) == ["web01"]
    assert lab.emu.restart_vmms(PRIMARY) >= 1
    assert vm_names(s) == ["web01"]
    assert registry.pools_opened() == 2


def test_wsman_500_faults_and_dropped_connections_are_retried(lab: Lab, registry: PoolRegistry) -> None:
    s = session(lab, registry)
    vm_names(s)
    try:
        lab.emu.inject_fault(PRIMARY, "http500", 2)
        assert vm_names(s) == ["web01"]
        lab.emu.inject_fault(PRIMARY, "drop-nth", 1)
        assert vm_names(s) == ["web01"]
    finally:
        lab.emu.clear_faults(PRIMARY)


def test_transient_faults_give_up_at_the_deadline(
    lab: Lab, registry: PoolRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = HostConnection.from_input(lab.connection(PRIMARY))
    sleeps: list[float] = []
    s = Session(
        conn,
        retry=RetryPolicy(deadline_sec=0.5, initial_backoff_sec=0.1, max_backoff_sec=0.2),
        registry=registry,
        sleep=lambda seconds: sleeps.append(seconds) or time.sleep(seconds),
    )
    try:
        lab.emu.inject_fault(PRIMARY, "http500", 1000)
        with pytest.raises(Transient) as caught:
            vm_names(s)
    finally:
        lab.emu.clear_faults(PRIMARY)
    assert "retry_deadline_sec is 0.5" in str(caught.value) and "0x800705AA" in str(caught.value)
    assert sleeps[:2] == [0.1, 0.2]
    # one line per retry, naming the endpoint, auth method and user (issue 8 #10)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(sleeps) and all("(auth basic, user Administrator)" in line for line in lines)


def test_wrong_password_is_an_authentication_error_not_retried(lab: Lab, registry: PoolRegistry) -> None:
    before = lab.counters(PRIMARY)["http_requests"]
    s = session(lab, registry, password="not-the-password")
    with pytest.raises(Authentication) as caught:
        vm_names(s)
    assert "not-the-password" not in str(caught.value)
    assert "connection.password" in str(caught.value)
    assert lab.counters(PRIMARY)["http_requests"] - before <= 1


def test_tls_verification_against_the_wrong_ca_fails_clearly(lab: Lab, registry: PoolRegistry) -> None:
    s = session(lab, registry, ca_cert_pem=site_certs(PRIMARY).ca_pem)
    with pytest.raises(Authentication) as caught:
        vm_names(s)
    assert "ca_cert_pem" in str(caught.value)


def test_timeouts_share_the_pool_credentials_get_their_own(lab: Lab, registry: PoolRegistry) -> None:
    vm_names(session(lab, registry))
    vm_names(session(lab, registry, read_timeout_sec=45, connect_timeout_sec=3))
    assert registry.pools_opened() == 1
    vm_names(session(lab, registry, verify_tls=False))
    assert registry.pools_opened() == 2


def test_ca_bundle_for_pypsrp_never_touches_the_disk(lab: Lab, registry: PoolRegistry) -> None:
    """Issue 8 #9: the CA bundle and client key pypsrp reads by path are anonymous memory files (Linux)."""
    s = session(lab, registry)
    vm_names(s)
    pool = registry.entry(s.conn).pool
    assert pool is not None and pool.files.directory is None
    registry.close_all()


def test_certificate_auth_with_client_cert_and_key_from_pem(
    lab: Lab, registry: PoolRegistry, tmp_path: Path
) -> None:
    paths = issue_client_certificate(
        lab.emu.state_dir, "Administrator", tmp_path / "c.pem", tmp_path / "c.key"
    )
    overrides = {
        "auth": "certificate",
        "username": None,
        "password": None,
        "client_cert_pem": Path(paths.cert).read_text(),
        "client_key_pem": Path(paths.key).read_text(),
    }
    conn = HostConnection.from_input(lab.connection(PRIMARY, **overrides))
    assert conn.problems() == []
    s = Session(conn, retry=FAST_RETRY, registry=registry)
    assert vm_names(s) == ["web01"]
    pool = registry.entry(conn).pool
    assert pool is not None and pool.files.directory is None


def test_max_concurrent_operations_bounds_pipelines_per_host(lab: Lab, registry: PoolRegistry) -> None:
    """With one slot, three threads' pipelines run one after another: at least 3 x (Command + Receive)."""
    latency_ms = 150
    s = session(lab, registry, max_concurrent_operations=1)
    vm_names(s)  # pool open before the clock starts
    lab.emu.inject_fault(PRIMARY, "latency", latency_ms)
    try:
        threads = [threading.Thread(target=vm_names, args=(s,)) for _ in range(3)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        lab.emu.clear_faults(PRIMARY)
    assert elapsed >= 3 * 2 * latency_ms / 1000
