"""ReplicaServer against two hvsim hosts in untrusted domains over HTTPS with TLS verification on. Results are
checked with plain pypsrp (tests.provider.support.Lab.run), never through the provider's own code."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvreplica_provider import clock, pki
from hvreplica_provider import hyperv as hv
from hvreplica_provider import windows as win
from hvreplica_provider.remoting import REGISTRY, HostConnection, RemoteError, Session
from hvreplica_provider.resources.replica_server import (
    LEDGER,
    HostState,
    Managed,
    ReplicaServerProvider,
    RevocationSetting,
    desired_from,
    read_host,
    reconcile,
    settings_statements,
    undo,
)
from tests.provider.support import (
    PFX_PASSWORD,
    PRIMARY,
    REPLICA,
    Lab,
    prop,
    replica_server_inputs,
    site_certs,
    two_site_lab,
)
from tests.support.hvsim_env import wsman_kwargs

HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"
HTTP_RULE = "VIRT-HVRHTTPL-In-TCP-NoScope"
STORAGE = "D:\\Hyper-V\\Replica"
UPLOAD = "C:\\Windows\\Temp\\foreign-root.cer"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("62.0") as lab:
        yield lab
    REGISTRY.close_all()


def checked(inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs as the engine hands them to create/update: after a clean `check`."""
    result = ReplicaServerProvider().check({}, inputs)
    assert [f.reason for f in result.failures] == []
    return result.inputs


def replica_inputs(lab: Lab, **overrides: Any) -> dict[str, Any]:
    own, partner = site_certs(REPLICA), site_certs(PRIMARY)
    inputs: dict[str, Any] = {
        "connection": lab.connection(REPLICA),
        "fqdn": REPLICA,
        "certificate": own.certificate,
        "trusted_ca_certs": [own.ca_pem, partner.ca_pem],
        "disable_revocation_check": True,
        "allowed_primaries": [{"primary_server": PRIMARY, "storage_location": STORAGE}],
        "hosts_entries": {PRIMARY: lab.addresses[PRIMARY]},
    }
    inputs.update(overrides)
    return checked(inputs)


def thumbprints(lab: Lab, fqdn: str, store: str) -> set[str]:
    return {str(prop(c, "Thumbprint")) for c in lab.run(fqdn, "Get-ChildItem", Path=store)}


def revocation_value(lab: Lab, fqdn: str) -> int | None:
    found = lab.run(fqdn, "Get-ItemProperty", Path=win.REPLICATION_KEY)  # nothing when the key is absent
    value = prop(found[0], win.REVOCATION_VALUE) if found else None
    return None if value is None else int(value)


def rule_enabled(lab: Lab, fqdn: str, name: str) -> bool:
    [rule] = lab.run(fqdn, "Get-NetFirewallRule", Name=name)
    return str(rule.extended_properties["Enabled"]) == "True"  # the 'True'/'False' script property


def hosts_lines(lab: Lab, fqdn: str) -> list[str]:
    # Each line arrives as a string with note properties (PSPath, ReadCount): its value is the property set.
    return [
        line if isinstance(line, str) else str(line.property_sets[0] or "")
        for line in lab.run(fqdn, "Get-Content", Path=win.HOSTS_PATH)
    ]


def server(lab: Lab, fqdn: str) -> Any:
    [srv] = lab.run(fqdn, "Get-VMReplicationServer")
    return srv


