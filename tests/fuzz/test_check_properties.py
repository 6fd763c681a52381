"""Property-based tests over every resource's `check` (issue 8): whatever the engine hands it,

1. check never raises;
2. no failure reason, warning or log line repeats a secret it was given (passwords, PFX passwords, private
   keys) or key material pasted into another input;
3. whatever it accepts round-trips: checked again as the stored state it stays accepted, and `diff` of that
   state against it reports no change.

Inputs mix valid values, valid values with hostile edits (line breaks, spaces, schemes and ports, case) and
junk of every JSON type the engine can send. Profiles: see conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import logging
import string
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pulumi.dynamic import ResourceProvider

from hvreplica_provider import clock, pki
from hvreplica_provider.resources.certificate_authority import CertificateAuthorityProvider
from hvreplica_provider.resources.host_certificate import HostCertificateProvider
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider

FQDN = "hv1.contoso.com"
PARTNER = "hv2.fabrikam.com"
SECRET_KEYS = frozenset({"password", "client_key_pem", "pfx_password", "ca_private_key_pem"})


@functools.cache
def material() -> dict[str, str]:
    """A CA, a host certificate for FQDN with its PFX, and a second key: made once per process."""
    now = clock.now()
    ca = pki.create_ca(pki.Subject(common_name="Fuzz CA"), 2048, 3650, now)
    ca_cert, ca_key = pki.load_certificate(ca.cert_pem), pki.load_private_key(ca.private_key_pem)
    host = pki.issue_host_certificate(ca_cert, ca_key, FQDN, [], 2048, 365, now)
    pfx = pki.export_pfx(host.cert_pem, host.private_key_pem, ca.cert_pem, "pfx-pass-0001", "legacy", None)
    return {
        "ca_pem": ca.cert_pem,
        "ca_key": ca.private_key_pem,
        "host_key": host.private_key_pem,
        "pfx_base64": base64.b64encode(pfx).decode(),
        "thumbprint": host.info.thumbprint,
    }


# --------------------------------------------------------------------------------------------- strategies

SECRET_TEXT = st.text(alphabet=string.ascii_letters + string.digits, min_size=10, max_size=24).map(
    lambda s: "sek" + s  # long and distinctive: found in a message only if it was copied there
)
EDITS = ("", "\n", "\r\n", " ", "\t", "\x00", ".", ":5986", "/wsman#", "\n6.6.6.6 evil.example.com")
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.one_of(st.integers(), st.text(max_size=8)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=6)), max_size=3),
    st.builds(lambda: material()["host_key"]),  # a private key where none belongs
)


def edited(*values: Any) -> st.SearchStrategy[Any]:
    """One of `values`, possibly with a hostile edit appended, prepended or applied (upper case)."""
    base = st.sampled_from(values)
    text_edits = st.tuples(base, st.sampled_from(EDITS), st.sampled_from(("append", "prepend", "upper")))

    def apply(item: tuple[Any, str, str]) -> Any:
        value, edit, how = item
        if not isinstance(value, str):
            return value
        return {"append": value + edit, "prepend": edit + value, "upper": value.upper()}[how]

    return st.one_of(base, text_edits.map(apply))


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, JUNK)  # valid values twice as often: enough inputs pass to test (3)


def connection() -> st.SearchStrategy[dict[str, Any]]:
    ints = st.one_of(st.integers(min_value=-5, max_value=70000), st.integers(1, 200).map(float))
    return st.fixed_dictionaries(
        {"host": field(edited("127.0.0.1", "hv1.contoso.com", "::1", "https://hv1.contoso.com"))},
        optional={
            "port": field(ints),
            "transport": field(edited("https", "http")),
            "auth": field(edited("basic", "negotiate", "ntlm", "certificate", "kerberos")),
            "username": field(edited("Administrator", "CONTOSO\\ops")),
            "password": field(SECRET_TEXT),
            "ca_cert_pem": field(st.builds(lambda: material()["ca_pem"])),
            "verify_tls": field(st.booleans()),
            "client_cert_pem": field(st.builds(lambda: material()["ca_pem"])),
            "client_key_pem": field(st.one_of(SECRET_TEXT, st.builds(lambda: material()["host_key"]))),
            "operation_timeout_sec": field(ints),
            "read_timeout_sec": field(ints),
            "max_concurrent_operations": field(ints),
            "connect_timeout_sec": field(ints),
            "retry_deadline_sec": field(ints),
        },
    )


def certificate_authority() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"common_name": field(edited("Contoso Replica CA", "x" * 70))},
        optional={
            "organization": field(edited("Contoso")),
            "organizational_unit": field(edited("IT")),
            "country": field(edited("DE", "US", "DEU")),
            "state": field(edited("Bavaria")),
            "locality": field(edited("Munich")),
            "rsa_bits": field(st.sampled_from([2048, 2048.0, 3072, 1024, 4096.5])),
            "validity_days": field(st.integers(-1, 40000)),
            "early_renewal_days": field(st.integers(-1, 4000)),
        },
    )


def host_certificate() -> st.SearchStrategy[dict[str, Any]]:
    long_name = "a" * 60 + ".contoso.com"
    return st.fixed_dictionaries(
        {
            "ca_cert_pem": field(st.one_of(st.builds(lambda: material()["ca_pem"]), edited("not a pem"))),
            "ca_private_key_pem": field(st.builds(lambda: material()["ca_key"])),
            "fqdn": field(edited(FQDN, long_name, "10.0.0.1", "*.contoso.com")),
        },
        optional={
            "additional_dns_names": field(st.lists(edited("broker.contoso.com", FQDN), max_size=3)),
            "rsa_bits": field(st.sampled_from([2048, 3072.0, 4096, 512])),
            "validity_days": field(st.integers(-1, 5000)),
            "early_renewal_days": field(st.integers(-1, 400)),
            "pfx_password": field(SECRET_TEXT),
            "pfx_encryption": field(edited("legacy", "aes256")),
            "friendly_name": field(edited("Replica certificate")),
        },
    )


def replica_server() -> st.SearchStrategy[dict[str, Any]]:
    cert = st.fixed_dictionaries(
        {
            "pfx_base64": field(st.builds(lambda: material()["pfx_base64"])),
            "pfx_password": field(SECRET_TEXT),
        },
        optional={"thumbprint": field(st.builds(lambda: material()["thumbprint"]))},
    )
    good_cert = st.builds(lambda: {"pfx_base64": material()["pfx_base64"], "pfx_password": "pfx-pass-0001"})
    entry = st.fixed_dictionaries(
        {
            "primary_server": field(edited(PARTNER, "*.fabrikam.com")),
            "storage_location": field(edited("D:\\Replica")),
        },
        optional={"trust_group": field(edited("DEFAULT", "site-b"))},
    )
    pems = st.lists(
        st.one_of(st.builds(lambda: material()["ca_pem"]), st.builds(lambda: material()["host_key"])),
        max_size=2,
    )
    return st.fixed_dictionaries(
        {"connection": field(connection()), "fqdn": field(edited(FQDN, PARTNER))},
        optional={
            "certificate": st.one_of(good_cert, good_cert, field(cert)),
            "trusted_ca_certs": field(pems),
            "partner_trusted_ca_certs": field(pems),
            "disable_revocation_check": field(st.booleans()),
            "authentication": field(edited("Certificate", "Kerberos", "CertificateAndKerberos")),
            "certificate_port": field(st.integers(-1, 70000)),
            "kerberos_port": field(st.integers(-1, 70000)),
            "replication_enabled": field(st.booleans()),
            "allowed_primaries": field(st.lists(entry, max_size=2)),
            "allow_any_primary": field(st.booleans()),
            "default_storage_location": field(edited("D:\\Replica", "relative")),
            "open_firewall": field(st.booleans()),
            "hosts_entries": field(
                st.dictionaries(edited(PARTNER), edited("10.0.0.12", "fe80::1"), max_size=2)
            ),
        },
    )


def replication_relationship() -> st.SearchStrategy[dict[str, Any]]:
    times = edited("18:30:00", "06:00:00", "7:05:00", "25:00:00")
    return st.fixed_dictionaries(
        {
            "primary": field(connection()),
            "replica": field(connection()),
            "vm_name": field(edited("web01", "it's $web; 01", "dc[1]")),
            "replica_server_fqdn": field(edited(PARTNER)),
            "certificate_thumbprint": field(st.builds(lambda: material()["thumbprint"])),
        },
        optional={
            "authentication": field(edited("Certificate", "Kerberos")),
            "replica_port": field(st.integers(-1, 70000)),
            "frequency_sec": field(st.sampled_from([30, 300.0, 900, 60])),
            "recovery_history": field(st.integers(-1, 30)),
            "vss_snapshot_frequency_hour": field(st.integers(-1, 15)),
            "compression": field(st.booleans()),
            "replicate_host_kvp_items": field(st.booleans()),
            "auto_resynchronize": field(st.booleans()),
            "auto_resynchronize_start": field(times),
            "auto_resynchronize_end": field(times),
            "excluded_vhd_paths": field(st.lists(edited("D:\\VMs\\data.vhdx"), max_size=2)),
            "bypass_proxy_server": field(st.booleans()),
            "initial_replication": field(edited("network", "scheduled", "export", "none")),
            "initial_replication_destination_path": field(edited("E:\\Export")),
            "wait_for_initial_replication": field(st.booleans()),
            "initial_replication_timeout_sec": field(st.integers(-1, 5000)),
            "delete_replica_vm_on_destroy": field(st.booleans()),
        },
    )


# ------------------------------------------------------------------------------------------------- checks


def secrets_in(value: Any, key: str = "") -> Iterator[str]:
    """Every secret the inputs hold: values of secret keys at any depth, and each line of key material."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from secrets_in(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from secrets_in(v, key)
    elif isinstance(value, str):
        if key in SECRET_KEYS and value.startswith("sek"):  # generated secrets, not junk such as "private_"
            yield value
        if "PRIVATE KEY-----" in value:
            yield from (line for line in value.splitlines()[1:-1] if len(line) > 20)


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """stdout, stderr and the root logger (where pulumi.log goes without an engine), in one buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        root.removeHandler(handler)


def state_after_create(provider: ResourceProvider, inputs: dict[str, Any]) -> dict[str, Any]:
    """The stored state the next diff sees: the inputs plus what create records that diff reads (outputs
    diff does not read are left out; making real keys per example would take minutes)."""
    if isinstance(provider, HostCertificateProvider) and inputs.get("pfx_password") is None:
        return {**inputs, "pfx_password_generated": True}
    return dict(inputs)


def check_properties(provider: ResourceProvider, raw: dict[str, Any]) -> None:
    given_secrets = set(secrets_in(raw))
    with captured_output() as output:
        first = provider.check({}, raw)  # property 1: any exception fails the test
    said = [f.reason for f in first.failures] + [f.property for f in first.failures] + [output.getvalue()]
    leaked = [s for s in given_secrets if any(s in text for text in said)]
    assert leaked == [], f"secret echoed: {leaked[:1]} in {said}"  # property 2
    if first.failures:
        return
    state = state_after_create(provider, first.inputs)
    with captured_output():
        second = provider.check(state, dict(first.inputs))
    assert second.failures == [], [f.reason for f in second.failures]  # property 3
    diff = provider.diff("id", state, second.inputs)
    assert diff.changes is False, (diff.replaces, first.inputs)


def property_test(
    provider: ResourceProvider, strategy: st.SearchStrategy[dict[str, Any]]
) -> Callable[[dict[str, Any]], None]:
    @given(strategy)
    def run(raw: dict[str, Any]) -> None:
        check_properties(provider, raw)

    return run


test_certificate_authority_check = property_test(CertificateAuthorityProvider(), certificate_authority())
test_host_certificate_check = property_test(HostCertificateProvider(), host_certificate())
test_replica_server_check = property_test(ReplicaServerProvider(), replica_server())
test_replication_relationship_check = property_test(
    ReplicationRelationshipProvider(), replication_relationship()
)
