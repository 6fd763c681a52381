"""The Resource classes under `pulumi.runtime` mocks whose new_resource unpickles the real provider
from `__provider` and runs its check + create, as the provider server would."""

from __future__ import annotations

import base64
from typing import Any

import dill
import pulumi
import pytest
from pulumi.runtime import rpc

from hvreplica_provider import (
    CertificateAuthority,
    CertificateAuthorityArgs,
    HostCertificate,
    HostCertificateArgs,
    pki,
)
from hvreplica_provider.resources import certificate_authority, host_certificate


class ForwardingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: dict[str, tuple[str, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # The engine strips secret wrappers before calling a provider; do the same.
        inputs = {key: rpc.unwrap_rpc_secret(value) for key, value in args.inputs.items()}
        provider = dill.loads(base64.b64decode(inputs["__provider"]))
        self.registered[args.name] = (args.typ, inputs)
        checked = provider.check({}, inputs)
        assert checked.failures == [], [f.reason for f in checked.failures]
        created = provider.create(checked.inputs)
        return created.id, created.outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


@pytest.fixture
def mocks() -> ForwardingMocks:
    forwarding = ForwardingMocks()
    pulumi.runtime.set_mocks(forwarding, preview=False)
    return forwarding


@pulumi.runtime.test
def test_resources_chain_and_expose_outputs(mocks: ForwardingMocks) -> pulumi.Output[Any]:
    ca = CertificateAuthority("ca-a", CertificateAuthorityArgs(common_name="Site A CA", rsa_bits=2048))
    host = HostCertificate("hv1", HostCertificateArgs(
        ca_cert_pem=ca.cert_pem, ca_private_key_pem=ca.private_key_pem, fqdn="hv1.site-a.example",
        additional_dns_names=["broker.site-a.example"], rsa_bits=2048, pfx_encryption="aes256"))

    def verify(values: list[Any]) -> None:
        ca_pem, ca_thumbprint, cert_pem, thumbprint, pfx_base64, password, renew = values
        assert ca_thumbprint == pki.describe(ca_pem).thumbprint
        cert = pki.load_certificate(cert_pem)
        assert pki.issued_by(cert, pki.load_certificate(ca_pem)) and thumbprint == pki.thumbprint(cert)
        assert pki.load_pfx(base64.b64decode(pfx_base64), password).friendly_name == "hv1.site-a.example"
        assert renew is False
        assert mocks.registered["ca-a"][0] == "pulumi-python:dynamic/hvreplica:CertificateAuthority"
        assert mocks.registered["hv1"][0] == "pulumi-python:dynamic/hvreplica:HostCertificate"

    return pulumi.Output.all(ca.cert_pem, ca.thumbprint, host.cert_pem, host.thumbprint, host.pfx_base64,
                             host.pfx_password, host.ready_for_renewal).apply(verify)


def test_providers_pickle_by_reference() -> None:
    from pulumi.dynamic.dynamic import serialize_provider

    providers = (
        certificate_authority.CertificateAuthorityProvider(), host_certificate.HostCertificateProvider(),
    )
    for provider in providers:
        blob = base64.b64decode(serialize_provider(provider))
        assert len(blob) < 200 and b"co_code" not in blob  # module + qualname, no bytecode
        assert type(dill.loads(blob)) is type(provider)


def test_secret_outputs_cover_every_secret() -> None:
    assert set(certificate_authority.SECRET_OUTPUTS) == {"private_key_pem"}
    assert set(host_certificate.SECRET_OUTPUTS) == {
        "ca_private_key_pem", "private_key_pem", "pfx_base64", "pfx_password"}
    opts = host_certificate.with_secret_outputs(pulumi.ResourceOptions(additional_secret_outputs=["x"]),
                                                host_certificate.SECRET_OUTPUTS)
    assert opts.additional_secret_outputs == ["x", *host_certificate.SECRET_OUTPUTS]
