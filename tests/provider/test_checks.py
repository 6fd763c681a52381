"""`check` of ReplicaServer and ReplicationRelationship: the scenario's pitfalls are caught before any host is
touched, with messages that say what to change. No server is involved (and none is reachable)."""

from __future__ import annotations

import base64
import datetime as dt

import dill
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown

from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.support.certs import CLIENT_AUTH, SERVER_AUTH, Issued, make_ca, make_host_cert

FQDN = "host1.contoso.com"
PASSWORD = "pfx-Secret-1"
# Nothing listens here: a check that tried to reach the host would fail loudly.
CONNECTION = {
    "host": "127.0.0.1",
    "port": 9.0,
    "auth": "basic",
    "username": "Administrator",
    "password": "pw",
}


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Contoso Lab CA", key_slot=0)


@pytest.fixture(scope="module")
def other_ca() -> Issued:
    return make_ca("Fabrikam Lab CA", key_slot=1)


def pem(issued: Issued) -> str:
    return issued.cert_pem.decode()


def certificate(host: Issued, ca: Issued, password: str = PASSWORD) -> dict[str, str]:
    return {"pfx_base64": base64.b64encode(host.pfx(password, (ca.cert,))).decode(), "pfx_password": password}


def server_inputs(ca: Issued, host: Issued, **overrides: object) -> dict[str, object]:
    inputs: dict[str, object] = {
        "connection": CONNECTION,
        "fqdn": FQDN,
        "certificate": certificate(host, ca),
        "trusted_ca_certs": [pem(ca)],
        "disable_revocation_check": True,
    }
    inputs.update(overrides)
    return inputs


def failures(inputs: dict[str, object]) -> dict[str, str]:
    result = ReplicaServerProvider().check({}, inputs)
    return {f.property: f.reason for f in result.failures}


def test_good_inputs_pass_and_are_normalised(ca: Issued) -> None:
    host = make_host_cert(ca, FQDN)
    result = ReplicaServerProvider().check({}, server_inputs(ca, host, certificate_port=8443.0))
    assert result.failures == []
    assert result.inputs["certificate_port"] == 8443 and isinstance(result.inputs["certificate_port"], int)
    assert result.inputs["connection"]["port"] == 9 and result.inputs["kerberos_port"] == 80
    assert result.inputs["certificate"]["thumbprint"] == host.thumbprint
    assert result.inputs["authentication"] == "Certificate" and result.inputs["open_firewall"] is True


def test_certificate_not_covering_fqdn(ca: Issued) -> None:
    found = failures(server_inputs(ca, make_host_cert(ca, "other.contoso.com")))
    assert "does not cover fqdn 'host1.contoso.com'" in found["certificate"]


def test_certificate_missing_client_auth_eku(ca: Issued) -> None:
    found = failures(server_inputs(ca, make_host_cert(ca, FQDN, ekus=(SERVER_AUTH,))))
    assert "lacks the Client Authentication EKU" in found["certificate"]


