"""Shared helpers of the provider tests: a two-site hvsim lab (untrusted domains), provider connection inputs
for its hosts, certificates made by the product's own pki module, and a direct pypsrp client for checking
results without going through the provider's code."""

from __future__ import annotations

import base64
import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvreplica_provider import clock, pki
from hvreplica_provider.resources.replica_server import ReplicaServerProvider
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from hvsim.server import Emulator
from tests.support.hvsim_env import (
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    host,
    lab_config,
    running_lab,
    wsman_kwargs,
)
from tests.support.pwsh import prop, run_cmdlet

# Host paths, spelled out here rather than taken from the provider's modules: the tests check the host on
# their own terms.
MY, ROOT = "Cert:\\LocalMachine\\My", "Cert:\\LocalMachine\\Root"
REPLICATION_KEY = "HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\Replication"
FAILOVER_REPLICATION_KEY = f"{REPLICATION_KEY.removesuffix('Replication')}FailoverReplication"
LEDGER_ROOT = "HKLM:\\SOFTWARE\\hvreplica"
LEDGER = LEDGER_ROOT + "\\ReplicaServer"
HOSTS = "C:\\Windows\\System32\\drivers\\etc\\hosts"
UPLOADS = "C:\\Windows\\Temp"
REPLICA_RULES = ("VIRT-HVRHTTPSL-In-TCP-NoScope", "VIRT-HVRHTTPL-In-TCP-NoScope")
SERVER_PROPERTIES = (
    "ReplicationEnabled",
    "AllowedAuthenticationType",
    "CertificateThumbprint",
    "CertificateAuthenticationPort",
    "KerberosAuthenticationPort",
    "ReplicationAllowedFromAnyServer",
    "DefaultStorageLocation",
)

PRIMARY = "host1.contoso.com"
REPLICA = "host2.fabrikam.com"
PFX_PASSWORD = "Pfx-Pa$$-9"


@dataclass(frozen=True)
class SiteCerts:
    ca_pem: str
    cert_pem: str
    pfx_base64: str
    thumbprint: str

    @property
    def certificate(self) -> dict[str, str]:
        return {"pfx_base64": self.pfx_base64, "pfx_password": PFX_PASSWORD, "thumbprint": self.thumbprint}

    @property
    def ca_thumbprint(self) -> str:
        return pki.thumbprint(pki.load_certificate(self.ca_pem))


@functools.lru_cache(maxsize=4)
def site_ca(domain: str) -> pki.IssuedCertificate:
    """One CA per site (RSA 2048 to keep tests fast)."""
    return pki.create_ca(pki.Subject(common_name=f"{domain} Lab Root CA"), 2048, 3650, clock.now())


@functools.lru_cache(maxsize=8)
def site_certs(fqdn: str, generation: int = 0) -> SiteCerts:
    """A host certificate for `fqdn` from its site's CA; a higher `generation` is a renewal."""
    ca = site_ca(fqdn.split(".", 1)[1])
    ca_cert, ca_key = pki.load_certificate(ca.cert_pem), pki.load_private_key(ca.private_key_pem)
    leaf = pki.issue_host_certificate(ca_cert, ca_key, fqdn, [], 2048, 365, clock.now())
    pfx = pki.export_pfx(leaf.cert_pem, leaf.private_key_pem, PFX_PASSWORD, "legacy", None)
    return SiteCerts(ca.cert_pem, leaf.cert_pem, base64.b64encode(pfx).decode(), leaf.info.thumbprint)


