"""CertificateAuthority and HostCertificate through the real dynamic-provider server, driven like the engine.

Each test is a sequence of `pulumi up` / `refresh` / `destroy` steps (tests/support/engine.py):
create, an unchanged second up (no change), in-place updates, replaces, the renewal window reached
with the provider's clock injected through HVREPLICA_FAKE_NOW in the server's environment, refresh
and delete. RSA 2048 keeps the suite fast; key size itself is covered by a replace to 3072.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key, pkcs12

from hvreplica_provider import CertificateAuthorityProvider, HostCertificateProvider
from tests.support import openssl
from tests.support.engine import (
    CA_TYPE,
    HOST_TYPE,
    UNKNOWN,
    CheckFailed,
    ProviderServer,
    ResourceState,
    ServerFactory,
    Step,
    with_provider,
)

CA_INPUTS = {
    "common_name": "Contoso Replica CA",
    "organization": "Contoso",
    "country": "PL",
    "rsa_bits": 2048,
}
FQDN = "host1.contoso.com"


@pytest.fixture(scope="module")
def server(module_provider_servers: ServerFactory) -> ProviderServer:
    return module_provider_servers()


@pytest.fixture(scope="module")
def server_at(module_provider_servers: ServerFactory) -> Callable[[datetime], ProviderServer]:
    """A provider server whose clock reads `moment` (the providers honour HVREPLICA_FAKE_NOW)."""
    started: dict[datetime, ProviderServer] = {}

    def at(moment: datetime) -> ProviderServer:
        if moment not in started:
            stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            started[moment] = module_provider_servers(env={"HVREPLICA_FAKE_NOW": stamp})
        return started[moment]

    return at


def up_ca(server: ProviderServer, inputs: dict[str, Any], state: ResourceState | None = None) -> Step:
    return server.up(server.urn(CA_TYPE, "ca-contoso"), CertificateAuthorityProvider(), inputs, state)


def up_host(server: ProviderServer, inputs: dict[str, Any], state: ResourceState | None = None) -> Step:
    return server.up(server.urn(HOST_TYPE, f"cert-{FQDN}"), HostCertificateProvider(), inputs, state)


@pytest.fixture(scope="module")
def ca(server: ProviderServer) -> dict[str, Any]:
    """A CA created through the server: its outputs feed the host certificates."""
    return up_ca(server, CA_INPUTS).state.outputs


def host_inputs(ca_outputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "ca_cert_pem": ca_outputs["cert_pem"],
        "ca_private_key_pem": ca_outputs["private_key_pem"],
        "fqdn": FQDN,
        "rsa_bits": 2048,
        **extra,
    }


def certificate(outputs: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(outputs["cert_pem"].encode())


def not_after(outputs: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(outputs["not_after"].replace("Z", "+00:00"))


def open_pfx(outputs: dict[str, Any], password: str) -> pkcs12.PKCS12KeyAndCertificates:
    return pkcs12.load_pkcs12(base64.b64decode(outputs["pfx_base64"]), password.encode())


CERT_FACTS = ("cert_pem", "private_key_pem", "thumbprint", "serial_number", "not_before", "not_after")


def same_certificate(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[key] == b[key] for key in CERT_FACTS)


# -- CertificateAuthority ------------------------------------------------------------------------


def test_ca_create_fills_outputs_and_unchanged_up_is_no_change(server: ProviderServer) -> None:
    created = up_ca(server, CA_INPUTS)
    outputs = created.state.outputs
    cert = certificate(outputs)

    assert created.op == "create"
    assert created.state.id == outputs["thumbprint"]
    assert outputs["thumbprint"] == hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    assert (
        outputs["serial_number"] and cert.subject.rfc4514_string() == "CN=Contoso Replica CA,O=Contoso,C=PL"
    )
    key = load_pem_private_key(outputs["private_key_pem"].encode(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    # Defaults filled by check travel as floats and come back as the documented values.
    assert (outputs["validity_days"], outputs["early_renewal_days"]) == (3650, 90)
    assert outputs["ready_for_renewal"] is False
    assert abs(not_after(outputs) - (datetime.now(UTC) + timedelta(days=3650))) < timedelta(minutes=10)

    again = up_ca(server, CA_INPUTS, created.state)
    assert again.op == "same" and again.diff is not None and again.diff.changes is False
    assert again.state.outputs == outputs


def test_ca_early_renewal_days_updates_in_place(server: ProviderServer) -> None:
    created = up_ca(server, CA_INPUTS).state
    updated = up_ca(server, {**CA_INPUTS, "early_renewal_days": 60}, created)

    assert updated.op == "update" and updated.diff is not None and updated.diff.replaces == ()
    assert updated.state.id == created.id
    assert same_certificate(updated.state.outputs, created.outputs)
    assert updated.state.outputs["early_renewal_days"] == 60
    # Update returned FULL outputs, so the next unchanged up is still no change.
    assert up_ca(server, {**CA_INPUTS, "early_renewal_days": 60}, updated.state).op == "same"


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (
            {"common_name": "Contoso Replica CA 2"},
            lambda c: "CN=Contoso Replica CA 2" in c.subject.rfc4514_string(),
        ),
        ({"rsa_bits": 3072}, lambda c: c.public_key().key_size == 3072),
        (
            {"validity_days": 1825},
            lambda c: c.not_valid_after_utc - c.not_valid_before_utc < timedelta(days=1826),
        ),
    ],
)
def test_ca_replaces_when_key_material_inputs_change(
    server: ProviderServer, change: dict[str, Any], check: Callable[[x509.Certificate], bool]
) -> None:
    created = up_ca(server, CA_INPUTS).state
    replaced = up_ca(server, {**CA_INPUTS, **change}, created)

    assert replaced.op == "replace" and replaced.diff is not None
    assert replaced.diff.replaces == tuple(change)
    assert replaced.state.outputs["thumbprint"] != created.outputs["thumbprint"]
    assert check(certificate(replaced.state.outputs))


def test_ca_check_failures_name_the_property(server: ProviderServer) -> None:
    with pytest.raises(CheckFailed) as failed:
        up_ca(server, {**CA_INPUTS, "rsa_bits": 1024, "validity_days": 30, "early_renewal_days": 30})
    assert {f.property for f in failed.value.failures} == {"rsa_bits", "early_renewal_days"}


def test_ca_renewal_window_replaces_and_refresh_reports_it(
    server: ProviderServer, server_at: Callable[[datetime], ProviderServer]
) -> None:
    created = up_ca(server, CA_INPUTS).state
    expiry = not_after(created.outputs)

    before_window = server_at(expiry - timedelta(days=91))
    assert up_ca(before_window, CA_INPUTS, created).op == "same"
    assert before_window.refresh(created).outputs["ready_for_renewal"] is False

    in_window = server_at(expiry - timedelta(days=89))
    refreshed = in_window.refresh(created)
    assert refreshed is not None and refreshed.id == created.id
    assert refreshed.outputs == {**created.outputs, "ready_for_renewal": True}

    renewed = up_ca(in_window, CA_INPUTS, refreshed)
    assert renewed.op == "replace" and renewed.diff is not None
    assert renewed.diff.replaces == ("ready_for_renewal",)
    assert renewed.state.outputs["ready_for_renewal"] is False
    # Issued at the injected time, so it lives a full validity period from then.
    assert not_after(renewed.state.outputs) - expiry > timedelta(days=88)


def test_ca_refresh_and_delete(server: ProviderServer) -> None:
    created = up_ca(server, CA_INPUTS).state
    refreshed = server.refresh(created)
    assert refreshed is not None and refreshed.outputs == created.outputs
    # State-only resource: delete removes nothing remote and is idempotent.
    server.destroy(created)
    server.destroy(created)


# -- HostCertificate -----------------------------------------------------------------------------


def test_host_create_is_valid_for_both_tls_roles_and_unchanged_up_is_no_change(
    server: ProviderServer, ca: dict[str, Any], tmp_path: Path
) -> None:
    created = up_host(server, host_inputs(ca))
    outputs = created.state.outputs

    assert created.op == "create" and created.state.id == outputs["thumbprint"]
    for purpose in ("sslserver", "sslclient"):
        verdict = openssl.verify(
            tmp_path, ca["cert_pem"], outputs["cert_pem"], purpose=purpose, hostname=FQDN
        )
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert outputs["chain_pem"] == outputs["cert_pem"] + ca["cert_pem"]
    # A generated PFX password: >= 128 bits, and the PFX holds the cert, its key and the CA.
    assert outputs["pfx_password_generated"] is True and len(outputs["pfx_password"]) >= 22
    pfx = open_pfx(outputs, outputs["pfx_password"])
    assert pfx.cert is not None and pfx.cert.certificate == certificate(outputs)
    assert pfx.cert.friendly_name == FQDN.encode()
    assert pfx.additional_certs == []  # no CA inside: ReplicaServer imports it into Root itself

    again = up_host(server, host_inputs(ca), created.state)
    assert again.op == "same" and again.state.outputs == outputs


def test_host_pfx_settings_update_in_place_with_the_same_key(
    server: ProviderServer, ca: dict[str, Any], tmp_path: Path
) -> None:
    state = up_host(server, host_inputs(ca)).state
    original = state.outputs
    generated = original["pfx_password"]

    step = up_host(server, host_inputs(ca, pfx_encryption="aes256"), state)
    assert step.op == "update" and same_certificate(step.state.outputs, original)
    assert step.state.outputs["pfx_base64"] != original["pfx_base64"]
    info = openssl.pkcs12_info(tmp_path, base64.b64decode(step.state.outputs["pfx_base64"]), generated)
    assert info.returncode == 0 and "AES-256-CBC" in info.stderr + info.stdout

    step = up_host(
        server, host_inputs(ca, pfx_encryption="aes256", friendly_name="Replica HOST1"), step.state
    )
    assert step.op == "update" and same_certificate(step.state.outputs, original)
    assert open_pfx(step.state.outputs, generated).cert.friendly_name == b"Replica HOST1"

    password = "correct horse battery staple 42"
    inputs = host_inputs(ca, pfx_encryption="aes256", friendly_name="Replica HOST1", pfx_password=password)
    step = up_host(server, inputs, step.state)
    assert step.op == "update" and same_certificate(step.state.outputs, original)
    assert step.state.outputs["pfx_password_generated"] is False
    assert openssl.pkcs12_key_matches(
        tmp_path, base64.b64decode(step.state.outputs["pfx_base64"]), password, original["cert_pem"]
    )
    with pytest.raises(ValueError):
        open_pfx(step.state.outputs, generated)

    exported = step.state.outputs["pfx_base64"]
    step = up_host(server, {**inputs, "early_renewal_days": 20}, step.state)
    assert step.op == "update" and step.state.outputs["pfx_base64"] == exported
    assert up_host(server, {**inputs, "early_renewal_days": 20}, step.state).op == "same"
    # None of the secrets reached the provider's stdout/stderr (shown by the CLI).
    for secret in (password, generated, original["private_key_pem"], ca["private_key_pem"], exported):
        assert secret not in server.logs


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"fqdn": "host9.contoso.com"}, lambda c: c.subject.rfc4514_string() == "CN=host9.contoso.com"),
        ({"rsa_bits": 3072}, lambda c: c.public_key().key_size == 3072),
        (
            {"additional_dns_names": ["replica-broker.contoso.com"]},
            lambda c: (
                "replica-broker.contoso.com"
                in c.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.DNSName)
            ),
        ),
        (
            {"validity_days": 365},
            lambda c: c.not_valid_after_utc - c.not_valid_before_utc < timedelta(days=366),
        ),
    ],
)
def test_host_replaces_when_key_material_inputs_change(
    server: ProviderServer,
    ca: dict[str, Any],
    change: dict[str, Any],
    check: Callable[[x509.Certificate], bool],
) -> None:
    created = up_host(server, host_inputs(ca)).state
    replaced = up_host(server, host_inputs(ca, **change), created)

    assert replaced.op == "replace" and replaced.diff is not None
    assert replaced.diff.replaces == tuple(change)
    assert replaced.state.outputs["thumbprint"] != created.outputs["thumbprint"]
    assert check(certificate(replaced.state.outputs))


def test_host_is_reissued_when_its_ca_is_replaced(server: ProviderServer, ca: dict[str, Any]) -> None:
    created = up_host(server, host_inputs(ca)).state
    other_ca = up_ca(server, {**CA_INPUTS, "common_name": "Contoso Replica CA (renewed)"}).state.outputs

    replaced = up_host(server, host_inputs(other_ca), created)

    assert replaced.op == "replace" and replaced.diff is not None
    assert set(replaced.diff.replaces) == {"ca_cert_pem", "ca_private_key_pem"}
    certificate(replaced.state.outputs).verify_directly_issued_by(certificate(other_ca))


def test_host_renewal_window_replaces_and_refresh_reports_it(
    server: ProviderServer,
    server_at: Callable[[datetime], ProviderServer],
    ca: dict[str, Any],
    tmp_path: Path,
) -> None:
    created = up_host(server, host_inputs(ca)).state
    expiry = not_after(created.outputs)

    before_window = server_at(expiry - timedelta(days=31))
    assert up_host(before_window, host_inputs(ca), created).op == "same"

    in_window = server_at(expiry - timedelta(days=29))
    refreshed = in_window.refresh(created)
    assert refreshed is not None
    assert refreshed.outputs == {**created.outputs, "ready_for_renewal": True}

    renewed = up_host(in_window, host_inputs(ca), refreshed)
    assert renewed.op == "replace" and renewed.diff is not None
    assert renewed.diff.replaces == ("ready_for_renewal",)
    outputs = renewed.state.outputs
    assert outputs["ready_for_renewal"] is False and not_after(outputs) > expiry
    # The renewed certificate is valid at the injected time for the same name, by the same CA.
    verdict = openssl.verify(
        tmp_path,
        ca["cert_pem"],
        outputs["cert_pem"],
        purpose="sslserver",
        hostname=FQDN,
        attime=expiry - timedelta(days=29),
    )
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_host_refresh_and_delete(server: ProviderServer, ca: dict[str, Any]) -> None:
    created = up_host(server, host_inputs(ca)).state
    refreshed = server.refresh(created)
    assert refreshed is not None and refreshed.outputs == created.outputs
    server.destroy(created)
    server.destroy(created)


def test_host_preview_with_unknown_ca_outputs(server: ProviderServer, ca: dict[str, Any]) -> None:
    """In a preview, the CA's outputs are unknown until it exists: check must pass, diff must replace."""
    urn = server.urn(HOST_TYPE, f"cert-{FQDN}")
    unknown_ca = host_inputs(ca, ca_cert_pem=UNKNOWN, ca_private_key_pem=UNKNOWN)

    preview = server.check(urn, with_provider(HostCertificateProvider(), unknown_ca))
    assert preview.failures == []

    created = up_host(server, host_inputs(ca)).state
    checked = server.check(urn, with_provider(HostCertificateProvider(), unknown_ca), created.inputs)
    assert checked.failures == []
    outcome = server.diff(urn, created.id, created.outputs, checked.inputs, created.inputs)
    assert outcome.changes is True and set(outcome.replaces) == {"ca_cert_pem", "ca_private_key_pem"}
