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

from hypothesis import event, given
from hypothesis import strategies as st
from pulumi.dynamic import ResourceProvider

from hvreplica_provider import clock, pki
from hvreplica_provider.resources.certificate_authority import CertificateAuthorityProvider
from hvreplica_provider.resources.host_certificate import HostCertificateProvider
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from hvreplica_provider.resources.replication_wait import InitialReplicationWaitProvider
from hvreplica_provider.resources.test_failover import TestFailoverProvider

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
    pfx = pki.export_pfx(host.cert_pem, host.private_key_pem, "pfx-pass-0001", "legacy", None)
    return {
        "ca_pem": ca.cert_pem,
        "ca_key": ca.private_key_pem,
        "host_key": host.private_key_pem,
        "pfx_base64": base64.b64encode(pfx).decode(),
        "thumbprint": host.info.thumbprint,
    }


# --------------------------------------------------------------------------------------------- strategies
#
# Each resource has a clean strategy (valid, coherent inputs: exercises property 3) and a hostile one (every
# value valid, edited or junk: exercises 1 and 2); the test draws from both.

SECRET_TEXT = st.text(alphabet=string.ascii_letters + string.digits, min_size=10, max_size=24).map(
    lambda s: "sek" + s  # long and distinctive: found in a message only if it was copied there
)
WORDS = (
    st.text(alphabet=string.ascii_letters + string.digits + " -", min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
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


def hostile(clean: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A clean value, the same with a hostile edit (appended, prepended, upper-cased), or junk."""

    def edit(value: Any) -> st.SearchStrategy[Any]:
        if not isinstance(value, str):
            return st.just(value)
        return st.sampled_from(EDITS).flatmap(
            lambda e: st.sampled_from([value + e, e + value, value.upper(), value])
        )

    return st.one_of(clean, clean.flatmap(edit), JUNK)


def both(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Clean inputs built from the strategies as given, or hostile ones built from their `hostile` forms."""
    clean = st.fixed_dictionaries(required, optional=optional)
    rough = st.fixed_dictionaries(
        {k: hostile(v) for k, v in required.items()}, optional={k: hostile(v) for k, v in optional.items()}
    )
    return st.one_of(clean, rough)


def pem(name: str) -> st.SearchStrategy[str]:
    return st.builds(lambda: material()[name])


def connection() -> st.SearchStrategy[dict[str, Any]]:
    ints = st.integers(min_value=1, max_value=70000)
    return both(
        {
            "host": st.sampled_from(["127.0.0.1", "hv1.contoso.com", "::1"]),
            "auth": st.sampled_from(["basic", "negotiate", "ntlm"]),
            "username": st.sampled_from(["Administrator", "CONTOSO\\ops"]),
            "password": SECRET_TEXT,
        },
        {
            "port": st.integers(1, 65535).map(float),  # the engine sends numbers as floats
            "ca_cert_pem": pem("ca_pem"),
            "verify_tls": st.booleans(),
            "client_key_pem": st.one_of(SECRET_TEXT, pem("host_key")),
            "operation_timeout_sec": st.integers(1, 20),
            "read_timeout_sec": st.integers(30, 70000),
            "max_concurrent_operations": ints,
            "connect_timeout_sec": ints,
            "retry_deadline_sec": st.integers(0, 70000),
        },
    )


def certificate_authority() -> st.SearchStrategy[dict[str, Any]]:
    return both(
        {"common_name": WORDS},
        {
            "organization": WORDS,
            "organizational_unit": WORDS,
            "country": st.sampled_from(["DE", "US", "fr"]),
            "state": WORDS,
            "locality": WORDS,
            "rsa_bits": st.sampled_from([2048, 2048.0, 3072, 4096]),
            "validity_days": st.integers(2, 36500),
            "early_renewal_days": st.integers(0, 1),
        },
    )


def host_certificate() -> st.SearchStrategy[dict[str, Any]]:
    return both(
        {
            "ca_cert_pem": pem("ca_pem"),
            "ca_private_key_pem": pem("ca_key"),
            "fqdn": st.sampled_from([FQDN, "a" * 60 + ".contoso.com", "Hv1.Contoso.com"]),
        },
        {
            "additional_dns_names": st.lists(st.sampled_from(["broker.contoso.com", "hv-rb.contoso.com"])),
            "rsa_bits": st.sampled_from([2048, 3072.0, 4096]),
            "validity_days": st.integers(2, 3000),
            "early_renewal_days": st.integers(0, 1),
            "pfx_password": SECRET_TEXT,
            "pfx_encryption": st.sampled_from(["legacy", "aes256"]),
            "friendly_name": WORDS,
        },
    )


def replica_server() -> st.SearchStrategy[dict[str, Any]]:
    certificate = both(
        {"pfx_base64": pem("pfx_base64"), "pfx_password": st.just("pfx-pass-0001")},
        {"thumbprint": pem("thumbprint")},
    )
    entry = both(
        {
            "primary_server": st.sampled_from([PARTNER, "*.fabrikam.com"]),
            "storage_location": st.just("D:\\Replica"),
        },
        {"trust_group": st.sampled_from(["DEFAULT", "site-b"])},
    )
    return both(
        {
            "connection": connection(),
            "fqdn": st.sampled_from([FQDN, "HV1.contoso.com"]),
            "certificate": certificate,
            "disable_revocation_check": st.just(True),  # the fuzz CA publishes no CRL
        },
        {
            "trusted_ca_certs": st.lists(st.one_of(pem("ca_pem"), pem("host_key")), max_size=2),
            "partner_trusted_ca_certs": st.lists(pem("ca_pem"), max_size=1),
            "authentication": st.sampled_from(["Certificate", "Kerberos", "CertificateAndKerberos"]),
            "certificate_port": st.integers(1, 65535),
            "kerberos_port": st.integers(1, 65535),
            "allowed_primaries": st.lists(entry, max_size=1),
            "default_storage_location": st.sampled_from(["D:\\Replica", "E:\\"]),
            "open_firewall": st.booleans(),
            "hosts_entries": st.dictionaries(
                st.sampled_from([PARTNER]), st.sampled_from(["10.0.0.12", "fe80::1"])
            ),
        },
    )


def replication_relationship() -> st.SearchStrategy[dict[str, Any]]:
    times = st.sampled_from(["18:30:00", "06:00:00", "7:05:00", "25:00:00"])
    return both(
        {
            "primary": connection(),
            "replica": connection(),
            "vm_name": st.sampled_from(["web01", "it's $web; 01", "dc[1]"]),
            "replica_server_fqdn": st.sampled_from([PARTNER, "HV2.fabrikam.com"]),
            "certificate_thumbprint": pem("thumbprint"),
        },
        {
            "replica_port": st.integers(1, 65535),
            "frequency_sec": st.sampled_from([30, 300.0, 900]),
            "recovery_history": st.integers(0, 24),
            "compression": st.booleans(),
            "replicate_host_kvp_items": st.booleans(),
            "auto_resynchronize": st.booleans(),
            "auto_resynchronize_start": times,
            "auto_resynchronize_end": times,
            "excluded_vhd_paths": st.lists(st.sampled_from(["D:\\VMs\\data.vhdx", "d:\\vms\\Log.vhdx"])),
            "bypass_proxy_server": st.booleans(),
            "initial_replication": st.sampled_from(["network", "none"]),
            "initial_replication_timeout_sec": st.integers(1, 5000),
            "delete_replica_vm_on_destroy": st.booleans(),
            "suspended": st.booleans(),
            "resynchronize": st.sampled_from(["when_required", "never"]),
            "on_direction_change": st.sampled_from(["refuse", "planned_failover"]),
            "start_vm_after_failover": st.booleans(),
        },
    )


def drill_inputs() -> st.SearchStrategy[dict[str, Any]]:
    return both(
        {"replica": connection(), "vm_name": st.sampled_from(["web01", "it's $web; 01", "dc[1]"])},
        {
            "recovery_point": st.sampled_from(["web01 - Standard Replica - (11/28/2026 - 1:05:09 PM)", "x*"]),
            "switch_name": st.sampled_from(["Isolated", "DR test net"]),
            "start_vm": st.booleans(),
        },
    )


def replication_wait() -> st.SearchStrategy[dict[str, Any]]:
    vm_ids = st.sampled_from(["0b0e7c9e-6f53-4d7c-9f3c-3d2c1a0e9b11", "2F1C7C0A-1A7E-4A34-8F7E-0C6A4D9E5B21"])
    return both(
        {"connection": connection(), "vm_ids": st.lists(vm_ids)},
        {"timeout_sec": st.integers(1, 5000)},
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
    event("rejected" if first.failures else "accepted")  # --hypothesis-show-statistics reports the shares
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
test_test_failover_check = property_test(TestFailoverProvider(), drill_inputs())
test_replication_wait_check = property_test(InitialReplicationWaitProvider(), replication_wait())
