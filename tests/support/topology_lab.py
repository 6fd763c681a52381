"""Run a topology program's lab and check its result on the emulated hosts with plain pypsrp.

The lab is the committed hvsim.dev.toml moved to a test's own loopback addresses and free ports. The checks
talk to each host over WinRM/HTTPS (verified against the lab's CA) with pypsrp alone, never through the
provider's code: certificates in LocalMachine\\My and \\Root, the revocation-check registry value, the
listener firewall rule, the managed hosts-file block, the replica-server settings, the authorization
entries and each VM's replication state and health.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan

from hvreplica_provider import CertificateAuthorityProvider, HostCertificateProvider, ReplicaServerProvider
from hvreplica_provider.resources import replication_relationship
from hvsim.config import HostConfig, parse_config
from hvsim.server import Emulator
from tests.support.engine import CA_TYPE, HOST_TYPE, PROJECT_DIR, SERVER_TYPE, ProviderServer
from tests.support.hvsim_env import running_lab, to_toml, wsman_kwargs
from tests.support.net import free_port
from tests.support.pwsh import prop, run_cmdlet

DEV_LAB = PROJECT_DIR / "hvsim.dev.toml"
HOST1, HOST2 = "host1.contoso.com", "host2.fabrikam.com"  # the two sites of hvsim.dev.toml
REPLICATION_KEY = r"HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\Replication"
HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"
HOSTS_FILE = r"C:\Windows\System32\drivers\etc\hosts"


@dataclass
class RunningLab:
    """An emulator plus the files a program needs to reach it (`hvreplica:hvsim` config)."""

    emu: Emulator
    config_file: Path
    state_dir: Path

    @property
    def hvsim_config(self) -> dict[str, str]:
        return {"config": str(self.config_file), "state_dir": str(self.state_dir)}

    def address(self, fqdn: str) -> str:
        return self._host(fqdn).address

    def connection(self, fqdn: str, **overrides: Any) -> dict[str, Any]:
        """A ReplicaServer/ReplicationRelationship connection input for a lab host (numbers as floats, as
        the engine sends them): HTTPS with basic auth, verified against the lab's WinRM CA."""
        config = self._host(fqdn)
        username, password = next(iter(config.users.items()))
        return {
            "host": config.address,
            "port": float(self.emu.listener_port(fqdn)),
            "transport": "https",
            "auth": "basic",
            "username": username,
            "password": password,
            "ca_cert_pem": self.emu.ca_pem_path.read_text(),
            **overrides,
        }

    @contextlib.contextmanager
    def shell(self, fqdn: str) -> Iterator[Shell]:
        username, password = next(iter(self._host(fqdn).users.items()))
        kwargs = wsman_kwargs(self.emu, fqdn, username=username, password=password)
        with WSMan(**kwargs) as wsman, RunspacePool(wsman) as pool:
            yield Shell(pool)

    def _host(self, fqdn: str) -> HostConfig:
        return next(h for h in self.emu.config.hosts if h.fqdn == fqdn.lower())


@dataclass
class Shell:
    pool: RunspacePool

    def run(self, cmdlet: str, **params: Any) -> list[Any]:
        return run_cmdlet(self.pool, cmdlet, **params)


def lab_dict(
    addresses: Sequence[str],
    extra_vms: Mapping[str, Sequence[str]] | None = None,
    source: Path = DEV_LAB,
) -> dict[str, Any]:
    """A committed hvsim config (hvsim.dev.toml by default) with its hosts on `addresses` (in order) and
    free ports; no admin endpoint."""
    raw = tomllib.loads(source.read_text())
    raw["settings"].pop("admin", None)
    for host, address in zip(raw["host"], addresses, strict=True):
        host["address"] = address
        host["winrm_port"] = free_port(address)
        host["vms"] = [*host.get("vms", []), *(extra_vms or {}).get(host["fqdn"], ())]
    return raw