def test_lifecycle_create_read_drift_update_password_rotation_delete(lab: Lab) -> None:
    provider = ReplicaServerProvider()
    own, partner = site_certs(REPLICA), site_certs(PRIMARY)
    stock_hosts = hosts_lines(lab, REPLICA)
    assert rule_enabled(lab, REPLICA, HTTP_RULE) is False
    lab.run(REPLICA, "Enable-NetFirewallRule", Name=HTTP_RULE)  # someone else's change: must survive delete

    inputs = replica_inputs(lab)
    created = provider.create(inputs)
    outs = created.outs

    # --- the host, checked directly ---
    assert own.thumbprint in thumbprints(lab, REPLICA, win.MY_STORE)
    root = thumbprints(lab, REPLICA, win.ROOT_STORE)
    assert {own.ca_thumbprint, partner.ca_thumbprint} <= root
    assert revocation_value(lab, REPLICA) == 1
    assert rule_enabled(lab, REPLICA, HTTPS_RULE) is True
    lines = hosts_lines(lab, REPLICA)
    assert lines[: len(stock_hosts)] == stock_hosts
    assert f"{lab.addresses[PRIMARY]} {PRIMARY}" in lines
    srv = server(lab, REPLICA)
    assert prop(srv, "ReplicationEnabled") is True
    assert str(prop(srv, "AllowedAuthenticationType")) == "Certificate"
    assert str(prop(srv, "CertificateThumbprint")) == own.thumbprint
    assert (prop(srv, "CertificateAuthenticationPort"), prop(srv, "KerberosAuthenticationPort")) == (443, 80)
    entries = lab.run(REPLICA, "Get-VMReplicationAuthorizationEntry")
    assert [
        (str(prop(e, "AllowedPrimaryServer")), str(prop(e, "ReplicaStorageLocation"))) for e in entries
    ] == [(PRIMARY, STORAGE)]
    uploads = [f for f in lab.run(REPLICA, "Get-ChildItem", Path=win.UPLOAD_DIR) if "hvreplica" in str(f)]
    assert uploads == []

    # --- outputs and a clean read ---
    assert outs["certificate_thumbprint"] == own.thumbprint and outs["revocation_check_disabled"] is True
    assert outs["managed"]["certificate_thumbprints"] == [own.thumbprint]
    assert outs["managed"]["firewall_rules"] == [HTTPS_RULE]
    read = provider.read(created.id, outs)
    assert read.id == created.id
    assert provider.diff(created.id, read.outs, inputs).changes is False

    # --- drift made directly on the host: found by read, fixed by update ---
    lab.run(REPLICA, "Disable-NetFirewallRule", Name=HTTPS_RULE)
    lab.run(REPLICA, "Remove-ItemProperty", Path=win.REPLICATION_KEY, Name=win.REVOCATION_VALUE)
    lab.run(REPLICA, "Remove-VMReplicationAuthorizationEntry", AllowedPrimaryServer=PRIMARY)
    lab.run(REPLICA, "Set-Content", Path=win.HOSTS_PATH, Value=stock_hosts)
    lab.run(REPLICA, "Remove-Item", Path=f"{win.ROOT_STORE}\\{partner.ca_thumbprint}")
    drifted = provider.read(created.id, outs)
    assert drifted.inputs["open_firewall"] is False
    assert drifted.inputs["disable_revocation_check"] is False
    assert drifted.inputs["allowed_primaries"] == []
    assert drifted.inputs["hosts_entries"] == {}
    assert drifted.inputs["trusted_ca_certs"] == [own.ca_pem]
    diff = provider.diff(created.id, drifted.outs, inputs)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, drifted.outs, inputs).outs
    assert rule_enabled(lab, REPLICA, HTTPS_RULE) and revocation_value(lab, REPLICA) == 1
    assert f"{lab.addresses[PRIMARY]} {PRIMARY}" in hosts_lines(lab, REPLICA)
    assert len(lab.run(REPLICA, "Get-VMReplicationAuthorizationEntry")) == 1
    assert partner.ca_thumbprint in thumbprints(lab, REPLICA, win.ROOT_STORE)
    assert provider.diff(created.id, provider.read(created.id, updated).outs, inputs).changes is False

    # --- the host certificate deleted by hand: refresh shows it missing, update installs it again ---
    lab.run(REPLICA, "Remove-Item", Path=f"{win.MY_STORE}\\{own.thumbprint}", DeleteKey=True)
    missing = provider.read(created.id, updated)
    assert missing.inputs["certificate"]["thumbprint"] == ""
    updated = provider.update(created.id, missing.outs, inputs).outs
    assert own.thumbprint in thumbprints(lab, REPLICA, win.MY_STORE)
    assert updated["managed"]["certificate_thumbprints"] == [own.thumbprint]

    # --- a password change replaces nothing and touches no host ---
    before = lab.counters(REPLICA)["http_requests"]
    new_conn = {**inputs, "connection": {**inputs["connection"], "password": "a-new-password"}}
    diff = provider.diff(created.id, updated, new_conn)
    assert diff.changes is True and diff.replaces == []
    after_pw = provider.update(created.id, updated, new_conn).outs
    assert after_pw["connection"]["password"] == "a-new-password"
    assert after_pw["managed"] == updated["managed"]
    assert lab.counters(REPLICA)["http_requests"] == before

    # --- rotation: the new certificate is installed and used; the old one (ours, unused) goes ---
    rotated_certs = site_certs(REPLICA, generation=1)
    rotated = checked({**inputs, "certificate": rotated_certs.certificate})
    assert provider.diff(created.id, updated, rotated).replaces == []
    rotated_outs = provider.update(created.id, updated, rotated).outs
    my = thumbprints(lab, REPLICA, win.MY_STORE)
    assert rotated_certs.thumbprint in my and own.thumbprint not in my
    assert str(prop(server(lab, REPLICA), "CertificateThumbprint")) == rotated_certs.thumbprint
    assert rotated_outs["managed"]["certificate_thumbprints"] == [rotated_certs.thumbprint]

    # --- delete undoes what it did, leaves the rest, and is idempotent ---
    provider.delete(created.id, rotated_outs)
    assert rotated_certs.thumbprint not in thumbprints(lab, REPLICA, win.MY_STORE)
    assert partner.ca_thumbprint not in thumbprints(lab, REPLICA, win.ROOT_STORE)
    assert revocation_value(lab, REPLICA) is None
    assert rule_enabled(lab, REPLICA, HTTPS_RULE) is False
    assert rule_enabled(lab, REPLICA, HTTP_RULE) is True  # not ours
    assert hosts_lines(lab, REPLICA) == stock_hosts
    assert prop(server(lab, REPLICA), "ReplicationEnabled") is False
    assert lab.run(REPLICA, "Get-VMReplicationAuthorizationEntry") == []
    provider.delete(created.id, rotated_outs)