def test_expired_and_not_yet_valid(ca: Issued) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = make_host_cert(
        ca, FQDN, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    assert "expired at" in failures(server_inputs(ca, expired))["certificate"]
    future = make_host_cert(
        ca, FQDN, not_before=now + dt.timedelta(days=2), not_after=now + dt.timedelta(days=9)
    )
    assert "is not valid before" in failures(server_inputs(ca, future))["certificate"]


def test_not_signed_by_partner_ca_or_self_signed(ca: Issued, other_ca: Issued) -> None:
    host = make_host_cert(ca, FQDN)
    found = failures(server_inputs(ca, host, partner_trusted_ca_certs=[pem(other_ca)]))
    assert "not signed by any CA in partner_trusted_ca_certs" in found["certificate"]
    self_signed = make_host_cert(None, FQDN)
    assert "self-signed" in failures(server_inputs(ca, self_signed))["certificate"]


def test_revocation_check_on_without_crl_distribution_point(ca: Issued) -> None:
    found = failures(server_inputs(ca, make_host_cert(ca, FQDN), disable_revocation_check=False))
    assert "no CRL distribution point" in found["disable_revocation_check"]
    assert "disable_revocation_check: true" in found["disable_revocation_check"]


def test_revocation_check_on_with_crl_distribution_point_passes(ca: Issued) -> None:
    base = make_host_cert(ca, FQDN)
    builder = (
        x509.CertificateBuilder()
        .subject_name(base.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(base.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(base.cert.not_valid_before_utc)
        .not_valid_after(base.cert.not_valid_after_utc)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(FQDN)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([SERVER_AUTH, CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://pki.contoso.com/root.crl")], None, None, None
                    )
                ]
            ),
            critical=False,
        )
    )
    with_crl = Issued(builder.sign(ca.key, hashes.SHA256()), base.key)
    assert failures(server_inputs(ca, with_crl, disable_revocation_check=False)) == {}


def test_wrong_pfx_password_and_thumbprint_mismatch_never_echo_the_password(ca: Issued) -> None:
    host = make_host_cert(ca, FQDN)
    bad = server_inputs(ca, host, certificate={**certificate(host, ca), "pfx_password": "wrong-pass-77"})
    reason = failures(bad)["certificate"]
    assert "password is wrong" in reason and "wrong-pass-77" not in reason
    mismatch = server_inputs(ca, host, certificate={**certificate(host, ca), "thumbprint": "AB" * 20})
    assert "does not match the PFX" in failures(mismatch)["certificate"]


def test_server_settings_validation(ca: Issued) -> None:
    host = make_host_cert(ca, FQDN)
    found = failures(
        server_inputs(
            ca,
            host,
            fqdn="10.0.0.5",
            authentication="Basic",
            allow_any_primary=True,
            allowed_primaries=[
                {"primary_server": "host2.fabrikam.com", "storage_location": "relative\\path"}
            ],
            hosts_entries={"host2.fabrikam.com": "not-an-ip"},
            trusted_ca_certs=[pem(host)],
            connection={**CONNECTION, "transport": "http"},
        )
    )
    assert "IP address" in found["fqdn"]
    assert "Certificate" in found["authentication"]
    assert "cannot be combined with allow_any_primary" in found["allowed_primaries"]
    assert "needs default_storage_location" in found["default_storage_location"]
    assert "absolute local Windows path" in found["allowed_primaries[0].storage_location"]
    assert "must be an IPv4 or IPv6 address" in found["hosts_entries"]
    assert "not a CA certificate" in found["trusted_ca_certs"]
    assert "clear text" in found["connection.auth"]


def test_kerberos_needs_no_certificate_and_unknowns_are_skipped(ca: Issued) -> None:
    inputs = {"connection": CONNECTION, "fqdn": FQDN, "authentication": "Kerberos"}
    assert ReplicaServerProvider().check({}, inputs).failures == []
    preview = {"connection": Unknown(), "fqdn": FQDN, "certificate": Unknown(), "trusted_ca_certs": [pem(ca)]}
    assert ReplicaServerProvider().check({}, preview).failures == []


def relationship(**overrides: object) -> dict[str, object]:
    inputs: dict[str, object] = {
        "primary": CONNECTION,
        "replica": {**CONNECTION, "host": "127.0.0.2"},
        "vm_name": "web 01 $x;'q'",
        "replica_server_fqdn": "host2.fabrikam.com",
        "certificate_thumbprint": "ab cd " * 10 + "\u200e",
    }
    inputs.update(overrides)
    return inputs


def rel_failures(inputs: dict[str, object]) -> dict[str, str]:
    return {f.property: f.reason for f in ReplicationRelationshipProvider().check({}, inputs).failures}


def test_relationship_defaults_and_thumbprint_normalisation() -> None:
    result = ReplicationRelationshipProvider().check({}, relationship(frequency_sec=30.0))
    assert result.failures == []
    assert result.inputs["certificate_thumbprint"] == "ABCD" * 10
    assert result.inputs["frequency_sec"] == 30 and result.inputs["replica_port"] == 443
    assert result.inputs["vm_name"] == "web 01 $x;'q'"
    assert result.inputs["initial_replication"] == "network" and result.inputs["compression"] is True


def test_relationship_pitfalls() -> None:
    found = rel_failures(
        relationship(
            replica_server_fqdn="127.0.0.12",
            frequency_sec=60,
            recovery_history=0,
            vss_snapshot_frequency_hour=4,
            vm_name="web*",
            certificate_thumbprint="",
            auto_resynchronize_start="25:00:00",
        )
    )
    assert "IP address" in found["replica_server_fqdn"]
    assert "30, 300, 900" in found["frequency_sec"]
    assert "needs recovery_history" in found["vss_snapshot_frequency_hour"]
    assert "wildcards" in found["vm_name"]
    assert "primary's certificate thumbprint" in found["certificate_thumbprint"]
    assert "00:00:00" in found["auto_resynchronize_start"]
    kerberos = rel_failures(relationship(authentication="Kerberos"))
    assert "must be empty with Kerberos" in kerberos["certificate_thumbprint"]


def test_relationship_initial_replication_modes() -> None:
    found = rel_failures(relationship(initial_replication="scheduled"))
    assert "needs initial_replication_start_time" in found["initial_replication_start_time"]
    past = rel_failures(
        relationship(initial_replication="scheduled", initial_replication_start_time="2001-01-01T00:00:00Z")
    )
    assert "in the future" in past["initial_replication_start_time"]
    export = rel_failures(relationship(initial_replication="export"))
    assert "initial_replication_destination_path" in export["initial_replication_destination_path"]
    none = rel_failures(relationship(initial_replication="none", wait_for_initial_replication=True))
    assert "nothing starts" in none["wait_for_initial_replication"]
    exported = {"initial_replication": "export", "initial_replication_destination_path": "E:\\Seed"}
    waiting = rel_failures(relationship(**exported, wait_for_initial_replication=True))
    assert set(waiting) == {"wait_for_initial_replication"}
    assert "Import-VMInitialReplication" in waiting["wait_for_initial_replication"]
    assert rel_failures(relationship(**exported, wait_for_initial_replication=False)) == {}


def test_providers_pickle_by_reference() -> None:
    for provider in (ReplicaServerProvider(), ReplicationRelationshipProvider()):
        raw = base64.b64decode(serialize_provider(provider))
        assert len(raw) < 200 and b"hvreplica_provider.resources." in raw
        assert type(dill.loads(raw)) is type(provider)


def test_verify_tls_off_warns_and_custom_port_does_not(
    ca: Issued, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    host = make_host_cert(ca, FQDN)
    connection = {**CONNECTION, "verify_tls": False, "password": "Zq9-winrm-secret"}
    assert failures(server_inputs(ca, host, certificate_port=8443, connection=connection)) == {}
    # pulumi.log writes to stderr in the provider server, but to `logging` once an earlier test in
    # this process installed pulumi mocks (they stay installed): read both.
    err = capsys.readouterr().err + caplog.text
    assert "connection.verify_tls is false" in err
    # A custom listener port gets an inbound rule of its own at create, so check has nothing to warn about.
    assert "8443" not in err and "firewall" not in err
    assert "Zq9-winrm-secret" not in err


def test_scheduled_start_time_needs_an_explicit_utc_offset() -> None:
    """A DateTime without offset is read by each host in its own time zone: refused."""
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    local = start.strftime("%Y-%m-%dT%H:%M:%S")
    naive = rel_failures(relationship(initial_replication="scheduled", initial_replication_start_time=local))
    assert "no UTC offset" in naive["initial_replication_start_time"]
    plus_two = start.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    for text in (start.strftime("%Y-%m-%dT%H:%M:%SZ"), plus_two):
        inputs = relationship(initial_replication="scheduled", initial_replication_start_time=text)
        assert "initial_replication_start_time" not in rel_failures(inputs), text