@contextlib.contextmanager
def running_dev_lab(
    tmp: Path,
    addresses: Sequence[str],
    time_scale: float = 300.0,
    extra_vms: Mapping[str, Sequence[str]] | None = None,
    source: Path = DEV_LAB,
) -> Iterator[RunningLab]:
    raw = lab_dict(addresses, extra_vms, source)
    config_file = tmp / "hvsim.toml"
    config_file.write_text(to_toml(raw))
    state_dir = tmp / "hvsim-state"
    with running_lab(parse_config(raw), state_dir, time_scale=time_scale) as emu:
        yield RunningLab(emu, config_file, state_dir)


def thumbprint(pem: str) -> str:
    """Windows' thumbprint: SHA-1 of the DER, upper-case hex (computed here, not by the product)."""
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    return hashlib.sha1(der).hexdigest().upper()


@dataclass
class ExpectedHost:
    """What one host must show after the topology ran."""

    fqdn: str
    cert_pem: str
    ca_pems: list[str]
    partners: dict[str, str]  # partner FQDN -> address in the hosts file
    storage_location: str
    replicated_vms: dict[str, str] = field(default_factory=dict)  # VM (primary here) -> replica FQDN


def line_text(obj: Any) -> str:
    """One Get-Content line: a string with PSPath/ReadCount notes, which pypsrp hands over as an object
    whose value is its only property-set entry."""
    if isinstance(obj, str):
        return obj
    return str(obj.property_sets[0]) if getattr(obj, "property_sets", None) else str(obj)


def check_host(lab: RunningLab, expected: ExpectedHost) -> None:
    """Assert every piece of the host's preparation and its outgoing replications."""
    own = thumbprint(expected.cert_pem)
    with lab.shell(expected.fqdn) as sh:
        my = {str(prop(c, "Thumbprint")) for c in sh.run("Get-ChildItem", Path=r"Cert:\LocalMachine\My")}
        assert own in my, f"{expected.fqdn}: host certificate {own} not in LocalMachine\\My"
        root = {str(prop(c, "Thumbprint")) for c in sh.run("Get-ChildItem", Path=r"Cert:\LocalMachine\Root")}
        missing = {thumbprint(p) for p in expected.ca_pems} - root
        assert not missing, f"{expected.fqdn}: CAs {missing} not in LocalMachine\\Root"

        (registry,) = sh.run("Get-ItemProperty", Path=REPLICATION_KEY)
        assert prop(registry, "DisableCertRevocationCheck") == 1

        (rule,) = sh.run("Get-NetFirewallRule", Name=HTTPS_RULE)
        assert str(prop(rule, "Enabled")) in ("True", "1")

        hosts_text = "\n".join(line_text(o) for o in sh.run("Get-Content", Path=HOSTS_FILE))
        for partner, address in expected.partners.items():
            assert any(
                line.split()[:2] == [address, partner] for line in hosts_text.splitlines() if line.strip()
            ), f"{expected.fqdn}: hosts file lacks '{address} {partner}':\n{hosts_text}"

        (server,) = sh.run("Get-VMReplicationServer")
        assert prop(server, "ReplicationEnabled") is True
        assert str(prop(server, "AllowedAuthenticationType")) == "Certificate"
        assert str(prop(server, "CertificateThumbprint")) == own
        assert prop(server, "CertificateAuthenticationPort") == 443
        entries = {
            str(prop(e, "AllowedPrimaryServer")).lower(): str(prop(e, "ReplicaStorageLocation"))
            for e in sh.run("Get-VMReplicationAuthorizationEntry")
        }
        assert entries == dict.fromkeys(expected.partners, expected.storage_location)

        primaries = {
            str(prop(r, "VMName")): r
            for r in sh.run("Get-VMReplication")
            if str(prop(r, "ReplicationMode")) == "Primary"
        }
        assert set(primaries) == set(expected.replicated_vms)
        for vm, replica in expected.replicated_vms.items():
            leg = primaries[vm]
            assert str(prop(leg, "ReplicaServerName")).lower() == replica
            assert str(prop(leg, "CertificateThumbprint")) == own