def test_primary_only_host_and_existing_key_kept(lab: Lab) -> None:
    """replication_enabled false prepares certificates, names and registry without receiving replicas."""
    provider = ReplicaServerProvider()
    own, partner = site_certs(PRIMARY), site_certs(REPLICA)
    inputs = checked(
        {
            "connection": lab.connection(PRIMARY),
            "fqdn": PRIMARY,
            "certificate": own.certificate,
            "trusted_ca_certs": [own.ca_pem, partner.ca_pem],
            "disable_revocation_check": True,
            "replication_enabled": False,
            "hosts_entries": {REPLICA: lab.addresses[REPLICA]},
        }
    )
    created = provider.create(inputs)
    assert own.thumbprint in thumbprints(lab, PRIMARY, win.MY_STORE)
    assert prop(server(lab, PRIMARY), "ReplicationEnabled") is False
    assert rule_enabled(lab, PRIMARY, HTTPS_RULE) is False
    assert created.outs["managed"]["server_prior"] is None
    provider.delete(created.id, created.outs)
    assert own.thumbprint not in thumbprints(lab, PRIMARY, win.MY_STORE)


def test_wrong_pfx_password_on_the_host_leaves_no_upload(lab: Lab) -> None:
    provider = ReplicaServerProvider()
    inputs = replica_inputs(lab)
    # Bypass check (which would refuse this) to see the host's own failure and the cleanup.
    inputs["certificate"] = {**inputs["certificate"], "pfx_password": "wrong-Pa55"}
    with pytest.raises(Exception) as caught:
        provider.create(inputs)
    assert "wrong-Pa55" not in str(caught.value)
    uploads = [f for f in lab.run(REPLICA, "Get-ChildItem", Path=win.UPLOAD_DIR) if "hvreplica" in str(f)]
    assert uploads == []
    # The CAs went in before the import failed: a re-run with the right password converges.
    created = provider.create(replica_inputs(lab))
    assert site_certs(REPLICA).thumbprint in thumbprints(lab, REPLICA, win.MY_STORE)
    provider.delete(created.id, created.outs)


