"""The `__provider` blob each resource carries: pickled by reference, small, no code, and it works.

The engine stores this blob in state and later unpickles it in a new process to run read and
delete. A by-value pickle would freeze old code into state (reference/pulumi-dynamic.md §1).
"""

from __future__ import annotations

import base64
import pickletools

import dill
import pytest
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider

from hvreplica_provider import CertificateAuthorityProvider, HostCertificateProvider

PROVIDERS = [
    (CertificateAuthorityProvider, {"common_name": "Pickle CA", "rsa_bits": 2048.0}),
    (HostCertificateProvider, {"fqdn": "host1.contoso.com", "rsa_bits": 2048.0}),
]


def _strings(blob: bytes) -> set[str]:
    return {str(arg) for _, arg, _ in pickletools.genops(blob) if isinstance(arg, str)}


@pytest.mark.parametrize(("provider_class", "inputs"), PROVIDERS)
def test_round_trip_is_by_reference(provider_class: type[ResourceProvider], inputs: dict) -> None:
    encoded = serialize_provider(provider_class())
    blob = base64.b64decode(encoded)

    # By reference: module + qualified name, nothing else (a by-value class pickles to ~700+ bytes).
    assert len(blob) < 200
    assert _strings(blob) == {provider_class.__module__, provider_class.__qualname__}
    assert b"dill" not in blob and b"_create_code" not in blob
    # Deterministic, so an unchanged program does not change the stored __provider.
    assert serialize_provider(provider_class()) == encoded

    restored = dill.loads(blob)
    assert type(restored) is provider_class
    # The restored instance works: check fills defaults and turns the engine's floats into ints.
    checked = restored.check({}, inputs)
    assert checked.inputs["rsa_bits"] == 2048 and isinstance(checked.inputs["rsa_bits"], int)
    assert "validity_days" in checked.inputs