def wait_replicating(lab: RunningLab, fqdn: str, vms: Sequence[str], timeout: float = 60.0) -> None:
    """Until every listed VM's primary leg on `fqdn` is Replicating with Normal health (polled)."""
    deadline = time.monotonic() + timeout
    with lab.shell(fqdn) as sh:
        while True:
            legs = {str(prop(r, "VMName")): r for r in sh.run("Get-VMReplication")}
            states = {
                vm: (str(prop(legs[vm], "ReplicationState")), str(prop(legs[vm], "ReplicationHealth")))
                for vm in vms
                if vm in legs
            }
            if len(states) == len(vms) and all(s == ("Replicating", "Normal") for s in states.values()):
                return
            details = {vm: prop(legs[vm], "ReplicationHealthDetails") for vm in states}
            assert time.monotonic() < deadline, f"{fqdn}: not all Replicating/Normal: {states} {details}"
            time.sleep(0.2)


@dataclass(frozen=True)
class SiteMaterial:
    """A host's CA and certificate outputs, as created through the provider server."""

    ca: dict[str, Any]
    cert: dict[str, Any]

    @property
    def certificate(self) -> dict[str, Any]:
        """ReplicaServer's `certificate` input from the HostCertificate outputs."""
        return {k: self.cert[k] for k in ("pfx_base64", "pfx_password", "thumbprint")}


def create_site_material(server: ProviderServer, fqdns: Sequence[str]) -> dict[str, SiteMaterial]:
    """One CA per host's domain and a host certificate each, through the real provider server (RSA 2048)."""
    out = {}
    for fqdn in fqdns:
        domain = fqdn.split(".", 1)[1]
        ca = server.up(
            server.urn(CA_TYPE, f"ca-{domain}"),
            CertificateAuthorityProvider(),
            {"common_name": f"{domain} Replica CA", "rsa_bits": 2048},
        ).state.outputs
        cert = server.up(
            server.urn(HOST_TYPE, f"cert-{fqdn}"),
            HostCertificateProvider(),
            {
                "ca_cert_pem": ca["cert_pem"],
                "ca_private_key_pem": ca["private_key_pem"],
                "fqdn": fqdn,
                "rsa_bits": 2048,
                "validity_days": 365,
            },
        ).state.outputs
        out[fqdn] = SiteMaterial(ca, cert)
    return out


class Reachable(Protocol):
    """A lab that hands out connection inputs and addresses of its hosts (RunningLab, the bench's lab)."""

    def connection(self, fqdn: str) -> dict[str, Any]: ...

    def address(self, fqdn: str) -> str: ...


def replica_server_inputs(
    lab: Reachable, fqdn: str, partner: str, material: Mapping[str, SiteMaterial], **overrides: Any
) -> dict[str, Any]:
    """ReplicaServer inputs that accept `partner` as primary (the scenario's settings)."""
    own, other = material[fqdn], material[partner]
    return {
        "connection": lab.connection(fqdn),
        "fqdn": fqdn,
        "certificate": own.certificate,
        "trusted_ca_certs": [own.ca["cert_pem"], other.ca["cert_pem"]],
        "partner_trusted_ca_certs": [own.ca["cert_pem"]],
        "disable_revocation_check": True,
        "allowed_primaries": [{"primary_server": partner, "storage_location": "D:\\Replica"}],
        "hosts_entries": {partner: lab.address(partner)},
        **overrides,
    }


def prepare_pair(
    server: ProviderServer, lab: Reachable, primary: str, replica: str
) -> dict[str, SiteMaterial]:
    """Certificates, then both hosts prepared as replica servers of each other, all through `server`
    (which also opens its pool to each host)."""
    material = create_site_material(server, [primary, replica])
    for fqdn, partner in ((replica, primary), (primary, replica)):
        server.up(
            server.urn(SERVER_TYPE, f"server-{fqdn}"),
            ReplicaServerProvider(),
            replica_server_inputs(lab, fqdn, partner, material),
        )
    return material


@pytest.fixture
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program run in the test process under mocks polls the initial replication often."""
    monkeypatch.setattr(replication_relationship, "POLL_INTERVAL_SEC", 0.2)
