"""hvreplica_provider: Hyper-V Replica across untrusted domains as Pulumi dynamic resources.

Everything the README shows is importable from here: the resources with their Args and providers,
the `ReplicaTopology` building block (`TopologyHost`, `ReplicationFlow`, options), the stack-config
loader `topology_from_config`, the connection types (`HostConnectionArgs` for inputs,
`HostConnection` as the providers parse it) and the `Literal` types of the enumerations.

The names are exported lazily, so importing a submodule such as `hvreplica_provider.pki` does not
load the Pulumi SDK.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hvreplica_provider.inputs import (
        HostConnectionArgs,
        InitialReplicationMode,
        PfxEncryption,
        RelationshipAuthentication,
        ReplicaServerAuthentication,
        ReplicationFrequency,
        RsaBits,
        Transport,
        WinRMAuth,
    )
    from hvreplica_provider.remoting import HostConnection
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
    from hvreplica_provider.resources.replication_wait import (
        InitialReplicationWait,
        InitialReplicationWaitArgs,
        InitialReplicationWaitProvider,
    )
    from hvreplica_provider.resources.test_failover import (
        TestFailover,
        TestFailoverArgs,
        TestFailoverProvider,
    )
    from hvreplica_provider.stack import ConfigError, export_stack_outputs, topology_from_config
    from hvreplica_provider.topology import (
        CertificateOptions,
        ReplicationFlow,
        ReplicationOptions,
        ReplicaTopology,
        TopologyError,
        TopologyHost,
    )

_DISTRIBUTION = "hvreplica"
try:
    __version__ = metadata.version(_DISTRIBUTION)
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

_MODULES = {
    "hvreplica_provider.inputs": (
        "HostConnectionArgs",
        "InitialReplicationMode",
        "PfxEncryption",
        "RelationshipAuthentication",
        "ReplicaServerAuthentication",
        "ReplicationFrequency",
        "RsaBits",
        "Transport",
        "WinRMAuth",
    ),
    "hvreplica_provider.remoting": ("HostConnection",),
    "hvreplica_provider.resources.certificate_authority": (
        "CertificateAuthority",
        "CertificateAuthorityArgs",
        "CertificateAuthorityProvider",
    ),
    "hvreplica_provider.resources.host_certificate": (
        "HostCertificate",
        "HostCertificateArgs",
        "HostCertificateProvider",
    ),
    "hvreplica_provider.resources.replica_server": (
        "ReplicaServer",
        "ReplicaServerArgs",
        "ReplicaServerProvider",
    ),
    "hvreplica_provider.resources.replication_relationship": (
        "ReplicationRelationship",
        "ReplicationRelationshipArgs",
        "ReplicationRelationshipProvider",
    ),
    "hvreplica_provider.resources.replication_wait": (
        "InitialReplicationWait",
        "InitialReplicationWaitArgs",
        "InitialReplicationWaitProvider",
    ),
    "hvreplica_provider.resources.test_failover": (
        "TestFailover",
        "TestFailoverArgs",
        "TestFailoverProvider",
    ),
    "hvreplica_provider.stack": ("ConfigError", "export_stack_outputs", "topology_from_config"),
    "hvreplica_provider.topology": (
        "CertificateOptions",
        "ReplicationFlow",
        "ReplicationOptions",
        "ReplicaTopology",
        "TopologyError",
        "TopologyHost",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "CertificateAuthority",
    "CertificateAuthorityArgs",
    "CertificateAuthorityProvider",
    "CertificateOptions",
    "ConfigError",
    "HostCertificate",
    "HostCertificateArgs",
    "HostCertificateProvider",
    "HostConnection",
    "HostConnectionArgs",
    "InitialReplicationMode",
    "InitialReplicationWait",
    "InitialReplicationWaitArgs",
    "InitialReplicationWaitProvider",
    "PfxEncryption",
    "RelationshipAuthentication",
    "ReplicaServer",
    "ReplicaServerArgs",
    "ReplicaServerAuthentication",
    "ReplicaServerProvider",
    "ReplicaTopology",
    "ReplicationFlow",
    "ReplicationFrequency",
    "ReplicationOptions",
    "ReplicationRelationship",
    "ReplicationRelationshipArgs",
    "ReplicationRelationshipProvider",
    "RsaBits",
    "TestFailover",
    "TestFailoverArgs",
    "TestFailoverProvider",
    "TopologyError",
    "TopologyHost",
    "Transport",
    "WinRMAuth",
    "export_stack_outputs",
    "topology_from_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hvreplica_provider' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    # The public names only: the lazy exports are not module globals until first used.
    return sorted([*__all__, "__version__"])
