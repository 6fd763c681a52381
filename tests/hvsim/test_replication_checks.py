"""Replication checked for real (DESIGN §5, seed-scenario.md): two hosts in untrusted domains prepared
through the real cmdlets (hosts file, PFX and roots in the stores, DisableCertRevocationCheck, firewall,
replica server, authorization entry), replicating with certificates; one failing test per check, each
naming what failed and carrying the Windows code; Kerberos only within a domain or across a configured trust.

Every check runs inside hvsim: name resolution from the primary's own hosts file, a real mutual TLS handshake
in memory between the certificates in the emulated stores, the replica's firewall, listener and entries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from psrpcore.types import ErrorCategory

from hvreplica_provider import pki
from tests.support.certs import SERVER_AUTH, Issued, make_host_cert
from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import (
    HTTP_RULE,
    HTTPS_RULE,
    PFX_PASSWORD,
    REPLICATION_KEY,
    HostSession,
    add_hosts_entry,
    disable_revocation_check,
    import_pfx,
    make_kerberos_replica,
    props,
    replication_state,
    sessions,
    trust_root,
    wait_for,
)

P, R = "hv1.contoso.com", "hv2.fabrikam.com"  # untrusted domains: certificates only
K = "hv3.contoso.com"  # the primary's own domain: Kerberos works
T = "hv4.northwind.net"  # a domain with a configured trust to contoso.com
ADDRESSES = {P: "127.64.0.1", R: "127.64.0.2", K: "127.64.0.3", T: "127.64.0.4"}


@dataclass
class Lab:
    p: HostSession
    r: HostSession
    k: HostSession
    t: HostSession
    p_ca: Issued
    r_ca: Issued
    p_thumbprint: str
    r_thumbprint: str
    r_pfx: bytes

    def certificate(self, **overrides: object) -> dict[str, object]:
        return {
            "ReplicaServerName": R,
            "ReplicaServerPort": 443,
            "AuthenticationType": "Certificate",
            "CertificateThumbprint": self.p_thumbprint,
            **overrides,
        }


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    config = lab_config(
        host(P, ADDRESSES[P], vms=["web01", "sql01", "k01", "t01", "seed01"]),
        host(R, ADDRESSES[R]),
        host(K, ADDRESSES[K]),
        host(T, ADDRESSES[T]),
        domains=[{"name": "northwind.net", "trusts": ["contoso.com"]}],
        time_scale=3600.0,
    )
    # The happy path uses the product's own PKI (RSA 2048 to keep the test fast, legacy PFX encryption).
    now = dt.datetime.now(dt.UTC)
    cas = {d: pki.create_ca(pki.Subject(f"{d} Lab CA"), 2048, 3650, now) for d in ("Contoso", "Fabrikam")}
    with running_lab(config) as emulator, sessions(emulator, P, R, K, T) as s:
        p, r = s[P], s[R]
        thumbprints, pfxs = {}, {}
        for session, fqdn, ca in ((p, P, cas["Contoso"]), (r, R, cas["Fabrikam"])):
            ca_cert, ca_key = pki.load_certificate(ca.cert_pem), pki.load_private_key(ca.private_key_pem)
            leaf = pki.issue_host_certificate(ca_cert, ca_key, fqdn, [], 2048, 365, now)
            pfx = pki.export_pfx(leaf.cert_pem, leaf.private_key_pem, PFX_PASSWORD, "legacy", fqdn)
            thumbprints[fqdn], pfxs[fqdn] = import_pfx(session, pfx), pfx
        for session in (p, r):
            for ca in cas.values():
                trust_root(session, ca.cert_pem.encode())
            disable_revocation_check(session)
        add_hosts_entry(p, ADDRESSES[R], R)  # fabrikam.com is not in contoso's DNS
        add_hosts_entry(r, ADDRESSES[P], P)
        r.ok(
            "Set-VMReplicationServer",
            "Force",
            ReplicationEnabled=True,
            AllowedAuthenticationType="CertificateAndKerberos",
            CertificateThumbprint=thumbprints[R],
            KerberosAuthenticationPort=80,
            CertificateAuthenticationPort=443,
        )
        r.ok(
            "New-VMReplicationAuthorizationEntry",
            AllowedPrimaryServer=P,
            ReplicaStorageLocation="D:\\Replica",
            TrustGroup="site-a",
        )
        r.ok("Enable-NetFirewallRule", Name=HTTPS_RULE)
        r.ok("Enable-NetFirewallRule", Name=HTTP_RULE)
        make_kerberos_replica(s[K], P, "D:\\Replica")
        make_kerberos_replica(s[T], P, "D:\\Replica")
        add_hosts_entry(p, ADDRESSES[T], T)
        p_ca, r_ca = (Issued.from_pem(c.cert_pem, c.private_key_pem) for c in cas.values())
        yield Lab(p, r, s[K], s[T], p_ca, r_ca, thumbprints[P], thumbprints[R], pfxs[R])


def connection_error(lab: Lab, **overrides: object) -> str:
    """Run Test-VMReplicationConnection on the primary, expecting one failure, and return its message.
    Every failed check is a failed VMMS job to the cmdlet: OperationFailed, category NotSpecified
    (ExceptionHelper.cs), written as a non-terminating error."""
    outcome = lab.p.run("Test-VMReplicationConnection", **lab.certificate(**overrides))
    assert outcome.output == [] and not outcome.had_errors
    assert (
        outcome.error.fq_error
        == "OperationFailed,Microsoft.HyperV.PowerShell.Commands.TestVMReplicationConnection"
    )
    assert ErrorCategory(outcome.error.category).name == "NotSpecified"
    return str(outcome.error)


def test_certificate_connection_succeeds(lab: Lab) -> None:
    assert lab.p.ok("Test-VMReplicationConnection", **lab.certificate()) == [
        f"Connection to replica server '{R}' on port 443 using Certificate authentication was successful."
    ]


def test_happy_path_across_untrusted_domains(lab: Lab) -> None:
    enabled = lab.p.ok(
        "Enable-VMReplication",
        "Passthru",
        VMName="web01",
        RecoveryHistory=4,
        VSSSnapshotFrequencyHour=2,
        ReplicationFrequencySec=30,
        **lab.certificate(),
    )
    assert str(props(enabled[0])["ReplicationState"]) == "ReadyForInitialReplication"
    assert replication_state(lab.r, "web01") == ("WaitingForInitialReplication", "Warning")
    lab.p.ok("Start-VMInitialReplication", VMName="web01")

    wait_for(
        lambda: replication_state(lab.p, "web01") == ("Replicating", "Normal"), "primary Replicating/Normal"
    )
    wait_for(
        lambda: replication_state(lab.r, "web01") == ("Replicating", "Normal"), "replica Replicating/Normal"
    )
    assert props(lab.p.ok("Get-VMReplication", VMName="web01")[0])["LastReplicationTime"] is not None

    def point_kinds() -> set[str]:
        return {str(props(s)["SnapshotType"]) for s in lab.r.ok("Get-VMSnapshot", VMName="web01")}

    # Hourly points, every second one application-consistent (VSSSnapshotFrequencyHour 2).
    wait_for(lambda: point_kinds() == {"Replica", "AppConsistentReplica"}, "both kinds of recovery points")
    replica_points = lab.r.ok("Get-VMSnapshot", VMName="web01", SnapshotType="Replica")
    assert all(props(s)["Name"].startswith("web01 - Standard Replica - (") for s in replica_points)
    assert len(lab.r.ok("Get-VMSnapshot", VMName="web01")) <= 4  # RecoveryHistory bounds them
    stats = wait_for(
        lambda: [
            m
            for m in lab.p.ok("Measure-VMReplication", VMName="web01")
            if props(m)["SuccessfulReplicationCount"] > 0
        ],
        "a counted replication cycle",
    )
    assert props(stats[0])["AverageReplicationSize"] > 0
    # §3.3: once replicating, initial replication can neither start again nor be stopped.
    for cmdlet in ("Start-VMInitialReplication", "Stop-VMInitialReplication"):
        assert "in the current replication state" in str(lab.p.run(cmdlet, VMName="web01").error)


def test_closing_the_firewall_later_breaks_cycles_until_reopened(lab: Lab) -> None:
    lab.p.ok("Enable-VMReplication", VMName="sql01", ReplicationFrequencySec=30, **lab.certificate())
    lab.p.ok("Start-VMInitialReplication", VMName="sql01")
    wait_for(lambda: replication_state(lab.p, "sql01")[0] == "Replicating", "sql01 Replicating")
    lab.r.ok("Disable-NetFirewallRule", Name=HTTPS_RULE)
    try:
        wait_for(lambda: replication_state(lab.p, "sql01") == ("Error", "Critical"), "Error/Critical")
        details = props(lab.p.ok("Measure-VMReplication", VMName="sql01")[0])["ReplicationHealthDetails"]
        assert "firewall" in details[0] and "0x00002EE2" in details[0]
    finally:
        lab.r.ok("Enable-NetFirewallRule", Name=HTTPS_RULE)
    wait_for(
        lambda: replication_state(lab.p, "sql01")[0] == "Replicating", "recovery after the firewall reopened"
    )


def test_enable_fails_without_creating_anything(lab: Lab) -> None:
    outcome = lab.p.run(
        "Enable-VMReplication", VMName="k01", **lab.certificate(ReplicaServerName="hv9.fabrikam.com")
    )
    assert "name resolution" in str(outcome.error) and "0x00002EE7" in str(outcome.error)
    assert (
        outcome.error.fq_error == "OperationFailed,Microsoft.HyperV.PowerShell.Commands.EnableVMReplication"
    )
    assert str(props(lab.p.ok("Get-VM", Name="k01")[0])["ReplicationMode"]) == "None"
    assert lab.r.run("Get-VM", Name="k01").error.fq_error.startswith("InvalidParameter,")


def test_name_not_resolvable(lab: Lab) -> None:
    message = connection_error(lab, ReplicaServerName="hv9.fabrikam.com")
    assert "name resolution check failed" in message and "0x00002EE7" in message
    assert "hosts file" in message


def test_wrong_name(lab: Lab) -> None:
    # Another name for the replica's address: the replica's certificate does not cover it.
    add_hosts_entry(lab.p, ADDRESSES[R], "replica.fabrikam.com")
    message = connection_error(lab, ReplicaServerName="replica.fabrikam.com")
    assert "certificate name check failed" in message and "does not match" in message
    assert "0x800B010F" in message


def test_untrusted_ca(lab: Lab) -> None:
    root = f"Cert:\\LocalMachine\\Root\\{lab.r_ca.thumbprint}"
    lab.p.ok("Remove-Item", Path=root)
    try:
        message = connection_error(lab)
    finally:
        trust_root(lab.p, lab.r_ca.cert_pem)
    assert "certificate trust check failed" in message and "0x800B0109" in message
    assert "as verified by 'hv1.contoso.com'" in message
    assert "LocalMachine\\Root" in message


def test_replica_does_not_trust_the_primary_ca(lab: Lab) -> None:
    lab.r.ok("Remove-Item", Path=f"Cert:\\LocalMachine\\Root\\{lab.p_ca.thumbprint}")
    try:
        message = connection_error(lab)
    finally:
        trust_root(lab.r, lab.p_ca.cert_pem)
    assert "as verified by the replica 'hv2.fabrikam.com'" in message and "0x800B0109" in message


def test_expired_certificate(lab: Lab) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = make_host_cert(
        lab.p_ca, P, not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=1)
    )
    message = connection_error(lab, CertificateThumbprint=import_pfx(lab.p, expired.pfx(PFX_PASSWORD)))
    assert "primary certificate validity check failed" in message and "0x800B0101" in message


def test_missing_client_authentication_eku(lab: Lab) -> None:
    server_only = make_host_cert(lab.p_ca, P, ekus=(SERVER_AUTH,))
    message = connection_error(lab, CertificateThumbprint=import_pfx(lab.p, server_only.pfx(PFX_PASSWORD)))
    assert "primary certificate usage (EKU) check failed" in message and "0x800B0110" in message
    assert "Client Authentication" in message


def test_revocation_not_disabled(lab: Lab) -> None:
    lab.p.ok("Remove-ItemProperty", Path=REPLICATION_KEY, Name="DisableCertRevocationCheck")
    try:
        message = connection_error(lab)
    finally:
        disable_revocation_check(lab.p)
    assert "certificate revocation check failed" in message and "0x80092013" in message
    assert "DisableCertRevocationCheck" in message


def test_firewall_closed(lab: Lab) -> None:
    lab.r.ok("Disable-NetFirewallRule", Name=HTTPS_RULE)
    try:
        message = connection_error(lab)
    finally:
        lab.r.ok("Enable-NetFirewallRule", Name=HTTPS_RULE)
    assert "firewall check failed" in message and HTTPS_RULE in message and "0x00002EE2" in message


def test_no_authorization_entry(lab: Lab) -> None:
    lab.r.ok("Remove-VMReplicationAuthorizationEntry", AllowedPrimaryServer=P)
    try:
        message = connection_error(lab)
    finally:
        lab.r.ok(
            "New-VMReplicationAuthorizationEntry",
            AllowedPrimaryServer=P,
            ReplicaStorageLocation="D:\\Replica",
            TrustGroup="site-a",
        )
    assert "authorization check failed" in message and "0x80070005" in message


def test_replica_listener_port_mismatch(lab: Lab) -> None:
    lab.r.ok("Set-VMReplicationServer", CertificateAuthenticationPort=8443, KerberosAuthenticationPort=80)
    try:
        message = connection_error(lab)
    finally:
        lab.r.ok("Set-VMReplicationServer", CertificateAuthenticationPort=443, KerberosAuthenticationPort=80)
    assert "replica server settings check failed" in message and "port 8443" in message


def test_kerberos_across_untrusted_domains(lab: Lab) -> None:
    outcome = lab.p.run(
        "Test-VMReplicationConnection",
        ReplicaServerName=R,
        ReplicaServerPort=80,
        AuthenticationType="Kerberos",
    )
    message = str(outcome.error)
    assert "Kerberos authentication check failed" in message and "0x80090303" in message
    assert ErrorCategory(outcome.error.category).name == "NotSpecified"


def test_kerberos_within_the_domain_replicates(lab: Lab) -> None:
    lab.p.ok(
        "Enable-VMReplication",
        VMName="k01",
        ReplicaServerName=K,
        ReplicaServerPort=80,
        AuthenticationType="Kerberos",
    )
    lab.p.ok("Start-VMInitialReplication", VMName="k01")
    wait_for(
        lambda: replication_state(lab.k, "k01") == ("Replicating", "Normal"), "k01 replicated within contoso"
    )


def test_kerberos_across_a_configured_trust(lab: Lab) -> None:
    assert lab.p.ok(
        "Test-VMReplicationConnection",
        ReplicaServerName=T,
        ReplicaServerPort=80,
        AuthenticationType="Kerberos",
    )
    # The trust does not help a host without a hosts entry: northwind.net is not in contoso's DNS.
    unresolved = lab.k.run(
        "Test-VMReplicationConnection",
        ReplicaServerName=T,
        ReplicaServerPort=80,
        AuthenticationType="Kerberos",
    )
    assert "0x00002EE7" in str(unresolved.error)


def test_changing_the_replica_server_is_a_new_target(lab: Lab) -> None:
    kerberos = {"ReplicaServerPort": 80, "AuthenticationType": "Kerberos"}
    lab.p.ok("Enable-VMReplication", VMName="t01", ReplicaServerName=K, **kerberos)
    unreachable = lab.p.run("Set-VMReplication", VMName="t01", ReplicaServerName="hv9.northwind.net")
    assert "name resolution check failed" in str(unreachable.error)
    moved = props(lab.p.ok("Set-VMReplication", "Passthru", VMName="t01", ReplicaServerName=T)[0])
    assert (moved["ReplicaServerName"], str(moved["ReplicationState"])) == (T, "ReadyForInitialReplication")
    assert replication_state(lab.t, "t01")[0] == "WaitingForInitialReplication"
    assert replication_state(lab.k, "t01")[0] == "WaitingForInitialReplication"  # the old replica VM stays


def test_exported_initial_replication_completes_after_import(lab: Lab) -> None:
    lab.p.ok(
        "Enable-VMReplication",
        VMName="seed01",
        ReplicaServerName=K,
        ReplicaServerPort=80,
        AuthenticationType="Kerberos",
    )
    exported = props(
        lab.p.ok(
            "Start-VMInitialReplication", "Passthru", VMName="seed01", DestinationPath="C:\\Windows\\Temp"
        )[0]
    )
    assert str(exported["ReplicationState"]) == "InitialReplicationInProgress"
    folder = f"seed01_{str(exported['VMId']).upper()}"  # <VMName>_<VMId>, as Hyper-V names the export
    assert lab.p.ok("Test-Path", Path=f"C:\\Windows\\Temp\\{folder}") == [True]
    media = f"C:\\Media\\{folder}"
    absent = lab.k.run("Import-VMInitialReplication", VMName="seed01", Path=media)
    assert absent.error.fq_error.startswith("ObjectNotFound,") and media in str(absent.error)
    lab.k.ok("New-Item", Path=media, ItemType="Directory")  # the media carried to the replica
    assert replication_state(lab.p, "seed01")[0] == "InitialReplicationInProgress"  # nothing without import
    lab.k.ok("Import-VMInitialReplication", VMName="seed01", Path=media)
    wait_for(
        lambda: replication_state(lab.p, "seed01") == ("Replicating", "Normal"), "IR done after the import"
    )
    again = lab.k.run("Import-VMInitialReplication", VMName="seed01", Path=media)
    assert "in the current replication state" in str(again.error)


def test_replica_certificate_missing_from_its_store(lab: Lab) -> None:
    lab.r.ok("Remove-Item", Path=f"Cert:\\LocalMachine\\My\\{lab.r_thumbprint}")
    try:
        message = connection_error(lab)
    finally:
        assert import_pfx(lab.r, lab.r_pfx) == lab.r_thumbprint
    assert "replica certificate check failed" in message and "0x80092004" in message
