"""hvreplica_provider: Hyper-V Replica across untrusted domains as Pulumi dynamic resources.

The resources and their providers are exported lazily, so importing a submodule such as
`hvreplica_provider.pki` does not load the Pulumi SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hvreplica_provider.resources.certificate_authority import (
        CertificateAuthority,
        CertificateAuthorityArgs,
        CertificateAuthorityProvider,
    )
    from hvreplica_provider.resources.host_certificate import (
        HostCertificate,
        HostCertificateArgs,
        HostCertificateProvider,
    )
    from hvreplica_provider.resources.replica_server import (
        ReplicaServer,
        ReplicaServerArgs,
        ReplicaServerProvider,
    )
    from hvreplica_provider.resources.replication_relationship import (
        ReplicationRelationship,
        ReplicationRelationshipArgs,
        ReplicationRelationshipProvider,
    )

_EXPORTS = {
    "CertificateAuthority": "hvreplica_provider.resources.certificate_authority",
    "CertificateAuthorityArgs": "hvreplica_provider.resources.certificate_authority",
    "CertificateAuthorityProvider": "hvreplica_provider.resources.certificate_authority",
    "HostCertificate": "hvreplica_provider.resources.host_certificate",
    "HostCertificateArgs": "hvreplica_provider.resources.host_certificate",
    "HostCertificateProvider": "hvreplica_provider.resources.host_certificate",
    "ReplicaServer": "hvreplica_provider.resources.replica_server",
    "ReplicaServerArgs": "hvreplica_provider.resources.replica_server",
    "ReplicaServerProvider": "hvreplica_provider.resources.replica_server",
    "ReplicationRelationship": "hvreplica_provider.resources.replication_relationship",
    "ReplicationRelationshipArgs": "hvreplica_provider.resources.replication_relationship",
    "ReplicationRelationshipProvider": "hvreplica_provider.resources.replication_relationship",
}

__all__ = [
    "CertificateAuthority",
    "CertificateAuthorityArgs",
    "CertificateAuthorityProvider",
    "HostCertificate",
    "HostCertificateArgs",
    "HostCertificateProvider",
    "ReplicaServer",
    "ReplicaServerArgs",
    "ReplicaServerProvider",
    "ReplicationRelationship",
    "ReplicationRelationshipArgs",
    "ReplicationRelationshipProvider",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hvreplica_provider' has no attribute {name!r}")
    return getattr(import_module(module), name)