@dataclass
class Lab:
    emu: Emulator
    addresses: dict[str, str]

    def connection(self, fqdn: str, **overrides: Any) -> dict[str, Any]:
        """Provider connection input: HTTPS + basic, TLS verified against the lab's WinRM CA."""
        kw = wsman_kwargs(self.emu, fqdn)
        conn = {
            "host": kw["server"],
            "port": float(kw["port"]),  # the engine sends numbers as floats
            "auth": "basic",
            "username": DEFAULT_USER,
            "password": DEFAULT_PASSWORD,
            "ca_cert_pem": self.emu.ca_pem_path.read_text(),
        }
        conn.update(overrides)
        return conn

    def run(self, fqdn: str, cmdlet: str, **params: Any) -> list[Any]:
        """Run one cmdlet with plain pypsrp (a fresh pool; not the provider's remoting layer)."""
        with (
            WSMan(**wsman_kwargs(self.emu, fqdn)) as wsman,
            RunspacePool(wsman) as pool,
        ):
            return run_cmdlet(pool, cmdlet, **params)

    def counters(self, fqdn: str) -> dict[str, int]:
        return self.emu.counters(fqdn)

    def snapshot(self, fqdn: str) -> dict[str, Any]:
        """Everything a ReplicaServer may touch on the host, read with plain pypsrp over one fresh pool:
        certificate stores, the replication registry key, the hvreplica ledger, the replication firewall
        rules, the hosts file, the replica server settings, authorization entries and leftover uploads."""
        with WSMan(**wsman_kwargs(self.emu, fqdn)) as wsman, RunspacePool(wsman) as pool:

            def run(cmdlet: str, **params: Any) -> list[Any]:
                ps = PowerShell(pool)
                ps.add_cmdlet(cmdlet)
                for name, value in params.items():
                    ps.add_parameter(name, value)
                return ps.invoke()  # an absent key or rule gives no output (and an error record)

            def values(key: str) -> dict[str, str] | None:
                found = run("Get-ItemProperty", Path=key)
                return registry_values(found) if found else None

            server = run("Get-VMReplicationServer")[0]
            return {
                "my": sorted(str(prop(c, "Thumbprint")) for c in run("Get-ChildItem", Path=MY)),
                "root": sorted(str(prop(c, "Thumbprint")) for c in run("Get-ChildItem", Path=ROOT)),
                "replication_key": values(REPLICATION_KEY),
                "failover_replication_key": values(FAILOVER_REPLICATION_KEY),
                "ledger_root": run("Test-Path", Path=LEDGER_ROOT)[0],
                "firewall": {
                    str(prop(r, "Name")): str(r.extended_properties["Enabled"])
                    for r in run("Get-NetFirewallRule", Name=list(REPLICA_RULES))
                },
                "hosts": [
                    line if isinstance(line, str) else str(line.property_sets[0] or "")
                    for line in run("Get-Content", Path=HOSTS)
                ],
                "server": {name: str(prop(server, name)) for name in SERVER_PROPERTIES},
                "entries": sorted(
                    (str(prop(e, "AllowedPrimaryServer")), str(prop(e, "ReplicaStorageLocation")))
                    for e in run("Get-VMReplicationAuthorizationEntry")
                ),
                "uploads": [str(f) for f in run("Get-ChildItem", Path=UPLOADS) if "hvreplica" in str(f)],
            }

    def ledger(self, fqdn: str) -> dict[str, str]:
        """The ReplicaServer ownership ledger's values on the host (empty when there is none)."""
        return registry_values(self.run(fqdn, "Get-ItemProperty", Path=LEDGER))  # nothing when absent


@contextlib.contextmanager
def two_site_lab(
    prefix: str, vms: tuple[str, ...] = ("web01",), time_scale: float = 600.0, trusted: bool = False
) -> Iterator[Lab]:
    """host1.contoso.com (with `vms`) and host2.fabrikam.com on 127.<prefix>.11/.12; the domains do not
    trust each other (the scenario) unless `trusted`."""
    addresses = {PRIMARY: f"127.{prefix}.11", REPLICA: f"127.{prefix}.12"}
    trusts = ["fabrikam.com"] if trusted else []
    config = lab_config(
        host(PRIMARY, addresses[PRIMARY], vms=list(vms)),
        host(REPLICA, addresses[REPLICA]),
        domains=[{"name": "contoso.com", "trusts": trusts}, {"name": "fabrikam.com"}],
        time_scale=time_scale,
    )
    with running_lab(config) as emu:
        yield Lab(emu, addresses)


@dataclass
class Site:
    """A ReplicaServer created by the provider: its checked inputs and its outputs."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    id: str


def replica_server_inputs(lab: Lab, fqdn: str, partner: str, **overrides: Any) -> dict[str, Any]:
    """Checked ReplicaServer inputs: own certificate, both sites' CAs, the partner authorized and named."""
    own, other = site_certs(fqdn), site_certs(partner)
    inputs = {
        "connection": lab.connection(fqdn),
        "fqdn": fqdn,
        "certificate": own.certificate,
        "trusted_ca_certs": [own.ca_pem, other.ca_pem],
        "partner_trusted_ca_certs": [own.ca_pem],
        "disable_revocation_check": True,
        "allowed_primaries": [{"primary_server": partner, "storage_location": "D:\\Replica"}],
        "hosts_entries": {partner: lab.addresses[partner]},
        **overrides,
    }
    result = ReplicaServerProvider().check({}, inputs)
    assert [f.reason for f in result.failures] == []
    return result.inputs


def prepare_sites(lab: Lab) -> dict[str, Site]:
    """Both hosts as replica servers for each other (the scenario's reverse replication needs both)."""
    sites = {}
    for fqdn, partner in ((REPLICA, PRIMARY), (PRIMARY, REPLICA)):
        inputs = replica_server_inputs(lab, fqdn, partner)
        created = ReplicaServerProvider().create(inputs)
        sites[fqdn] = Site(inputs, created.outs, created.id)
    return sites


def relationship_inputs(
    lab: Lab, vm: str, *, source: str = PRIMARY, target: str = REPLICA, **overrides: Any
) -> dict[str, Any]:
    """Checked inputs replicating `vm` from `source` (host1.contoso.com) to `target` (host2.fabrikam.com) by
    certificate."""
    inputs = {
        "primary": lab.connection(source),
        "replica": lab.connection(target),
        "vm_name": vm,
        "replica_server_fqdn": target,
        "certificate_thumbprint": site_certs(source).thumbprint,
        **overrides,
    }
    result = ReplicationRelationshipProvider().check({}, inputs)
    assert [f.reason for f in result.failures] == []
    return result.inputs


def registry_values(found: list[Any]) -> dict[str, str]:
    """A key's values from Get-ItemProperty output (without its PS* notes); empty when nothing came back."""
    props = found[0].adapted_properties | found[0].extended_properties if found else {}
    return {k: str(v) for k, v in props.items() if not k.startswith("PS")}
