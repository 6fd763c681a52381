"""The ReplicaServer ownership ledger without a host: what its registry values look like, that they map back,
that records precede the changes they describe, and that the statements are cmdlets with named parameters."""

from __future__ import annotations

import pytest

from hvreplica_provider import windows as win
from hvreplica_provider.resources.replica_server import LEDGER, Managed

THUMB = "AB" * 20


def owned() -> Managed:
    return Managed(
        ca_thumbprints=[THUMB],
        certificate_thumbprints=["CD" * 20],
        revocation_value_set=True,
        revocation_value_prior=None,
        replication_key_created=True,
        firewall_rules=["VIRT-HVRHTTPSL-In-TCP-NoScope"],
        entries=["*.contoso.com", "host1.contoso.com"],
        server_prior={"replication_enabled": False, "certificate_port": 443, "kerberos_port": 80},
    )


def test_records_round_trip_and_names_carry_no_wildcards() -> None:
    values = owned().to_ledger()
    assert values[f"RootCertificate.{THUMB}"] == THUMB
    assert values["AuthorizationEntry.%2A.contoso.com"] == "*.contoso.com"  # Remove-ItemProperty expands *
    assert not any(ch in name for name in values for ch in "*?[]")
    assert values["RevocationValuePrior"] == "null"  # the value was absent before
    assert Managed.from_ledger(values) == owned()


def test_the_host_ledger_joins_the_stored_record() -> None:
    stored = Managed(ca_thumbprints=["EF" * 20], server_prior={"replication_enabled": True})
    merged = stored.merged(owned())
    assert merged.ca_thumbprints == ["EF" * 20, THUMB]
    assert merged.server_prior == owned().server_prior  # the host's prior is the older truth
    assert merged.replication_key_created and merged.revocation_value_set
    assert stored.ca_thumbprints == ["EF" * 20]  # not modified


def test_a_hand_edited_ledger_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="edited by hand"):
        Managed.from_ledger({"ServerPrior": "{not json"})


def test_records_before_changes_and_drops_after() -> None:
    old = {"FirewallRule.A": "A", "HostCertificate.X": "X"}
    new = {"FirewallRule.A": "A", "HostCertificate.Y": "Y"}
    writes, drops = win.ledger_change_cmds(LEDGER, old, new)
    assert [[c.name for c in st] for st in writes] == [["New-Item"], ["New-Item"], ["New-ItemProperty"]]
    assert dict(writes[2][0].parameters)["Name"] == "HostCertificate.Y"
    assert dict(writes[2][0].parameters)["ErrorAction"] == "Stop"
    # Creating the keys must not fail a replayed invocation: silent when they already exist.
    assert all(dict(st[0].parameters)["ErrorAction"] == "SilentlyContinue" for st in writes[:2])
    assert [dict(st[0].parameters)["Name"] for st in drops] == ["HostCertificate.X"]
    assert win.ledger_change_cmds(LEDGER, new, new) == ([], [])


def test_the_root_key_goes_only_when_nothing_else_lives_there() -> None:
    alone = win.LedgerState(LEDGER, exists=True, root_has_others=False)
    shared = win.LedgerState(LEDGER, exists=True, root_has_others=True)
    assert dict(win.ledger_remove_cmds(alone)[0][0].parameters)["Path"] == win.LEDGER_ROOT
    assert dict(win.ledger_remove_cmds(shared)[0][0].parameters)["Path"] == LEDGER
    assert win.ledger_remove_cmds(win.LedgerState(LEDGER)) == []
