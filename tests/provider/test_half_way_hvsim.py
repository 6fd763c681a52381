"""ReplicaServer creates that fail half-way (the connection dropped at each request in turn, no retries), then
a converging re-run and a delete: the host must end exactly as it was, because each change was recorded in the
host's ownership ledger in the same invocation, ahead of the change. Settings an administrator made before
hvreplica came must survive. Checked with plain pypsrp (tests.provider.support.Lab.snapshot)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from hvreplica_provider import pki, remoting
from hvreplica_provider.remoting import REGISTRY, RetryPolicy, Transient
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    REPLICA_RULES,
    REPLICATION_KEY,
    ROOT,
    Lab,
    replica_server_inputs,
    site_certs,
    two_site_lab,
)

HTTPS_RULE, HTTP_RULE = REPLICA_RULES


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("72.0") as lab:
        yield lab
    REGISTRY.close_all()


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every transient fault fails the operation at once: a dropped request stops the create right there."""
    monkeypatch.setattr(remoting, "DEFAULT_RETRY", RetryPolicy(deadline_sec=0.0))


def trust_partner_ca_by_hand(lab: Lab) -> None:
    """An administrator's earlier step: the partner's CA already in LocalMachine\\Root."""
    der = pki.load_certificate(site_certs(PRIMARY).ca_pem).public_bytes(Encoding.DER)
    path = "C:\\Windows\\Temp\\partner-ca.cer"
    lab.run(REPLICA, "Set-Content", Path=path, Value=der, Encoding="Byte")
    lab.run(REPLICA, "Import-Certificate", FilePath=path, CertStoreLocation=ROOT)
    lab.run(REPLICA, "Remove-Item", Path=path)


def test_create_dropped_at_each_request_then_rerun_and_delete_restore_the_host(
    lab: Lab, no_retries: None
) -> None:
    provider = ReplicaServerProvider()
    lab.run(REPLICA, "Enable-NetFirewallRule", Name=HTTP_RULE)  # not ours: stays enabled
    trust_partner_ca_by_hand(lab)  # not ours: stays trusted
    original = lab.snapshot(REPLICA)
    assert original["firewall"] == {HTTPS_RULE: "False", HTTP_RULE: "True"}
    assert original["replication_key"] is None and original["ledger_root"] is False
    assert site_certs(PRIMARY).ca_thumbprint in original["root"]
    inputs = replica_server_inputs(lab, REPLICA, PRIMARY)

    half_way_states = []
    for n in itertools.count(1):
        requests_before = lab.counters(REPLICA)["http_requests"]
        lab.emu.inject_fault(REPLICA, "drop-nth", n)
        try:
            outs = provider.create(inputs).outs  # a lost reply to the settings it can tell took effect
        except Transient as dropped:
            assert "Pfx-Pa$$-9" not in str(dropped)
        else:
            if lab.counters(REPLICA)["http_requests"] - requests_before < n:
                break  # the drop never came: every request of a whole create has been dropped once
        finally:
            lab.emu.clear_faults(REPLICA)
        left = lab.snapshot(REPLICA)
        assert left["uploads"] == []  # the PFX never stays on disk, even when its import's reply is lost
        if left != original:
            half_way_states.append(left)
            assert left["ledger_root"] is True  # whatever changed is recorded on the host

        rerun = provider.create(inputs)
        outs = rerun.outs
        assert (outs["revocation_check_disabled"], outs["open_firewall"]) == (True, True)
        assert outs["managed"]["firewall_rules"] == [HTTPS_RULE]  # adopted from the failed attempt's ledger
        assert site_certs(PRIMARY).ca_thumbprint not in outs["managed"]["ca_thumbprints"]
        provider.delete(rerun.id, outs)
        assert lab.snapshot(REPLICA) == original, f"the host differs after a drop at request {n}"

    provider.delete("cleanup", outs)
    assert lab.snapshot(REPLICA) == original
    # The drops hit requests before, between and after the changes.
    print(f"create: {n - 1} requests, {len(half_way_states)} drops left the host half-way")
    assert n > 5 and len(half_way_states) >= 2
    assert any(s["firewall"][HTTPS_RULE] == "True" for s in half_way_states)
    assert any(s["server"]["ReplicationEnabled"] == "True" for s in half_way_states)
    provider.delete("again", outs)  # deletes stay idempotent once the ledger is gone
    assert lab.snapshot(REPLICA) == original


def test_the_ledger_names_only_what_hvreplica_changed(lab: Lab) -> None:
    provider = ReplicaServerProvider()
    lab.run(REPLICA, "Enable-NetFirewallRule", Name=HTTPS_RULE)
    lab.run(REPLICA, "New-Item", Path=REPLICATION_KEY, Force=True)
    lab.run(
        REPLICA,
        "New-ItemProperty",
        Path=REPLICATION_KEY,
        Name="DisableCertRevocationCheck",
        Value=1,
        PropertyType="DWord",
    )
    original = lab.snapshot(REPLICA)
    created = provider.create(replica_server_inputs(lab, REPLICA, PRIMARY))
    ledger = lab.ledger(REPLICA)
    own = site_certs(REPLICA)
    assert ledger[f"HostCertificate.{own.thumbprint}"] == own.thumbprint
    assert ledger[f"RootCertificate.{own.ca_thumbprint}"] == own.ca_thumbprint
    assert ledger[f"AuthorizationEntry.{PRIMARY}"] == PRIMARY
    assert "ServerPrior" in ledger
    assert not [name for name in ledger if name.startswith("FirewallRule.")]  # enabled before we came
    assert "RevocationValuePrior" not in ledger  # already 1
    assert (
        created.outs["managed"]["firewall_rules"] == []
        and not created.outs["managed"]["revocation_value_set"]
    )

    provider.delete(created.id, created.outs)
    assert lab.snapshot(REPLICA) == original
    assert lab.ledger(REPLICA) == {}


def test_a_lost_ledger_record_in_state_still_undone_from_the_host(lab: Lab) -> None:
    """Stored outputs from before a failure know nothing; the host's ledger does: delete uses both."""
    provider = ReplicaServerProvider()
    original = lab.snapshot(REPLICA)
    created = provider.create(replica_server_inputs(lab, REPLICA, PRIMARY, disable_revocation_check=True))
    forgetful = {**created.outs, "managed": None}
    provider.delete(created.id, forgetful)
    assert lab.snapshot(REPLICA) == original