def test_a_retry_of_settings_that_already_took_effect_settles(lab: Lab) -> None:
    """A lost reply, then a transient retry: statements planned from the state before the first attempt."""
    inputs = replica_inputs(lab)
    session = Session(HostConnection.from_input(inputs["connection"]))
    desired, stale = desired_from(inputs), read_host(session)
    first = Managed()
    reconcile(session, desired, stale, first)
    with pytest.raises(RemoteError):  # replayed as planned, New-Item fails on the key the first run created
        session.run(*settings_statements(desired, stale, Managed())).raise_errors()
    reconcile(session, desired, stale, Managed())  # the same replay inside reconcile settles on a re-read
    assert revocation_value(lab, REPLICA) == 1 and rule_enabled(lab, REPLICA, HTTPS_RULE)
    undo(session, read_host(session), first)
    assert revocation_value(lab, REPLICA) is None


def test_any_primary_and_server_settings_drift(lab: Lab) -> None:
    provider = ReplicaServerProvider()
    inputs = replica_inputs(
        lab, allowed_primaries=[], allow_any_primary=True, default_storage_location=STORAGE
    )
    created = provider.create(inputs)
    srv = server(lab, REPLICA)
    assert prop(srv, "ReplicationAllowedFromAnyServer") is True
    assert str(prop(srv, "DefaultStorageLocation")) == STORAGE
    assert created.outs["allow_any_primary"] is True and created.outs["allowed_primaries"] == []

    # Someone moves the listener port and turns any-server off; refresh shows it, update puts it back.
    lab.run(
        REPLICA,
        "Set-VMReplicationServer",
        ReplicationEnabled=True,
        AllowedAuthenticationType="Certificate",
        CertificateThumbprint=site_certs(REPLICA).thumbprint,
        ReplicationAllowedFromAnyServer=False,
        CertificateAuthenticationPort=8443,
        KerberosAuthenticationPort=80,
        Force=True,
    )
    drifted = provider.read(created.id, created.outs)
    assert (drifted.inputs["certificate_port"], drifted.inputs["allow_any_primary"]) == (8443, False)
    assert provider.diff(created.id, drifted.outs, inputs).replaces == []
    updated = provider.update(created.id, drifted.outs, inputs).outs
    srv = server(lab, REPLICA)
    assert (prop(srv, "CertificateAuthenticationPort"), prop(srv, "ReplicationAllowedFromAnyServer")) == (
        443,
        True,
    )

    provider.delete(created.id, updated)
    srv = server(lab, REPLICA)
    assert prop(srv, "ReplicationEnabled") is False and prop(srv, "ReplicationAllowedFromAnyServer") is False


def listener_rules(lab: Lab, fqdn: str) -> dict[str, tuple[str, str, str]]:
    """The HVR-* listener rules on the host: name -> (Enabled, Direction, Action), read with plain pypsrp."""
    return {
        str(r.extended_properties["Name"]): (
            str(r.extended_properties["Enabled"]),
            str(r.extended_properties["Direction"]),
            str(r.extended_properties["Action"]),
        )
        for r in lab.run(fqdn, "Get-NetFirewallRule", Name="HVR-*")
    }


def connection_test(lab: Lab, port: int) -> Any:
    """Test-VMReplicationConnection from the primary to the replica on `port`, by certificate."""
    with WSMan(**wsman_kwargs(lab.emu, PRIMARY)) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Test-VMReplicationConnection")
        ps.add_parameter("ReplicaServerName", REPLICA)
        ps.add_parameter("ReplicaServerPort", port)
        ps.add_parameter("AuthenticationType", "Certificate")
        ps.add_parameter("CertificateThumbprint", site_certs(PRIMARY).thumbprint)
        output = ps.invoke()
        return output, [str(e) for e in ps.streams.error]


