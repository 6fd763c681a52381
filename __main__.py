"""Root (demo) program: the cross-domain Hyper-V Replica scenario end to end, from stack config.

Two or more sites in different, untrusted AD domains (see Pulumi.dev.yaml and README.md, "Stack
configuration"): one CertificateAuthority per site (or one shared CA), and for every host a
HostCertificate and a ReplicaServer (each host can be a replica, so replication can be reversed), with
hosts-file entries so partners resolve each other, and one ReplicationRelationship per VM listed for a
replication flow. The building blocks live in `hvreplica_provider.topology`.

Connections: `hvreplica:hvsim` points at a local hvsim lab (the dev stack): connections to its hosts use
the demo-only accounts of its committed config and trust its WinRM CA. Real hosts (`connection` per
host) take their WinRM passwords from the secret `hvreplica:winrm_passwords` (FQDN -> password).
Exports: thumbprints, expiry dates and replication states, never keys or passwords.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pulumi

from hvreplica_provider import CertificateAuthority, CertificateAuthorityArgs
from hvreplica_provider.pki import Subject
from hvreplica_provider.topology import (
    RELATIONSHIP_SETTINGS,
    CertificateOptions,
    EmulatedHost,
    ReplicationFlow,
    ReplicationOptions,
    ReplicaTopology,
    TopologyHost,
    emulated_hosts,
    validate,
)

SHARED_CA = "shared"
_SITE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_CA_KEYS = tuple(f.name for f in fields(Subject))
_HOST_KEYS = ("fqdn", "additional_dns_names", "address", "connection", "storage_location")
_PKI_KEYS = (
    "rsa_bits",
    "ca_validity_days",
    "ca_early_renewal_days",
    "host_validity_days",
    "host_early_renewal_days",
    "pfx_encryption",
    "shared_ca",
)
_REPLICATION_KEYS = ("flows", "settings", "disable_revocation_check", "certificate_port")


class ConfigError(ValueError):
    """The stack config is unusable; the message names the key and what to change."""


@dataclass(frozen=True)
class HostSettings:
    """One host from `hvreplica:sites`. Without `connection`/`address` they come from the hvsim lab."""

    fqdn: str
    additional_dns_names: tuple[str, ...] = ()
    address: str | None = None
    connection: dict[str, Any] | None = None
    storage_location: str | None = None


@dataclass(frozen=True)
class SiteSettings:
    name: str
    domain: str
    ca: Subject | None
    hosts: tuple[HostSettings, ...]


@dataclass(frozen=True)
class PkiSettings:
    """Stack-wide certificate settings; None leaves the resource's own default in force."""

    rsa_bits: int | None = None
    ca_validity_days: int | None = None
    ca_early_renewal_days: int | None = None
    host_validity_days: int | None = None
    host_early_renewal_days: int | None = None
    pfx_encryption: str | None = None
    shared_ca: Subject | None = None


@dataclass(frozen=True)
class HvsimSettings:
    """`hvreplica:hvsim`: the local emulator lab the dev stack targets."""

    config: str
    state_dir: str = ".hvsim"


@dataclass(frozen=True)
class ReplicationSettings:
    flows: tuple[ReplicationFlow, ...] = ()
    options: ReplicationOptions = field(default_factory=ReplicationOptions)


