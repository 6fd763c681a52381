"""Root (demo) program: the cross-domain Hyper-V Replica scenario end to end, from stack config.

Two or more sites in different, untrusted AD domains (see Pulumi.dev.yaml and README.md, "Stack
configuration"): one CertificateAuthority per site (or one shared CA), and for every host a
HostCertificate and a ReplicaServer, with hosts-file entries so partners resolve each other, and one
ReplicationRelationship per VM listed for a replication flow. The schema, its validation and the
resources live in the package (`hvreplica_provider.stack`), so your own project can run the same
program: copy these lines and a stack file.

Exports: thumbprints, expiry dates and replication states, never keys or passwords.
"""

from hvreplica_provider.stack import export_stack_outputs, topology_from_config

export_stack_outputs(topology_from_config())
