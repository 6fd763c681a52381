"""A replication topology as one ComponentResource: Hyper-V hosts in different, untrusted domains that
replicate VMs to each other over certificate authentication (README.md, "Why").

For every host: a HostCertificate from the host's CA and a ReplicaServer that trusts its own CA and the
CAs of its partners, accepts every partner as a primary (so replication can be reversed after a
failover), opens the listener and maps the partners' names in its hosts file. For every VM of every
flow: a ReplicationRelationship from the flow's primary to its replica. The CAs are created by the
caller (one per site, or one shared), so that the same building block serves every program.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from hvreplica_provider.inputs import HostConnectionArgs, PfxEncryption, RsaBits
from hvreplica_provider.resources.certificate_authority import (
    CertificateAuthority,
    CertificateAuthorityArgs,
)
from hvreplica_provider.resources.host_certificate import HostCertificate, HostCertificateArgs
from hvreplica_provider.resources.replica_server import ReplicaServer, ReplicaServerArgs
from hvreplica_provider.resources.replication_relationship import (
    LOCAL_KEYS,
    SETTING_KEYS,
    ReplicationRelationship,
    ReplicationRelationshipArgs,
)
from hvreplica_provider.resources.replication_wait import (
    InitialReplicationWait,
    InitialReplicationWaitArgs,
)

DEFAULT_STORAGE_LOCATION = "D:\\Hyper-V\\Replica"
# Relationship inputs the topology sets itself: the hosts' connections, certificate authentication with
# the primary's own certificate, and the replica's certificate port.
_DERIVED_RELATIONSHIP_KEYS = (
    "primary",
    "replica",
    "authentication",
    "certificate_thumbprint",
    "replica_port",
)
# Settings a topology passes through to every ReplicationRelationship: all its other inputs, so that a
# setting the resource gains is available here too.
RELATIONSHIP_SETTINGS = tuple(
    key for key in (*SETTING_KEYS, *LOCAL_KEYS) if key not in _DERIVED_RELATIONSHIP_KEYS
)


class TopologyError(ValueError):
    """The topology is inconsistent; the message names the host or flow and what to change."""


@dataclass(frozen=True)
class TopologyHost:
    """One Hyper-V host of a ReplicaTopology."""

    fqdn: str
    """The name partners use to reach it; its certificate is issued for this name."""
    connection: pulumi.Input[HostConnectionArgs]
    """How the provider reaches it over WinRM (may hold secret Outputs, e.g. the password)."""
    address: str
    """The IP address its partners write into their hosts files for `fqdn`."""
    ca: CertificateAuthority
    """The CA that issues its certificate (its partners trust it)."""
    storage_location: str = DEFAULT_STORAGE_LOCATION
    """Where it stores the replica VMs of its partners (a path on the host)."""
    additional_dns_names: tuple[str, ...] = ()
    """Further names in its certificate, e.g. a Hyper-V Replica Broker's client access point."""
    site: str | None = None
    """A label for outputs (the site or domain it belongs to); creates nothing."""


@dataclass(frozen=True)
class ReplicationFlow:
    """VMs of one host replicated to another host of the same topology."""

    primary: str
    """FQDN of the host that runs the VMs."""
    replica: str
    """FQDN of the host that receives the replicas."""
    vms: tuple[str, ...]
    """Names of the VMs on `primary`; one ReplicationRelationship each."""
    extend_to: str | None = None
    """FQDN of a third host that receives an extended replica of every VM from `replica` (one more
    ReplicationRelationship per VM, `extended`, every 300 s or the first leg's 900 s), or None."""


@dataclass(frozen=True)
class CertificateOptions:
    """HostCertificate settings for every host; None keeps the resource's default."""

    rsa_bits: RsaBits | None = None
    """Key size of every host certificate."""
    validity_days: int | None = None
    """Lifetime of every host certificate, in days (never past its CA's expiry)."""
    early_renewal_days: int | None = None
    """Days before expiry at which `pulumi up` renews a host certificate."""
    pfx_encryption: PfxEncryption | None = None
    """`legacy` (Server 2012 R2/2016 import it) or `aes256` (Server 2019+)."""