def test_custom_ports_get_listener_rules_of_their_own(lab: Lab) -> None:
    provider = ReplicaServerProvider()
    stock = {n: rule_enabled(lab, REPLICA, n) for n in (HTTPS_RULE, HTTP_RULE)}
    primary = provider.create(replica_server_inputs(lab, PRIMARY, REPLICA))
    inputs = replica_server_inputs(lab, REPLICA, PRIMARY, certificate_port=8443.0)
    created = provider.create(inputs)

    assert listener_rules(lab, REPLICA) == {"HVR-HTTPS-8443": ("True", "Inbound", "Allow")}
    [rule] = lab.run(REPLICA, "Get-NetFirewallRule", Name="HVR-HTTPS-8443")
    assert str(prop(rule, "DisplayName")) == "Hyper-V Replica HTTPS Listener (TCP-In, port 8443)"
    assert "HVR-HTTPS-8443" in lab.ledger(REPLICA).values()
    assert created.outs["managed"]["created_firewall_rules"] == ["HVR-HTTPS-8443"]
    assert created.outs["open_firewall"] is True
    assert prop(server(lab, REPLICA), "CertificateAuthenticationPort") == 8443
    output, errors = connection_test(lab, 8443)
    assert errors == []
    success = f"Connection to replica server '{REPLICA}' on port 8443 using Certificate authentication"
    assert output == [f"{success} was successful."]

    # Drift: the rule disabled by hand closes the port; read shows it, update opens it again.
    lab.run(REPLICA, "Disable-NetFirewallRule", Name="HVR-HTTPS-8443")
    output, errors = connection_test(lab, 8443)
    assert output == [] and len(errors) == 1 and "firewall" in errors[0] and "8443" in errors[0]
    drifted = provider.read(created.id, created.outs)
    assert drifted.inputs["open_firewall"] is False
    updated = provider.update(created.id, drifted.outs, inputs).outs
    assert listener_rules(lab, REPLICA) == {"HVR-HTTPS-8443": ("True", "Inbound", "Allow")}
    # Drift: the rule removed by hand is made again.
    lab.run(REPLICA, "Remove-NetFirewallRule", Name="HVR-HTTPS-8443")
    gone = provider.read(created.id, updated)
    assert gone.inputs["open_firewall"] is False
    updated = provider.update(created.id, gone.outs, inputs).outs
    assert connection_test(lab, 8443)[1] == []

    # A port change replaces the rule; a Kerberos listener on a custom port gets one as well.
    moved = replica_server_inputs(
        lab,
        REPLICA,
        PRIMARY,
        certificate_port=9443.0,
        authentication="CertificateAndKerberos",
        kerberos_port=8080.0,
    )
    moved_outs = provider.update(created.id, updated, moved).outs
    assert listener_rules(lab, REPLICA) == {
        "HVR-HTTPS-9443": ("True", "Inbound", "Allow"),
        "HVR-HTTP-8080": ("True", "Inbound", "Allow"),
    }
    assert sorted(moved_outs["managed"]["created_firewall_rules"]) == ["HVR-HTTP-8080", "HVR-HTTPS-9443"]
    ledger = set(lab.ledger(REPLICA).values())
    assert {"HVR-HTTP-8080", "HVR-HTTPS-9443"} <= ledger and "HVR-HTTPS-8443" not in ledger
    assert connection_test(lab, 9443)[1] == []
    assert provider.diff(created.id, provider.read(created.id, moved_outs).outs, moved).changes is False

    # Delete removes only the rules it created and leaves the stock rules as they were.
    provider.delete(created.id, moved_outs)
    assert listener_rules(lab, REPLICA) == {}
    assert {n: rule_enabled(lab, REPLICA, n) for n in (HTTPS_RULE, HTTP_RULE)} == stock
    provider.delete(created.id, moved_outs)  # idempotent
    provider.delete(primary.id, primary.outs)


