"""A CA rotation on a ReplicaServer: the new CA and certificate go in at once; the old certificate goes as
soon as no VM replication uses it, the old CA (one we imported) one apply after the list dropped it, and a
CA someone else put into LocalMachine\\Root is never touched. Checked on the host with plain pypsrp."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from hvreplica_provider import clock, pki
from hvreplica_provider import hyperv as hv
from hvreplica_provider import windows as win
from hvreplica_provider.remoting import REGISTRY
from hvreplica_provider.resources.replica_server import (
    HostState,
    Managed,
    ReplicaServerProvider,
    desired_from,
    settings_statements,
)
from tests.provider.support import PFX_PASSWORD, PRIMARY, REPLICA, Lab, prop, site_certs, two_site_lab

STORAGE = "D:\\Hyper-V\\Replica"
UPLOAD = "C:\\Windows\\Temp\\foreign-root.cer"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with two_site_lab("63.0") as lab:
        yield lab
    REGISTRY.close_all()


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
    pfx = pki.export_pfx(leaf.cert_pem, leaf.private_key_pem, ca.cert_pem, PFX_PASSWORD, "legacy", None)
    certificate = {"pfx_base64": base64.b64encode(pfx).decode(), "pfx_password": PFX_PASSWORD}
    return ca.cert_pem, {**certificate, "thumbprint": leaf.info.thumbprint}, leaf.info.thumbprint


def _thumbprint(pem: str) -> str:
    return pki.thumbprint(pki.load_certificate(pem))


def _checked(inputs: dict[str, Any]) -> dict[str, Any]:
    result = ReplicaServerProvider().check({}, inputs)
    assert [f.reason for f in result.failures] == []
    return result.inputs


def _store(lab: Lab, store: str) -> set[str]:
    return {str(prop(c, "Thumbprint")) for c in lab.run(REPLICA, "Get-ChildItem", Path=store)}


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
    created = provider.create(_checked({**base, "certificate": own.certificate, "trusted_ca_certs": cas}))
    assert {own.ca_thumbprint, partner.ca_thumbprint, _thumbprint(foreign_ca)} <= _store(lab, win.ROOT_STORE)
    assert _thumbprint(foreign_ca) not in created.outs["managed"]["ca_thumbprints"]

    # Apply 1: the site's CA is replaced, and with it the host certificate.
    new_ca, new_certificate, new_thumbprint = _renewed_site(REPLICA)
    rotated = _checked({**base, "certificate": new_certificate, "trusted_ca_certs": [new_ca, partner.ca_pem]})
    # (the foreign CA is no longer listed either)
    assert provider.diff(created.id, created.outs, rotated).changes is True
    after_rotation = provider.update(created.id, created.outs, rotated).outs
    my, root = _store(lab, win.MY_STORE), _store(lab, win.ROOT_STORE)
    assert new_thumbprint in my and own.thumbprint not in my  # no VM replication used the old one
    assert (
        str(prop(lab.run(REPLICA, "Get-VMReplicationServer")[0], "CertificateThumbprint")) == new_thumbprint
    )
    assert {_thumbprint(new_ca), own.ca_thumbprint} <= root  # partners get this apply to switch
    assert own.ca_thumbprint in after_rotation["managed"]["ca_thumbprints"]

    # Apply 2 (same inputs): the preview shows the pending retirement, the update carries it out.
    assert provider.diff(created.id, after_rotation, rotated).changes is True
    retired = provider.update(created.id, after_rotation, rotated).outs
    root = _store(lab, win.ROOT_STORE)
    assert own.ca_thumbprint not in root and {_thumbprint(new_ca), partner.ca_thumbprint} <= root
    assert _thumbprint(foreign_ca) in root
    assert sorted(retired["managed"]["ca_thumbprints"]) == sorted(
        [_thumbprint(new_ca), partner.ca_thumbprint]
    )
    assert provider.diff(created.id, retired, rotated).changes is False  # settled

    provider.delete(created.id, retired)
    assert not {_thumbprint(new_ca), partner.ca_thumbprint} & _store(lab, win.ROOT_STORE)


def _state(my: list[str], root: list[str], replication_thumbprints: list[str]) -> HostState:
    def certs(thumbs: list[str]) -> list[win.StoreCertificate]:
        return [win.StoreCertificate(t, f"CN={t}", True) for t in thumbs]

    settings = [hv.ReplicationSettings(PRIMARY, "Certificate", t, 443) for t in replication_thumbprints]
    return HostState(
        my=certs(my),
        root=certs(root),
        replication_key=None,
        revocation_value=None,  # absent: revocation is checked, as the inputs want
        firewall={},
        hosts_lines=[],
        server=desired_from(_inputs()).server(),
        entries=[],
        replications=[
            hv.VMReplicationInfo(f"vm{i}", f"id{i}", "Primary", "Replicating", "Normal", PRIMARY, REPLICA, s)
            for i, s in enumerate(settings)
        ],
        ledger=win.LedgerState("HKLM:\\SOFTWARE\\hvreplica\\ReplicaServer"),
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