@dataclass(frozen=True)
class ReplicationOptions:
    """ReplicaServer and ReplicationRelationship settings for the whole topology."""

    disable_revocation_check: bool = True
    """True by default: the private CAs built here publish no CRL, and Hyper-V's revocation check fails
    without one."""
    certificate_port: int | None = None
    """The replica servers' HTTPS port and the relationships' `replica_port` (443 when None)."""
    relationship: Mapping[str, Any] = field(default_factory=dict)
    """ReplicationRelationship inputs for every VM, keys from RELATIONSHIP_SETTINGS (e.g.
    `frequency_sec`, `recovery_history`, `initial_replication`)."""


def relationship_key(primary: str, vm: str) -> str:
    """Key (and resource-name suffix) of one VM's relationship: a VM replicates to one replica only."""
    return f"{primary.lower()}/{vm}"


def extended_key(middle: str, vm: str) -> str:
    """Key of the extended leg of `vm`, whose replica is on `middle`."""
    return f"{middle.lower()}/{vm}/extended"


def validate(
    fqdns: Sequence[str],
    flows: Sequence[ReplicationFlow],
    relationship_settings: Mapping[str, Any] | None = None,
) -> None:
    """Refuse an inconsistent topology (host FQDNs, flows, relationship settings) before any resource
    is declared."""
    names = [f.lower() for f in fqdns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TopologyError(f"host {', '.join(repeated)} is listed more than once; list each host once")
    known = set(names)
    seen: set[str] = set()
    for i, flow in enumerate(flows):
        where = f"flow {i} ({flow.primary} -> {flow.replica})"
        for role, fqdn in (("primary", flow.primary), ("replica", flow.replica)):
            if fqdn.lower() not in known:
                raise TopologyError(f"{where}: {role} {fqdn!r} is not a host of the topology; add it")
        if flow.primary.lower() == flow.replica.lower():
            raise TopologyError(f"{where}: primary and replica are the same host; pick another replica")
        if flow.extend_to is not None:
            if flow.extend_to.lower() not in known:
                raise TopologyError(
                    f"{where}: extend_to {flow.extend_to!r} is not a host of the topology; add it"
                )
            if flow.extend_to.lower() in (flow.primary.lower(), flow.replica.lower()):
                raise TopologyError(
                    f"{where}: extend_to must be a third host, not the flow's primary or replica"
                )
        for vm in flow.vms:
            key = relationship_key(flow.primary, vm)
            if key in seen:
                raise TopologyError(
                    f"{where}: VM {vm!r} of {flow.primary} is listed twice; a VM replicates to one replica"
                )
            seen.add(key)
    unknown = sorted(set(relationship_settings or {}) - set(RELATIONSHIP_SETTINGS))
    if unknown:
        raise TopologyError(
            f"unknown relationship setting(s) {', '.join(unknown)}; known: {', '.join(RELATIONSHIP_SETTINGS)}"
        )
    settings = relationship_settings or {}
    mode = settings.get("initial_replication", "network")
    if settings.get("wait_for_initial_replication") is True and mode in ("export", "none"):
        raise TopologyError(
            f"wait_for_initial_replication with initial_replication {mode!r}: nothing completes the initial "
            "copy unattended; set wait_for_initial_replication to false"
        )


def _flipped_alias(name: str, replica: str, vm: str, declared: set[str]) -> list[pulumi.Alias]:
    """The name the relationship has with its flow's direction flipped, as an alias: flipping is then an
    update of this relationship (a planned failover when on_direction_change allows it, refused by check
    otherwise), never a delete plus a new initial replication. Not when a VM of that name replicates the
    other way too (two resources cannot claim each other's names)."""
    flipped = relationship_key(replica, vm)
    return [] if flipped in declared else [pulumi.Alias(name=f"{name}-repl-{flipped}")]


def partners(fqdn: str, flows: Sequence[ReplicationFlow]) -> list[str]:
    """Hosts that share a flow with `fqdn` in either direction, in first-seen order (lower-case)."""
    out: list[str] = []
    for sender, receiver in _legs(flows):
        if fqdn.lower() in (sender, receiver):
            other = receiver if sender == fqdn.lower() else sender
            if other not in out:
                out.append(other)
    return out


def _legs(flows: Sequence[ReplicationFlow]) -> Iterator[tuple[str, str]]:
    """(sending host, receiving host) of every leg, extended ones included (lower-case)."""
    for flow in flows:
        yield flow.primary.lower(), flow.replica.lower()
        if flow.extend_to is not None:
            yield flow.replica.lower(), flow.extend_to.lower()


def extended_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The first leg's relationship settings as Windows allows them on an extended leg: every 300 s, or
    900 s when the first leg replicates every 900 s (never more often than it), no VSS copies, no disk
    selection, no waiting (the extended copy starts after the first one)."""
    dropped = ("vss_snapshot_frequency_hour", "excluded_vhd_paths", "wait_for_initial_replication")
    out = {k: v for k, v in settings.items() if k not in dropped}
    out["frequency_sec"] = 900 if settings.get("frequency_sec") == 900 else 300
    return out


class ReplicaTopology(pulumi.ComponentResource):
    """Host certificates, replica servers and VM relationships of a set of hosts (see the module doc).

    Members: `hosts`, `certificates` and `servers` by lower-case FQDN, `relationships` by
    `relationship_key`.
    """

    hosts: dict[str, TopologyHost]
    certificates: dict[str, HostCertificate]
    servers: dict[str, ReplicaServer]
    relationships: dict[str, ReplicationRelationship]
    waits: dict[str, InitialReplicationWait]

    def __init__(
        self,
        name: str,
        hosts: Sequence[TopologyHost],
        flows: Sequence[ReplicationFlow],
        certificates: CertificateOptions | None = None,
        replication: ReplicationOptions | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hvreplica:index:ReplicaTopology", name, None, opts)
        cert_options = certificates or CertificateOptions()
        options = replication or ReplicationOptions()
        validate([h.fqdn for h in hosts], flows, options.relationship)
        child = pulumi.ResourceOptions(parent=self)
        by_fqdn = {h.fqdn.lower(): h for h in hosts}
        self.hosts = by_fqdn

        self.certificates = {
            fqdn: HostCertificate(
                f"{name}-cert-{fqdn}",
                HostCertificateArgs(
                    ca_cert_pem=host.ca.cert_pem,
                    ca_private_key_pem=host.ca.private_key_pem,
                    fqdn=host.fqdn,
                    additional_dns_names=list(host.additional_dns_names) or None,
                    **asdict(cert_options),
                ),
                child,
            )
            for fqdn, host in by_fqdn.items()
        }
        self.servers = {
            fqdn: self._server(name, host, [by_fqdn[p] for p in partners(fqdn, flows)], options, child)
            for fqdn, host in by_fqdn.items()
        }
        self.relationships = {}
        declared = {relationship_key(flow.primary, vm) for flow in flows for vm in flow.vms}
        # Waiting for initial copies is done once per primary host (InitialReplicationWait), not by each
        # relationship: a relationship's own wait would hold one of the provider server's four workers for
        # its whole transfer.
        wait = options.relationship.get("wait_for_initial_replication") is True
        settings = {**options.relationship, **({"wait_for_initial_replication": False} if wait else {})}
        by_primary: dict[str, list[ReplicationRelationship]] = {}
        for flow in flows:
            primary, replica = by_fqdn[flow.primary.lower()], by_fqdn[flow.replica.lower()]
            for vm in flow.vms:
                key = relationship_key(primary.fqdn, vm)
                self.relationships[key] = self._relationship(
                    f"{name}-repl-{key}",
                    (primary, replica, vm),
                    options,
                    settings,
                    pulumi.ResourceOptions(aliases=_flipped_alias(name, replica.fqdn, vm, declared)),
                )
                by_primary.setdefault(primary.fqdn.lower(), []).append(self.relationships[key])
        self.waits = {
            fqdn: InitialReplicationWait(
                f"{name}-wait-{fqdn}",
                InitialReplicationWaitArgs(
                    connection=by_fqdn[fqdn].connection,
                    vm_ids=[rel.vm_id for rel in rels],
                    timeout_sec=options.relationship.get("initial_replication_timeout_sec"),
                ),
                pulumi.ResourceOptions(parent=self, depends_on=list(rels)),
            )
            for fqdn, rels in (by_primary.items() if wait else ())
        }
        for flow in flows:
            if flow.extend_to is None:
                continue
            middle, third = by_fqdn[flow.replica.lower()], by_fqdn[flow.extend_to.lower()]
            for vm in flow.vms:
                first = self.relationships[relationship_key(flow.primary, vm)]
                key = extended_key(middle.fqdn, vm)
                # The replica VM must hold its initial copy (the first leg, and its host's wait when the
                # topology waits) before it can replicate on.
                after = [first, *(w for p, w in self.waits.items() if p == flow.primary.lower())]
                self.relationships[key] = self._relationship(
                    f"{name}-repl-{key}",
                    (middle, third, vm),
                    options,
                    {**extended_settings(options.relationship), "extended": True},
                    pulumi.ResourceOptions(depends_on=after),
                )
        self.register_outputs(
            {
                "certificate_thumbprints": {f: c.thumbprint for f, c in self.certificates.items()},
                "relationship_states": {k: r.state for k, r in self.relationships.items()},
            }
        )

    def replication_summary(self) -> dict[str, pulumi.Output[dict[str, Any]]]:
        """State, health, replica, last replication and Measure-VMReplication statistics of every
        relationship (public facts, safe to export)."""
        # A relationship's own state is from its create (still copying when a host-wide wait followed).
        waited = {
            key: pulumi.Output.all(self.waits[primary].states, rel.vm_id, rel.state).apply(
                lambda values: (values[0] or {}).get(values[1]) or values[2]
            )
            for key, rel in self.relationships.items()
            if (primary := key.split("/", 1)[0]) in self.waits
        }
        return {
            key: pulumi.Output.all(
                state=waited.get(key, rel.state),
                health=rel.health,
                replica=rel.replica_server,
                last_replication_time=rel.last_replication_time,
                statistics=rel.statistics,
            )
            for key, rel in self.relationships.items()
        }

    def _relationship(
        self,
        resource_name: str,
        leg: tuple[TopologyHost, TopologyHost, str],
        options: ReplicationOptions,
        settings: Mapping[str, Any],
        opts: pulumi.ResourceOptions,
    ) -> ReplicationRelationship:
        """One VM's relationship from the leg's sending host to its receiving host (certificate auth)."""
        sender, receiver, vm = leg
        return ReplicationRelationship(
            resource_name,
            ReplicationRelationshipArgs(
                primary=sender.connection,
                replica=receiver.connection,
                vm_name=vm,
                replica_server_fqdn=receiver.fqdn,
                authentication="Certificate",
                # From the sender's ReplicaServer: the certificate is installed before use.
                certificate_thumbprint=self.servers[sender.fqdn.lower()].certificate_thumbprint,
                replica_port=options.certificate_port,
                **settings,
            ),
            pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(parent=self, depends_on=[self.servers[receiver.fqdn.lower()]]), opts
            ),
        )

    def _server(
        self,
        name: str,
        host: TopologyHost,
        partner_hosts: Sequence[TopologyHost],
        options: ReplicationOptions,
        opts: pulumi.ResourceOptions,
    ) -> ReplicaServer:
        cert = self.certificates[host.fqdn.lower()]
        cas: list[CertificateAuthority] = []
        for ca in [host.ca, *(p.ca for p in partner_hosts)]:
            if not any(ca is known for known in cas):  # a shared CA is trusted once
                cas.append(ca)
        return ReplicaServer(
            f"{name}-server-{host.fqdn.lower()}",
            ReplicaServerArgs(
                connection=host.connection,
                fqdn=host.fqdn,
                certificate={
                    "pfx_base64": cert.pfx_base64,
                    "pfx_password": cert.pfx_password,
                    "thumbprint": cert.thumbprint,
                },
                trusted_ca_certs=[ca.cert_pem for ca in cas],
                # Every partner trusts this host's CA (see `cas` on the partner's side).
                partner_trusted_ca_certs=[host.ca.cert_pem],
                disable_revocation_check=options.disable_revocation_check,
                authentication="Certificate",
                certificate_port=options.certificate_port,
                allowed_primaries=[
                    {"primary_server": p.fqdn, "storage_location": host.storage_location}
                    for p in partner_hosts
                ],
                hosts_entries={p.fqdn: p.address for p in partner_hosts},
            ),
            opts,
        )


@dataclass(frozen=True)
class EmulatedHost:
    """How to reach one host of a local hvsim lab: its WinRM connection input and its address."""

    connection: dict[str, Any]
    address: str


def emulated_hosts(config_path: str | Path, state_dir: str | Path) -> dict[str, EmulatedHost]:
    """Connections to the hosts of a running hvsim lab, by lower-case FQDN.

    For the local emulator only: the credentials are the demo accounts of its (committed) config, sent
    as basic auth over HTTPS that is verified against the lab's own WinRM CA (`<state_dir>/winrm-ca.pem`).
    Real hosts take their passwords from secret stack config instead.
    """
    from hvsim.config import load_config  # the emulator is only needed by programs that target it

    config = load_config(config_path)
    ca_path = Path(state_dir) / "winrm-ca.pem"
    if not ca_path.is_file():
        raise TopologyError(
            f"{ca_path} does not exist: start the emulator first (`make demo` does, or "
            f"`python -m hvsim serve --config {config_path} --state-dir {state_dir}`)"
        )
    ca_pem = ca_path.read_text()
    out = {}
    for host in config.hosts:
        username, password = next(iter(host.users.items()))
        out[host.fqdn] = EmulatedHost(
            {
                "host": host.address,
                "port": host.winrm_port,
                "transport": "https",
                "auth": "basic",
                "username": username,
                "password": pulumi.Output.secret(password),
                "ca_cert_pem": ca_pem,
            },
            host.address,
        )
    return out


def emulated_topology_hosts(
    endpoints: Mapping[str, EmulatedHost], fqdns: Sequence[str], rsa_bits: int | None = None
) -> list[TopologyHost]:
    """TopologyHosts for `fqdns` of an hvsim lab, each host's certificate signed by a CA of its own
    domain (one CertificateAuthority per domain, named `ca-<domain>`), as the scenario's sites have."""
    missing = sorted({f.lower() for f in fqdns} - set(endpoints))
    if missing:
        raise TopologyError(
            f"{', '.join(missing)} is not a host of the hvsim lab; use one of {sorted(endpoints)}"
        )
    cas: dict[str, CertificateAuthority] = {}
    hosts = []
    for fqdn in fqdns:
        domain = fqdn.lower().split(".", 1)[1]
        if domain not in cas:
            cas[domain] = CertificateAuthority(
                f"ca-{domain}",
                CertificateAuthorityArgs(common_name=f"{domain} Hyper-V Replica CA", rsa_bits=rsa_bits),
            )
        endpoint = endpoints[fqdn.lower()]
        hosts.append(TopologyHost(fqdn, endpoint.connection, endpoint.address, cas[domain]))
    return hosts


# The stack config keys `emulated_topology` reads (in the program's own namespace).
EMULATED_TOPOLOGY_KEYS = ("hvsim_config", "hvsim_state_dir", "rsa_bits")


def emulated_topology(
    name: str,
    config: pulumi.Config,
    flows: Sequence[ReplicationFlow],
    relationship: Mapping[str, Any] | None = None,
) -> ReplicaTopology:
    """The examples' building block: a ReplicaTopology over the hosts of `flows` in the hvsim lab named by
    the stack config `hvsim_config` and `hvsim_state_dir`, one CA per domain, keys of the optional
    `rsa_bits` size, `relationship` settings (RELATIONSHIP_SETTINGS) for every VM."""
    lab = emulated_hosts(config.require("hvsim_config"), config.require("hvsim_state_dir"))
    rsa_bits = config.get_int("rsa_bits")
    fqdns = list(dict.fromkeys(fqdn for leg in _legs(flows) for fqdn in leg))
    return ReplicaTopology(
        name,
        emulated_topology_hosts(lab, fqdns, rsa_bits),
        flows,
        CertificateOptions(rsa_bits=rsa_bits),
        ReplicationOptions(relationship=relationship or {}),
    )
