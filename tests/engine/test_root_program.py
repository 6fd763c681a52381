"""The root program (__main__.py) under pulumi.runtime mocks whose new_resource runs the real providers.

Each registered dynamic resource is unpickled from its `__provider` input and goes through the
provider's real `check` and `create`, as the engine would do with a `pulumi up`. The stack config
is the committed Pulumi.dev.yaml (RSA 2048 instead of 4096 to keep the suite fast).
"""

from __future__ import annotations

import base64
import hashlib
import json
import runpy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dill
import pulumi
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pulumi.runtime import mocks, rpc, settings

from tests.support.engine import PROJECT_DIR, dynamic_type

CA_TYPE = dynamic_type("hvreplica", "CertificateAuthority")
HOST_TYPE = dynamic_type("hvreplica", "HostCertificate")


class ForwardingMocks(pulumi.runtime.Mocks):
    """new_resource = the real provider's check({}, inputs) then create(checked inputs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outputs: dict[str, dict[str, Any]] = {}
        self.types: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # The engine strips secretness before calling a provider (acceptSecrets=False): do the same.
        plain = {k: _plain(v) for k, v in args.inputs.items()}
        provider = dill.loads(base64.b64decode(plain.pop("__provider")))
        inputs = plain
        checked = provider.check({}, inputs)
        assert not checked.failures, [(f.property, f.reason) for f in checked.failures]
        result = provider.create(checked.inputs)
        with self.lock:
            self.outputs[args.name] = result.outs
            self.types[args.name] = args.typ
        return result.id, result.outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise NotImplementedError(f"the root program makes no calls, got {args.token}")


def _plain(value: Any) -> Any:
    value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class RecordingMonitor(mocks.MockMonitor):
    """Keeps each resource's additional_secret_outputs, which the mock runtime does not apply."""

    def __init__(self, forwarding: ForwardingMocks) -> None:
        super().__init__(forwarding)
        self.secret_outputs: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.secret_outputs[request.name] = list(request.additionalSecretOutputs)
        return super().RegisterResource(request)


def dev_config(**pki_overrides: Any) -> dict[str, Any]:
    """Pulumi.dev.yaml's config as the CLI hands it to the program (objects as JSON strings)."""
    config = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())["config"]
    config["hvreplica:pki"] = {**config["hvreplica:pki"], "rsa_bits": 2048, **pki_overrides}
    return config


def _apply_config(config: dict[str, Any]) -> None:
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})


@pytest.fixture(autouse=True)
def forwarding() -> Iterator[tuple[ForwardingMocks, RecordingMonitor]]:
    forwarding = ForwardingMocks()
    monitor = RecordingMonitor(forwarding)
    settings.set_root_resource(None)  # a fresh Stack per test, so exports do not leak between tests
    pulumi.runtime.set_mocks(forwarding, project="hvreplica", stack="dev", preview=False, monitor=monitor)
    yield forwarding, monitor
    pulumi.runtime.set_all_config({})


def _run_program() -> dict[str, Any]:
    runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")
    root = settings.get_root_resource()
    assert root is not None
    return root.outputs


def _certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _assert_summary(summary: dict[str, Any], outputs: dict[str, Any]) -> x509.Certificate:
    cert = _certificate(outputs["cert_pem"])
    # Windows' thumbprint: SHA-1 of the DER, upper-case hex.
    assert summary["thumbprint"] == hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    assert datetime.fromisoformat(summary["not_after"].replace("Z", "+00:00")) == cert.not_valid_after_utc
    return cert


def _assert_no_key_material(exports: dict[str, Any], created: dict[str, dict[str, Any]]) -> None:
    text = json.dumps(exports)
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    for outputs in created.values():
        for key in ("pfx_base64", "pfx_password", "private_key_pem"):
            if key in outputs:
                assert outputs[key] not in text


