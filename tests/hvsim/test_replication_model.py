"""The replication model below the cmdlets: hosts-file parsing and per-host resolution, authorization entry
matching, the in-memory mutual TLS handshake, the emulated clock, health rules, recovery points and
persistence of the Hyper-V model."""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from hvsim.config import parse_config
from hvsim.hyperv import AuthorizationEntry, HyperVHost, Replication, ReplicationSettings, ReplicationStats
from hvsim.lab import Lab
from hvsim.network import (
    CERT_E_CN_NO_MATCH,
    CERT_E_UNTRUSTEDROOT,
    CERT_E_WRONG_USAGE,
    CRYPT_E_REVOCATION_OFFLINE,
    ERROR_WINHTTP_NAME_NOT_RESOLVED,
    ReplicationCheckError,
    TlsEndpoint,
    check_connection,
    mutual_tls_handshake,
    parse_hosts_file,
    resolve,
)
from hvsim.scheduler import (
    EmulatedClock,
    Scheduler,
    add_recovery_point,
    recovery_point_due,
    refresh_health,
    windows_timestamp,
)
from hvsim.windows import HOSTS_FILE, REPLICATION_KEY, StoredCertificate
from tests.support.certs import CLIENT_AUTH, Issued, make_ca, make_host_cert

NOW = dt.datetime(2026, 11, 28, 13, 5, 9, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    config = parse_config(
        {
            "host": [
                {"fqdn": "hv1.contoso.com", "address": "127.65.0.1"},
                {"fqdn": "hv2.contoso.com", "address": "127.65.0.2"},
                {"fqdn": "hv3.fabrikam.com", "address": "127.65.0.3"},
            ]
        }
    )
    with tempfile.TemporaryDirectory(prefix="hvsim-model-") as state:
        yield Lab(config, state)


def test_parse_hosts_file() -> None:
    text = "# comment\r\n127.0.0.5  a.example  b.example # tail\r\n\r\n127.0.0.6 A.example\r\nbroken\r\n"
    assert parse_hosts_file(text) == {"a.example": "127.0.0.5", "b.example": "127.0.0.5"}


def test_resolution_uses_hosts_file_then_own_domain_only(lab: Lab) -> None:
    hv1 = lab.host("hv1.contoso.com")
    assert resolve(lab, hv1, "hv2.contoso.com") == "127.65.0.2"
    assert resolve(lab, hv1, "HV2") == "127.65.0.2"  # the primary DNS suffix completes a short name
    with pytest.raises(ReplicationCheckError) as failure:
        resolve(lab, hv1, "hv3.fabrikam.com")
    assert failure.value.code == ERROR_WINHTTP_NAME_NOT_RESOLVED and failure.value.check == "name resolution"
    hosts = hv1.files.read_text(HOSTS_FILE) or ""
    hv1.files.write(
        HOSTS_FILE, (hosts + "127.65.0.3 hv3.fabrikam.com\r\n127.65.0.9 hv2.contoso.com\r\n").encode()
    )
    try:
        assert resolve(lab, hv1, "hv3.fabrikam.com") == "127.65.0.3"
        assert resolve(lab, hv1, "hv2.contoso.com") == "127.65.0.9"  # the hosts file wins over DNS
        with pytest.raises(ReplicationCheckError):
            resolve(
                lab, lab.host("hv2.contoso.com"), "hv3.fabrikam.com"
            )  # another host's file does not count
    finally:
        hv1.files.write(HOSTS_FILE, hosts.encode())


def test_authorization_entry_matching() -> None:
    hyperv = HyperVHost("HV")
    hyperv.authorization_entries = [
        AuthorizationEntry("*.contoso.com", "D:\\Any", "g"),
        AuthorizationEntry("hv1.contoso.com", "D:\\One", "g"),
    ]
    assert hyperv.authorizing_entry("HV1.contoso.com").replica_storage_location == "D:\\One"
    assert hyperv.authorizing_entry("deep.hv9.contoso.com").replica_storage_location == "D:\\Any"
    assert hyperv.authorizing_entry("contoso.com") is None
    assert hyperv.authorizing_entry("hv1.fabrikam.com") is None
    assert AuthorizationEntry("*", "D:\\", "DEFAULT").matches("anything.example")


def _endpoint(issued: Issued, roots: list[Issued], revocation: bool = False) -> TlsEndpoint:
    return TlsEndpoint(issued.cert_pem, issued.key_pem, b"".join(r.cert_pem for r in roots), revocation)


def test_handshake_each_side_uses_its_own_root_store() -> None:
    ca_a, ca_b = make_ca("A", key_slot=2), make_ca("B", key_slot=3)
    a, b = make_host_cert(ca_a, "a.one.test"), make_host_cert(ca_b, "b.two.test", key_slot=5)
    assert mutual_tls_handshake(_endpoint(a, [ca_a, ca_b]), _endpoint(b, [ca_a, ca_b]), "b.two.test") is None
    primary_only = mutual_tls_handshake(_endpoint(a, [ca_a]), _endpoint(b, [ca_a, ca_b]), "b.two.test")
    assert (primary_only.side, primary_only.code) == ("primary", CERT_E_UNTRUSTEDROOT)
    replica_only = mutual_tls_handshake(_endpoint(a, [ca_a, ca_b]), _endpoint(b, [ca_b]), "b.two.test")
    assert (replica_only.side, replica_only.code) == ("replica", CERT_E_UNTRUSTEDROOT)
    revoked = mutual_tls_handshake(_endpoint(a, [ca_a, ca_b]), _endpoint(b, [ca_a, ca_b], True), "b.two.test")
    assert (revoked.side, revoked.code) == ("replica", CRYPT_E_REVOCATION_OFFLINE)


def test_handshake_names_and_usages() -> None:
    ca = make_ca("C", key_slot=2)
    client = make_host_cert(ca, "p.test")
    cn_only = make_host_cert(ca, "r.test", dns_names=(), key_slot=5)
    assert mutual_tls_handshake(_endpoint(client, [ca]), _endpoint(cn_only, [ca]), "r.test") is None
    wildcard = make_host_cert(ca, "*.zone.test", key_slot=5)
    assert mutual_tls_handshake(_endpoint(client, [ca]), _endpoint(wildcard, [ca]), "r.zone.test") is None
    san = make_host_cert(ca, "r.test", dns_names=("other.test",), key_slot=5)  # a SAN hides the CN
    assert (
        mutual_tls_handshake(_endpoint(client, [ca]), _endpoint(san, [ca]), "r.test").code
        == CERT_E_CN_NO_MATCH
    )
    client_only = make_host_cert(ca, "r.test", ekus=(CLIENT_AUTH,), key_slot=5)
    failure = mutual_tls_handshake(_endpoint(client, [ca]), _endpoint(client_only, [ca]), "r.test")
    assert (failure.side, failure.code) == ("primary", CERT_E_WRONG_USAGE)


def test_emulated_clock_scales_and_never_runs_backwards() -> None:
    clock = EmulatedClock(3600.0)
    first = clock.now()
    time.sleep(0.01)
    assert clock.now() - first >= dt.timedelta(seconds=30)
    clock.advance(86400)
    assert clock.now() - first >= dt.timedelta(days=1)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    resumed = EmulatedClock.from_dict({"now": future.isoformat()}, 1.0)
    assert resumed.now() >= future
    with pytest.raises(ValueError):
        EmulatedClock(0)


def test_scheduler_keeps_a_failing_tick_and_goes_on() -> None:
    ticks: list[dt.datetime] = []
    seen = threading.Event()

    def tick(now: dt.datetime) -> None:
        ticks.append(now)
        if len(ticks) >= 3:
            seen.set()
        raise RuntimeError("model bug")

    scheduler = Scheduler(EmulatedClock(1.0), tick)
    scheduler.start()
    try:
        assert seen.wait(5)
    finally:
        scheduler.stop()
    assert isinstance(scheduler.last_error, RuntimeError) and not scheduler.running


def _replication(mode: str = "Primary", history: int = 2) -> Replication:
    return Replication(
        mode=mode,
        state="Replicating",
        health="Normal",
        primary_server_name="p",
        settings=ReplicationSettings("r", 443, "Certificate", recovery_history=history),
        stats=ReplicationStats(monitoring_start=NOW - dt.timedelta(hours=2)),
        last_replication_time=NOW,
    )


def test_health_rules() -> None:
    rep = _replication()
    rep.stats.successful, rep.stats.missed = 8, 2
    refresh_health(rep, NOW)
    assert (rep.health, rep.health_details) == ("Normal", [])
    rep.stats.missed = 3  # 3 of 11 > 20 %
    refresh_health(rep, NOW)
    assert rep.health == "Warning" and "missed" in rep.health_details[0]
    rep.stats.missed = 0
    refresh_health(rep, NOW + dt.timedelta(minutes=61))
    assert rep.health == "Warning" and "hour" in rep.health_details[0]
    rep.state = "Suspended"
    refresh_health(rep, NOW)
    assert rep.health == "Warning"
    replica = _replication("Replica")
    replica.state = "Suspended"
    refresh_health(replica, NOW)
    assert replica.health == "Critical"  # paused on the replica


def test_recovery_points_are_hourly_and_bounded() -> None:
    hyperv = HyperVHost("R")
    vm = hyperv.add_vm("app01")
    vm.replication = _replication("Replica", history=2)
    made = []
    for minutes in (0, 30, 61, 125, 150, 190):
        at = NOW + dt.timedelta(minutes=minutes)
        if recovery_point_due(vm, at):
            add_recovery_point(vm, at, app_consistent=minutes == 190)
            made.append(minutes)
    assert made == [0, 61, 125, 190]
    assert [p.creation_time - NOW for p in vm.recovery_points] == [
        dt.timedelta(minutes=125),
        dt.timedelta(minutes=190),
    ]
    assert [p.snapshot_type for p in vm.recovery_points] == ["Replica", "AppConsistentReplica"]
    assert vm.recovery_points[0].name.startswith("app01 - Standard Replica - (")
    assert vm.recovery_points[-1].name.startswith("app01 - Application-consistent Replica - (")
    vm.replication.settings.recovery_history = 0
    assert not recovery_point_due(vm, NOW + dt.timedelta(days=1))
    assert windows_timestamp(NOW) == "11/28/2026 - 1:05:09 PM"


def test_hyperv_model_round_trip() -> None:
    hyperv = HyperVHost("HV1")
    vm = hyperv.add_vm("web01", now=NOW)
    vm.replication = _replication()
    add_recovery_point(vm, NOW, app_consistent=False)
    hyperv.authorization_entries.append(AuthorizationEntry("*", "D:\\R", "DEFAULT"))
    hyperv.server.replication_enabled = True
    restored = HyperVHost.from_dict(hyperv.to_dict())
    assert restored == hyperv


def test_connection_check_sends_the_intermediates_a_host_holds(lab: Lab) -> None:
    """hv2 serves a certificate issued by an intermediate CA; hv1 trusts only the root, so the check passes
    only once hv2 holds the intermediate in LocalMachine\\CA (and sends it, as schannel does)."""
    root = make_ca("Model Root", key_slot=2)
    intermediate = make_ca("Model Issuing CA", key_slot=3, issuer=root)
    hv1, hv2 = lab.host("hv1.contoso.com"), lab.host("hv2.contoso.com")
    p_cert = make_host_cert(root, hv1.fqdn)
    r_cert = make_host_cert(intermediate, hv2.fqdn, key_slot=5)
    for h, leaf in ((hv1, p_cert), (hv2, r_cert)):
        h.certificates.add("My", StoredCertificate(_der(leaf), leaf.key_pem))
        h.certificates.add("Root", StoredCertificate(_der(root)))
        h.registry.create_key(REPLICATION_KEY)
        h.registry.set_value(REPLICATION_KEY, "DisableCertRevocationCheck", "DWord", 1)
    hv2.hyperv.server.replication_enabled, hv2.hyperv.server.allowed_authentication_type = True, 2
    hv2.hyperv.server.certificate_thumbprint = r_cert.thumbprint
    hv2.hyperv.authorization_entries = [AuthorizationEntry("*.contoso.com", "D:\\R", "g")]
    hv2.firewall.rule("VIRT-HVRHTTPSL-In-TCP-NoScope").enabled = True

    with pytest.raises(ReplicationCheckError) as failure:
        check_connection(lab, hv1, hv2.fqdn, 443, "Certificate", p_cert.thumbprint, lab.now())
    assert failure.value.code == CERT_E_UNTRUSTEDROOT
    hv2.certificates.add("CA", StoredCertificate(_der(intermediate)))
    target = check_connection(lab, hv1, hv2.fqdn, 443, "Certificate", p_cert.thumbprint, lab.now())
    assert (target.host, target.entry.allowed_primary_server) == (hv2, "*.contoso.com")


def _der(issued: Issued) -> bytes:
    return issued.cert.public_bytes(serialization.Encoding.DER)
