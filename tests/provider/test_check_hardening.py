"""Issue 8's check defects, one reproduction each (items 2, 3, 4, 5, 7, 8, 10, 11): strict types, no echo
of key material, no control characters, the RFC 6125 name rule, the CN length limit, bare connection hosts,
one failure per problem and the small holes. No host is involved; tests/fuzz/ covers the same ground at
random."""

from __future__ import annotations

from typing import Any

import pytest

from hvreplica_provider import clock, pki
from hvreplica_provider.resources.certificate_authority import CertificateAuthorityProvider
from hvreplica_provider.resources.host_certificate import HostCertificateProvider
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.provider.test_checks import CONNECTION, FQDN, certificate, pem, server_inputs
from tests.support.certs import Issued, make_ca, make_host_cert

THUMB = "A" * 40


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Contoso Lab CA", key_slot=0)


@pytest.fixture(scope="module")
def issued_ca() -> pki.IssuedCertificate:
    return pki.create_ca(pki.Subject(common_name="Hardening CA"), 2048, 3650, clock.now())


def server(inputs: dict[str, Any]) -> dict[str, str]:
    return {f.property: f.reason for f in ReplicaServerProvider().check({}, inputs).failures}


def relationship(**overrides: Any) -> dict[str, str]:
    inputs = {
        "primary": CONNECTION,
        "replica": CONNECTION,
        "vm_name": "web01",
        "replica_server_fqdn": "host2.fabrikam.com",
        "certificate_thumbprint": THUMB,
        **overrides,
    }
    return {f.property: f.reason for f in ReplicationRelationshipProvider().check({}, inputs).failures}


def host_cert(ca: pki.IssuedCertificate, **overrides: Any) -> dict[str, str]:
    inputs = {"ca_cert_pem": ca.cert_pem, "ca_private_key_pem": ca.private_key_pem, "fqdn": FQDN, **overrides}
    return {f.property: f.reason for f in HostCertificateProvider().check({}, inputs).failures}


# --- item 2: types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("falsy", [0, "", [], 0.0, "false"])
def test_verify_tls_must_be_a_real_boolean(falsy: object) -> None:
    found = relationship(primary={**CONNECTION, "verify_tls": falsy})
    assert "boolean" in found["primary.verify_tls"]


@pytest.mark.parametrize(
    "key", ["compression", "delete_replica_vm_on_destroy", "wait_for_initial_replication"]
)
def test_relationship_booleans_refuse_numbers(key: str) -> None:
    assert "true or false" in relationship(**{key: 1})[key]


def test_replica_server_booleans_and_numeric_pfx_password(ca: Issued) -> None:
    host = make_host_cert(ca, FQDN)
    found = server(server_inputs(ca, host, open_firewall="yes", allow_any_primary=0))
    assert "true or false" in found["open_firewall"] and "true or false" in found["allow_any_primary"]
    cert = {**certificate(host, ca), "pfx_password": 1234}
    assert "as strings" in server(server_inputs(ca, host, certificate=cert))["certificate"]


def test_numeric_pfx_password_and_port_types(issued_ca: pki.IssuedCertificate) -> None:
    assert "string" in host_cert(issued_ca, pfx_password=1234)["pfx_password"]
    assert "whole number" in relationship(primary={**CONNECTION, "port": True})["primary.port"]
    assert "whole number" in relationship(replica_port="443")["replica_port"]
    assert "string" in relationship(certificate_thumbprint=12)["certificate_thumbprint"]


# --- item 3: key material is never echoed -------------------------------------------------------------------


def test_a_private_key_in_a_certificate_list_is_not_printed(
    ca: Issued, issued_ca: pki.IssuedCertificate
) -> None:
    key_line = issued_ca.private_key_pem.splitlines()[1]
    host = make_host_cert(ca, FQDN)
    for key in ("trusted_ca_certs", "partner_trusted_ca_certs"):
        found = server(server_inputs(ca, host, **{key: [pem(ca), issued_ca.private_key_pem]}))
        assert key in found and all(key_line not in reason for reason in found.values())
    hc = host_cert(issued_ca, ca_cert_pem=issued_ca.private_key_pem)
    assert "ca_cert_pem" in hc and all(key_line not in reason for reason in hc.values())
    conn = relationship(primary={**CONNECTION, "ca_cert_pem": issued_ca.private_key_pem})
    assert "primary.ca_cert_pem" in conn and all(key_line not in reason for reason in conn.values())


# --- item 4: control characters -----------------------------------------------------------------------------


def test_newlines_are_refused_wherever_they_would_reach_a_file_or_certificate(
    ca: Issued, issued_ca: pki.IssuedCertificate
) -> None:
    assert "fqdn" in host_cert(issued_ca, fqdn=FQDN + "\n")
    assert "additional_dns_names" in host_cert(issued_ca, additional_dns_names=["broker.contoso.com\n"])
    assert "friendly_name" in host_cert(issued_ca, friendly_name="Replica\ncert")
    host = make_host_cert(ca, FQDN)
    found = server(
        server_inputs(
            ca,
            host,
            hosts_entries={
                "evil.contoso.com\n6.6.6.6 bank.example.com": "6.6.6.6",
                "ok.contoso.com": "6.6.6.6\n",
            },
            allowed_primaries=[
                {"primary_server": "host2.fabrikam.com\n", "storage_location": "D:\\Replica"},
                {
                    "primary_server": "host3.fabrikam.com",
                    "storage_location": "D:\\Rep\nlica",
                    "trust_group": "a\nb",
                },
            ],
        )
    )
    assert "hosts_entries" in found
    assert {"allowed_primaries[0].primary_server", "allowed_primaries[1].storage_location"} <= set(found)
    assert "allowed_primaries[1].trust_group" in found
    ca_found = {
        f.property
        for f in CertificateAuthorityProvider().check({}, {"common_name": "CA", "country": "DE\n"}).failures
    }
    assert ca_found == {"country"}  # refused in check, not a ValueError in create
    assert "vm_name" in relationship(vm_name="web01\n")


