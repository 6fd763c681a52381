"""Typed shapes of the resources' inputs: the enumerations as `Literal` types and the WinRM connection
object as a TypedDict, so an IDE or a type checker catches `"ntml"` or `frequency_sec=60` before
`pulumi preview` does. The providers' `check` validates the same values at run time; their tuples of
allowed values are derived from these types, so the two never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    import pulumi

Transport = Literal["https", "http"]
"""WinRM transport. `http` is only for NTLM/Negotiate/Kerberos, which encrypt the messages."""

WinRMAuth = Literal["negotiate", "ntlm", "kerberos", "basic", "certificate", "credssp"]
"""WinRM authentication. Between untrusted domains: `ntlm` or `basic` (over https) with a local account."""

ReplicaServerAuthentication = Literal["Certificate", "Kerberos", "CertificateAndKerberos"]
"""What a replica server accepts (`Set-VMReplicationServer -AllowedAuthenticationType`)."""

RelationshipAuthentication = Literal["Certificate", "Kerberos"]
"""What one VM's replication uses (`Enable-VMReplication -AuthenticationType`)."""

InitialReplicationMode = Literal["network", "scheduled", "export", "none"]
"""How the initial copy travels: now over the network, over the network at a start time, exported to a
path for an offline import on the replica (`Import-VMInitialReplication`), or not started."""

ReplicationFrequency = Literal[30, 300, 900]
"""Seconds between replication cycles; the only values Hyper-V accepts."""

RsaBits = Literal[2048, 3072, 4096]
"""RSA key size of a CA or host certificate."""

PfxEncryption = Literal["legacy", "aes256"]
"""PFX protection: `legacy` (PBE-SHA1-3DES, imported by Server 2012 R2/2016) or `aes256` (Server 2019+)."""


class _HostConnectionRequired(TypedDict):
    # A base class of its own: with postponed annotations, `Required[...]` is invisible to TypedDict.
    host: pulumi.Input[str]
    """DNS name or IP address of the WinRM listener (covered by its certificate for https)."""


class HostConnectionArgs(_HostConnectionRequired, total=False):
    """How the provider reaches one Hyper-V host over WinRM (the `connection`, `primary` and `replica`
    inputs): `host` is required, every other key optional. Changing anything but `host`/`port` touches
    nothing on the host."""

    port: pulumi.Input[int]
    """Listener port: 5986 for https, 5985 for http when absent."""
    transport: pulumi.Input[Transport]
    """`https` (default) or `http`."""
    auth: pulumi.Input[WinRMAuth]
    """`negotiate` (default), `ntlm`, `kerberos`, `basic`, `certificate` or `credssp`; basic over http is
    refused."""
    username: pulumi.Input[str]
    """Account on the host, e.g. `HOST1\\Administrator` for a local administrator."""
    password: pulumi.Input[str]
    """Password of `username`. Secret: pass it from `pulumi config set --secret`, never in clear text."""
    ca_cert_pem: pulumi.Input[str]
    """PEM of the CA that issued the listener's certificate; the system trust store when absent."""
    verify_tls: pulumi.Input[bool]
    """True (default). False skips verifying the listener and prints a warning."""
    client_cert_pem: pulumi.Input[str]
    """Client certificate (PEM) for `auth: certificate`."""
    client_key_pem: pulumi.Input[str]
    """Its private key (PEM). Secret."""
    operation_timeout_sec: pulumi.Input[int]
    """WSMan operation timeout (default 20)."""
    read_timeout_sec: pulumi.Input[int]
    """HTTP read timeout, greater than the operation timeout (default 30)."""
    max_concurrent_operations: pulumi.Input[int]
    """Pipelines at once on this host from one provider process (default 3)."""
    connect_timeout_sec: pulumi.Input[int]
    """TCP connect and TLS handshake deadline of one attempt (default 10)."""
    retry_deadline_sec: pulumi.Input[int]
    """No retry of a transient fault starts later than this after the first try (default 120)."""


class ReplicaServerCertificateArgs(TypedDict):
    """The host certificate a ReplicaServer installs, e.g. a HostCertificate's outputs. Secret."""

    pfx_base64: pulumi.Input[str]
    """The PFX (certificate, key, CA), base64-encoded."""
    pfx_password: pulumi.Input[str]
    """The PFX password."""
    thumbprint: pulumi.Input[str]
    """The certificate's SHA-1 thumbprint (hex; spaces as copied from the certificate MMC are fine)."""


class _AllowedPrimaryRequired(TypedDict):
    primary_server: pulumi.Input[str]
    """The primary's FQDN, or a wildcard such as `*.contoso.com`."""
    storage_location: pulumi.Input[str]
    """Where this replica server keeps that primary's replica VMs (a path on the host)."""


class AllowedPrimaryArgs(_AllowedPrimaryRequired, total=False):
    """One authorization entry of a replica server (`New-VMReplicationAuthorizationEntry`)."""

    trust_group: pulumi.Input[str]
    """Entries of one trust group may replace each other's VMs (default `DEFAULT`)."""