def _mapping(
    value: Any, where: str, known: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object with keys {', '.join(known)}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    missing = [key for key in required if value.get(key) in (None, "")]
    if missing:
        raise ConfigError(f"{where} needs {', '.join(missing)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list")
    return value


def _ca(value: Any, where: str) -> Subject:
    return Subject(**_mapping(value, where, _CA_KEYS, ("common_name",)))


def _host(value: Any, where: str, domain: str) -> HostSettings:
    host = _mapping(value, where, _HOST_KEYS, ("fqdn",))
    fqdn = str(host["fqdn"])
    if not fqdn.lower().endswith("." + domain.lower()):
        raise ConfigError(
            f"{where}.fqdn {fqdn!r} is not in the site's domain {domain!r}; use <name>.{domain}"
        )
    names = host.get("additional_dns_names") or []
    if not isinstance(names, list):
        raise ConfigError(f"{where}.additional_dns_names must be a list of DNS names")
    connection = host.get("connection")
    if connection is not None and not isinstance(connection, dict):
        raise ConfigError(f"{where}.connection must be an object (host, port, auth, username, ...)")
    return HostSettings(fqdn, tuple(names), host.get("address"), connection, host.get("storage_location"))


def _site(value: Any, where: str, shared_ca: bool) -> SiteSettings:
    site = _mapping(value, where, ("name", "domain", "ca", "hosts"), ("name", "domain"))
    name = str(site["name"])
    if not _SITE_NAME.match(name) or name == SHARED_CA:
        raise ConfigError(
            f"{where}.name {name!r} must be lower-case letters, digits and dashes (it names resources), "
            f"and not {SHARED_CA!r}"
        )
    if shared_ca and site.get("ca") is not None:
        raise ConfigError(
            f"{where}.ca is set, but hvreplica:pki.shared_ca signs every host: remove one of the two"
        )
    if not shared_ca and site.get("ca") is None:
        raise ConfigError(f"{where}.ca is missing: give the site a CA, or set hvreplica:pki.shared_ca")
    domain = str(site["domain"])
    hosts = tuple(
        _host(host, f"{where}.hosts[{i}]", domain)
        for i, host in enumerate(_list(site.get("hosts"), f"{where}.hosts"))
    )
    return SiteSettings(name, domain, None if shared_ca else _ca(site["ca"], f"{where}.ca"), hosts)


def load_settings(config: pulumi.Config) -> tuple[PkiSettings, tuple[SiteSettings, ...]]:
    """Parse and cross-check `hvreplica:pki` and `hvreplica:sites`, before any resource exists."""
    pki = dict(_mapping(config.get_object("pki") or {}, "hvreplica:pki", _PKI_KEYS))
    if pki.get("shared_ca") is not None:
        pki["shared_ca"] = _ca(pki["shared_ca"], "hvreplica:pki.shared_ca")
    settings = PkiSettings(**pki)
    sites = tuple(
        _site(site, f"hvreplica:sites[{i}]", settings.shared_ca is not None)
        for i, site in enumerate(_list(config.require_object("sites"), "hvreplica:sites"))
    )
    for label, values in (
        ("site name", [site.name for site in sites]),
        ("host fqdn", [host.fqdn.lower() for site in sites for host in site.hosts]),
    ):
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise ConfigError(
                f"hvreplica:sites repeats the {label} {', '.join(duplicates)}; each must be unique"
            )
    return settings, sites


def load_replication(config: pulumi.Config, hosts: set[str]) -> ReplicationSettings:
    """`hvreplica:replication`: flows of VMs between hosts of `hvreplica:sites`, and shared settings."""
    raw = config.get_object("replication")
    if raw is None:
        return ReplicationSettings()
    where = "hvreplica:replication"
    replication = _mapping(raw, where, _REPLICATION_KEYS)
    flows = []
    for i, flow in enumerate(replication.get("flows") or []):
        at = f"{where}.flows[{i}]"
        flow = _mapping(flow, at, ("primary", "replica", "vms"), ("primary", "replica"))
        for role in ("primary", "replica"):
            if str(flow[role]).lower() not in hosts:
                raise ConfigError(
                    f"{at}.{role} {flow[role]!r} is not a host of hvreplica:sites; add it there"
                )
        vms = _list(flow.get("vms"), f"{at}.vms")
        if not all(isinstance(vm, str) and vm for vm in vms):
            raise ConfigError(f"{at}.vms must list VM names (strings)")
        flows.append(ReplicationFlow(str(flow["primary"]), str(flow["replica"]), tuple(vms)))
    settings = _mapping(replication.get("settings") or {}, f"{where}.settings", RELATIONSHIP_SETTINGS)
    options = ReplicationOptions(
        disable_revocation_check=replication.get("disable_revocation_check", True),
        certificate_port=replication.get("certificate_port"),
        relationship=settings,
    )
    return ReplicationSettings(tuple(flows), options)


def load_hvsim(config: pulumi.Config) -> HvsimSettings | None:
    raw = config.get_object("hvsim")
    if raw is None:
        return None
    return HvsimSettings(**_mapping(raw, "hvreplica:hvsim", ("config", "state_dir"), ("config",)))


def _certificate_authority(key: str, ca: Subject, pki: PkiSettings) -> CertificateAuthority:
    return CertificateAuthority(
        f"ca-{key}",
        CertificateAuthorityArgs(
            **vars(ca),
            rsa_bits=pki.rsa_bits,
            validity_days=pki.ca_validity_days,
            early_renewal_days=pki.ca_early_renewal_days,
        ),
    )


def _summary(resource: pulumi.CustomResource, **extra: str) -> pulumi.Output[dict[str, Any]]:
    """Thumbprint and expiry (plus plain labels): the public facts an operator checks on a host."""
    return pulumi.Output.all(thumbprint=resource.thumbprint, not_after=resource.not_after).apply(
        lambda facts: {**facts, **extra}
    )


def _endpoint(
    host: HostSettings, where: str, lab: dict[str, EmulatedHost] | None, passwords: pulumi.Output[Any]
) -> tuple[dict[str, Any], str]:
    """(connection, address) from the host's own settings, else from the hvsim lab."""
    emulated = (lab or {}).get(host.fqdn.lower())
    if host.connection is not None:
        connection = dict(host.connection)
        if "password" in connection:
            raise ConfigError(
                f"{where}.connection.password would sit in plain text in the stack file: remove it and run "
                f"pulumi config set --secret --path 'hvreplica:winrm_passwords[\"{host.fqdn}\"]' <password>"
            )
        ca_file = connection.pop("ca_cert_file", None)
        if ca_file is not None:
            connection["ca_cert_pem"] = Path(ca_file).read_text()
        connection["password"] = passwords.apply(lambda known: _password(known, host.fqdn))
    elif emulated is not None:
        connection = emulated.connection
    else:
        raise ConfigError(
            f"{where} has no connection and is not a host of the hvsim lab: add connection "
            "(host, port, auth, username) or set hvreplica:hvsim"
        )
    address = host.address or (emulated.address if emulated is not None else None)
    if address is None:
        raise ConfigError(
            f"{where}.address is missing: the IP address its partners put into their hosts file"
        )
    return connection, address


def _password(known: Any, fqdn: str) -> str:
    for name, password in (known or {}).items():
        if name.lower() == fqdn.lower():
            return str(password)
    raise ConfigError(
        f"no WinRM password for {fqdn}: pulumi config set --secret --path "
        f"'hvreplica:winrm_passwords[\"{fqdn}\"]' <password>"
    )


def main() -> None:
    config = pulumi.Config()
    pki, sites = load_settings(config)
    replication = load_replication(config, {h.fqdn.lower() for site in sites for h in site.hosts})
    hvsim = load_hvsim(config)
    lab = emulated_hosts(hvsim.config, hvsim.state_dir) if hvsim is not None else None
    passwords = config.get_secret_object("winrm_passwords") or pulumi.Output.secret({})
    # Everything that can be wrong in the config fails here, before any resource is declared.
    endpoints = {
        host.fqdn.lower(): _endpoint(host, f"hvreplica:sites[{i}].hosts[{j}]", lab, passwords)
        for i, site in enumerate(sites)
        for j, host in enumerate(site.hosts)
    }
    validate(list(endpoints), replication.flows, replication.options.relationship)
    if pki.shared_ca is not None:
        authorities = {SHARED_CA: _certificate_authority(SHARED_CA, pki.shared_ca, pki)}
    else:
        authorities = {
            site.name: _certificate_authority(site.name, site.ca, pki) for site in sites if site.ca
        }
    hosts: list[TopologyHost] = []
    labels: dict[str, dict[str, str]] = {}
    for site in sites:
        ca_key = SHARED_CA if pki.shared_ca is not None else site.name
        for host in site.hosts:
            connection, address = endpoints[host.fqdn.lower()]
            extra = {"storage_location": host.storage_location} if host.storage_location else {}
            hosts.append(
                TopologyHost(
                    host.fqdn,
                    connection,
                    address,
                    authorities[ca_key],
                    additional_dns_names=host.additional_dns_names,
                    **extra,
                )
            )
            labels[host.fqdn.lower()] = {"ca": ca_key, "site": site.name}
    topology = ReplicaTopology(
        "replica",
        hosts,
        replication.flows,
        CertificateOptions(
            rsa_bits=pki.rsa_bits,
            validity_days=pki.host_validity_days,
            early_renewal_days=pki.host_early_renewal_days,
            pfx_encryption=pki.pfx_encryption,
        ),
        replication.options,
    )
    pulumi.export("certificate_authorities", {key: _summary(ca) for key, ca in authorities.items()})
    pulumi.export(
        "host_certificates",
        {fqdn: _summary(cert, **labels[fqdn]) for fqdn, cert in topology.certificates.items()},
    )
    pulumi.export("replication", topology.replication_summary())


main()