# --- items 5 and 7: names in certificates -------------------------------------------------------------------


def test_with_a_san_the_cn_does_not_cover_the_fqdn(ca: Issued) -> None:
    host = make_host_cert(ca, FQDN, dns_names=("other.contoso.com",))
    reason = server(server_inputs(ca, host))["certificate"]
    assert "does not cover fqdn 'host1.contoso.com'" in reason and "other.contoso.com" in reason


def test_an_fqdn_longer_than_a_cn_can_hold_is_refused_in_check(issued_ca: pki.IssuedCertificate) -> None:
    long_name = "a" * 50 + ".replica-site-b.example.com"  # a valid DNS name, 77 characters
    assert "at most 64" in host_cert(issued_ca, fqdn=long_name)["fqdn"]
    assert host_cert(issued_ca, fqdn="b" * 40 + ".example.com", additional_dns_names=[long_name]) == {}


# --- item 8: the connection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:5986/wsman#", "https://h1.contoso.com", "h1.contoso.com\n", "h1 contoso", "fe80::1%eth0"],
)
def test_connection_host_is_a_bare_name_or_address(host: str) -> None:
    assert "bare DNS name or IP address" in relationship(primary={**CONNECTION, "host": host})["primary.host"]


def test_empty_password_and_ports_out_of_range() -> None:
    found = relationship(primary={**CONNECTION, "password": ""}, replica={**CONNECTION, "port": 70000.0})
    assert "empty" in found["primary.password"] and "65535" in found["replica.port"]


# --- item 10: one failure per problem -----------------------------------------------------------------------


def test_an_invalid_value_is_not_also_called_missing(ca: Issued) -> None:
    found = relationship(initial_replication="scheduled", initial_replication_start_time=5)
    assert "needs" not in found["initial_replication_start_time"]
    found = relationship(auto_resynchronize_start="25:00:00", auto_resynchronize_end="06:00:00")
    assert (
        list(found) == ["auto_resynchronize_start"] and "give both" not in found["auto_resynchronize_start"]
    )
    found = server(
        server_inputs(ca, make_host_cert(ca, FQDN), allow_any_primary=True, default_storage_location="x")
    )
    assert "needs" not in found["default_storage_location"]


# --- item 11: small holes -----------------------------------------------------------------------------------


def test_window_digits_trust_group_type_and_storage_paths(ca: Issued) -> None:
    arabic_indic = "\u0661\u0668:\u0663\u0660:\u0660\u0660"  # 18:30:00 in Arabic-Indic digits
    found = relationship(auto_resynchronize_start=arabic_indic, auto_resynchronize_end="06:00:00")
    assert "hh:mm:ss" in found["auto_resynchronize_start"]
    checked = ReplicationRelationshipProvider().check(
        {},
        {
            "primary": CONNECTION,
            "replica": CONNECTION,
            "vm_name": "web01",
            "replica_server_fqdn": "host2.fabrikam.com",
            "certificate_thumbprint": THUMB,
            "auto_resynchronize_start": "7:30:00",
            "auto_resynchronize_end": "6:00:00",
        },
    )
    assert checked.failures == [] and checked.inputs["auto_resynchronize_start"] == "07:30:00"
    host = make_host_cert(ca, FQDN)
    found = server(
        server_inputs(
            ca,
            host,
            allowed_primaries=[
                {"primary_server": "host2.fabrikam.com", "storage_location": "D:\\a|b", "trust_group": 123.0}
            ],
        )
    )
    assert "allowed_primaries[0].trust_group" in found and "allowed_primaries[0].storage_location" in found


def test_a_nul_in_a_pfx_password_is_refused_not_a_crash(ca: Issued, issued_ca: pki.IssuedCertificate) -> None:
    """Found by tests/fuzz: the PKCS#12 code aborts (a Rust panic, which is no Exception) on a NUL."""
    assert "NUL" in host_cert(issued_ca, pfx_password="pfx\x00pass")["pfx_password"]
    host = make_host_cert(ca, FQDN)
    cert = {**certificate(host, ca), "pfx_password": "\x00pfx-pass"}
    assert "NUL" in server(server_inputs(ca, host, certificate=cert))["certificate"]


def test_a_certificate_with_kerberos_is_refused_rather_than_crashing_diff(ca: Issued) -> None:
    """Found by tests/fuzz: check skipped the unused certificate, and diff then failed opening its PFX."""
    host = make_host_cert(ca, FQDN)
    cert = {**certificate(host, ca), "pfx_password": None}
    reason = server(server_inputs(ca, host, authentication="Kerberos", certificate=cert))["certificate"]
    assert "uses no certificate" in reason