def test_open_firewall_false_creates_no_listener_rule(lab: Lab) -> None:
    provider = ReplicaServerProvider()
    created = provider.create(replica_inputs(lab, certificate_port=8443.0, open_firewall=False))
    assert listener_rules(lab, REPLICA) == {}
    assert created.outs["open_firewall"] is False
    provider.delete(created.id, created.outs)


# --- CA rotation: the new CA and certificate go in at once; the old certificate goes as soon as no VM
# replication uses it, the old CA (one we imported) one apply after the list dropped it, and a CA someone
# else put into LocalMachine\Root is never touched.


def _renewed_site(fqdn: str) -> tuple[str, dict[str, str], str]:
    """A brand-new CA of the same name (what replacing a CertificateAuthority yields) and a host
    certificate from it: (CA PEM, certificate input, certificate thumbprint)."""
    ca = pki.create_ca(
        pki.Subject(common_name=f"{fqdn.split('.', 1)[1]} Lab Root CA"), 2048, 3650, clock.now()
    )
    leaf = pki.issue_host_certificate(
        pki.load_certificate(ca.cert_pem),
        pki.load_private_key(ca.private_key_pem),
        fqdn,
        [],
        2048,
        365,
        clock.now(),
    )
    pfx = pki.export_pfx(leaf.cert_pem, leaf.private_key_pem, PFX_PASSWORD, "legacy", None)
    certificate = {"pfx_base64": base64.b64encode(pfx).decode(), "pfx_password": PFX_PASSWORD}
    return ca.cert_pem, {**certificate, "thumbprint": leaf.info.thumbprint}, leaf.info.thumbprint


def _thumbprint(pem: str) -> str:
    return pki.thumbprint(pki.load_certificate(pem))


def test_old_ca_leaves_root_one_apply_after_the_rotation(lab: Lab) -> None:
    provider = ReplicaServerProvider()
    own, partner = site_certs(REPLICA), site_certs(PRIMARY)
    # Someone else trusts another CA on this host, which the stack then lists too: not ours to remove.
    foreign_ca = pki.create_ca(pki.Subject(common_name="Foreign Root"), 2048, 3650, clock.now()).cert_pem
    der = pki.load_certificate(foreign_ca).public_bytes(serialization.Encoding.DER)
    lab.run(REPLICA, "Set-Content", Path=UPLOAD, Value=der, Encoding="Byte")
    lab.run(REPLICA, "Import-Certificate", FilePath=UPLOAD, CertStoreLocation=win.ROOT_STORE)
    lab.run(REPLICA, "Remove-Item", Path=UPLOAD)
    base = {
        "connection": lab.connection(REPLICA),
        "fqdn": REPLICA,
        "disable_revocation_check": True,
        "allowed_primaries": [{"primary_server": PRIMARY, "storage_location": STORAGE}],
    }
    cas = [own.ca_pem, partner.ca_pem, foreign_ca]
    created = provider.create(checked({**base, "certificate": own.certificate, "trusted_ca_certs": cas}))
    root = thumbprints(lab, REPLICA, win.ROOT_STORE)
    assert {own.ca_thumbprint, partner.ca_thumbprint, _thumbprint(foreign_ca)} <= root
    assert _thumbprint(foreign_ca) not in created.outs["managed"]["ca_thumbprints"]

    # Apply 1: the site's CA is replaced, and with it the host certificate.
    new_ca, new_certificate, new_thumbprint = _renewed_site(REPLICA)
    rotated = checked({**base, "certificate": new_certificate, "trusted_ca_certs": [new_ca, partner.ca_pem]})
    # (the foreign CA is no longer listed either)
    assert provider.diff(created.id, created.outs, rotated).changes is True
    after_rotation = provider.update(created.id, created.outs, rotated).outs
    my, root = thumbprints(lab, REPLICA, win.MY_STORE), thumbprints(lab, REPLICA, win.ROOT_STORE)
    assert new_thumbprint in my and own.thumbprint not in my  # no VM replication used the old one
    assert (
        str(prop(lab.run(REPLICA, "Get-VMReplicationServer")[0], "CertificateThumbprint")) == new_thumbprint
    )
    assert {_thumbprint(new_ca), own.ca_thumbprint} <= root  # partners get this apply to switch
    assert own.ca_thumbprint in after_rotation["managed"]["ca_thumbprints"]

    # Apply 2 (same inputs): the preview shows the pending retirement, the update carries it out.
    assert provider.diff(created.id, after_rotation, rotated).changes is True
    retired = provider.update(created.id, after_rotation, rotated).outs
    root = thumbprints(lab, REPLICA, win.ROOT_STORE)
    assert own.ca_thumbprint not in root and {_thumbprint(new_ca), partner.ca_thumbprint} <= root
    assert _thumbprint(foreign_ca) in root
    assert sorted(retired["managed"]["ca_thumbprints"]) == sorted(
        [_thumbprint(new_ca), partner.ca_thumbprint]
    )
    assert provider.diff(created.id, retired, rotated).changes is False  # settled

    provider.delete(created.id, retired)
    assert not {_thumbprint(new_ca), partner.ca_thumbprint} & thumbprints(lab, REPLICA, win.ROOT_STORE)