@pulumi.runtime.test
def test_per_site_cas_sign_their_hosts_and_only_public_facts_are_exported(forwarding) -> pulumi.Output:
    mocks_, monitor = forwarding
    _apply_config(dev_config())
    exports = _run_program()

    def verify(resolved: dict[str, Any]) -> None:
        created = mocks_.outputs
        assert mocks_.types == {
            "ca-contoso": CA_TYPE,
            "ca-fabrikam": CA_TYPE,
            "cert-host1.contoso.com": HOST_TYPE,
            "cert-host2.fabrikam.com": HOST_TYPE,
        }
        cas = resolved["certificate_authorities"]
        hosts = resolved["host_certificates"]
        assert set(cas) == {"contoso", "fabrikam"}
        assert set(hosts) == {"host1.contoso.com", "host2.fabrikam.com"}
        for site in ("contoso", "fabrikam"):
            _assert_summary(cas[site], created[f"ca-{site}"])
        for fqdn, summary in hosts.items():
            cert = _assert_summary(summary, created[f"cert-{fqdn}"])
            ca = _certificate(created[f"ca-{summary['ca']}"]["cert_pem"])
            cert.verify_directly_issued_by(ca)  # raises when another CA signed it
            assert cert.subject.rfc4514_string() == f"CN={fqdn}"
            assert cert.not_valid_after_utc > datetime.now(UTC)
        assert (
            hosts["host1.contoso.com"]["ca"] == "contoso" and hosts["host2.fabrikam.com"]["ca"] == "fabrikam"
        )
        # The stack settings reached the providers: key size and PFX profile.
        assert all(_certificate(o["cert_pem"]).public_key().key_size == 2048 for o in created.values())
        assert created["cert-host1.contoso.com"]["pfx_encryption"] == "legacy"
        _assert_no_key_material(resolved, created)
        # Secrets are declared for the engine to encrypt (the mock runtime itself ignores them).
        assert "private_key_pem" in monitor.secret_outputs["ca-contoso"]
        assert {"private_key_pem", "pfx_base64", "pfx_password"} <= set(
            monitor.secret_outputs["cert-host1.contoso.com"]
        )

    return pulumi.Output.from_input(exports).apply(verify)


@pulumi.runtime.test
def test_shared_ca_signs_both_sites(forwarding) -> pulumi.Output:
    mocks_, _ = forwarding
    config = dev_config(shared_ca={"common_name": "Replica Shared CA"})
    config["hvreplica:sites"] = [
        {k: v for k, v in site.items() if k != "ca"} for site in config["hvreplica:sites"]
    ]
    _apply_config(config)
    exports = _run_program()

    def verify(resolved: dict[str, Any]) -> None:
        created = mocks_.outputs
        assert sorted(created) == ["ca-shared", "cert-host1.contoso.com", "cert-host2.fabrikam.com"]
        assert list(resolved["certificate_authorities"]) == ["shared"]
        shared = _certificate(created["ca-shared"]["cert_pem"])
        for fqdn, summary in resolved["host_certificates"].items():
            assert summary["ca"] == "shared"
            _assert_summary(summary, created[f"cert-{fqdn}"]).verify_directly_issued_by(shared)
        _assert_no_key_material(resolved, created)

    return pulumi.Output.from_input(exports).apply(verify)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["hvreplica:pki"].update(shared_ca={"common_name": "X"}), r"sites\[0\]\.ca is set"),
        (lambda c: c["hvreplica:sites"][1].pop("ca"), r"sites\[1\]\.ca is missing"),
        (
            lambda c: c["hvreplica:sites"][1]["hosts"][0].update(fqdn="host2.contoso.com"),
            "not in the site's domain",
        ),
        (lambda c: c["hvreplica:sites"][1].update(name="contoso"), "repeats the site name contoso"),
        (lambda c: c["hvreplica:sites"][0]["hosts"][0].update(fqdns="x"), "unknown key"),
        (lambda c: c.pop("hvreplica:sites"), "sites"),
    ],
)
def test_bad_stack_config_fails_before_any_resource(forwarding, mutate, message: str) -> None:
    mocks_, _ = forwarding
    config = dev_config()
    mutate(config)
    _apply_config(config)
    with pytest.raises((ValueError, pulumi.ConfigMissingError), match=message):
        _run_program()
    assert mocks_.outputs == {}