def _state(my: list[str], root: list[str], replication_thumbprints: list[str]) -> HostState:
    def certs(thumbs: list[str]) -> list[win.StoreCertificate]:
        return [win.StoreCertificate(t, f"CN={t}", True) for t in thumbs]

    settings = [hv.ReplicationSettings(PRIMARY, "Certificate", t, 443) for t in replication_thumbprints]
    return HostState(
        my=certs(my),
        root=certs(root),
        # absent: revocation is checked, as the inputs want
        revocation={key: RevocationSetting(None, None) for key in win.REVOCATION_KEYS},
        firewall={},
        hosts_lines=[],
        server=desired_from(_inputs()).server(),
        entries=[],
        replications=[
            hv.VMReplicationInfo(f"vm{i}", f"id{i}", "Primary", "Replicating", "Normal", PRIMARY, REPLICA, s)
            for i, s in enumerate(settings)
        ],
        ledger=win.LedgerState(LEDGER),
    )


def _inputs() -> dict[str, Any]:
    own = site_certs(REPLICA)
    return {
        "connection": {"host": REPLICA},
        "fqdn": REPLICA,
        "certificate": own.certificate,
        "trusted_ca_certs": [own.ca_pem],
        "open_firewall": False,
        "replication_enabled": False,
    }


def test_an_old_certificate_in_use_keeps_itself_and_every_unlisted_ca() -> None:
    """Pure: which retirement statements reconcile plans while a VM replication still uses the old
    certificate, and once it no longer does."""
    current = site_certs(REPLICA)
    desired = desired_from(_inputs())
    managed = Managed(
        ca_thumbprints=[current.ca_thumbprint, "OLDCA"], certificate_thumbprints=["OLD", current.thumbprint]
    )
    in_use = _state([current.thumbprint, "OLD"], [current.ca_thumbprint, "OLDCA"], ["OLD"])
    assert settings_statements(desired, in_use, managed) == []
    assert (
        managed.certificate_thumbprints == ["OLD", current.thumbprint] and "OLDCA" in managed.ca_thumbprints
    )

    switched = _state([current.thumbprint, "OLD"], [current.ca_thumbprint, "OLDCA"], [current.thumbprint])
    planned = settings_statements(desired, switched, managed, keep_cas=frozenset())
    assert planned == [
        win.remove_certificate_cmd(win.MY_STORE, "OLD"),
        win.remove_certificate_cmd(win.ROOT_STORE, "OLDCA"),
    ]
    assert managed == Managed(
        ca_thumbprints=[current.ca_thumbprint], certificate_thumbprints=[current.thumbprint]
    )
